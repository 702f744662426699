"""ESC-10 / ESC-50 environmental sounds: 5-s clips, five predefined folds.

The fold is the leading ``{fold}-`` of every file name (and the ``fold`` column of
``meta/esc50.csv``). Clips cut from the same Freesound recording share a fold, so holding out a
whole fold is the dataset's own leak-free split; the fold is therefore the group.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from deploy.runtime.errors import KitError
from deploy.runtime.features import FeatureConfig
from deploy.runtime.safeio import require_regular_file

from ..audio import is_audio_file
from .errors import missing_data
from .folds import check_test_fold
from .types import AudioDataset, Clip

# 5-s clips at 16 kHz (content above 8 kHz adds little for these classes and the models stay
# the same size as for speech). A 64-ms window suits stationary textures (rain, engines) better
# than speech's 32 ms, and a 31.25-ms hop keeps 160 frames for the whole clip (80000 / 500), so
# a feature map costs the same compute as 2.5 s of speech frames instead of 5 s.
ESC_CONFIG = FeatureConfig(sample_rate=16000, duration_s=5.0, window_ms=64.0, hop_ms=31.25)
ESC_FOLDS = (1, 2, 3, 4, 5)
_FOLD = re.compile(r"^(\d+)-")
_CLASS_PREFIX = re.compile(r"^\d+\s*-\s*")
_DOWNLOAD_HINT = {
    "esc10": "get it from https://github.com/karolpiczak/ESC-10 (one folder per class) and put it at {where}",
    "esc50": "get it from https://github.com/karolpiczak/ESC-50 (audio/ + meta/esc50.csv) and put it at {where}",
}


def _fold_of(path: Path) -> int:
    match = _FOLD.match(path.name)
    if not match:
        raise KitError(f"{path}: no fold in the file name (expected '{{fold}}-{{id}}-{{take}}.ogg')")
    return int(match.group(1))


def _clips_from_folders(root: Path) -> list[tuple[Path, str, int]]:
    """Folder-per-class layout (``001 - Dog bark/1-100032-A.ogg``); class = folder name without its number."""
    rows = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        label = _CLASS_PREFIX.sub("", folder.name).strip() or folder.name
        files = sorted(p for p in folder.iterdir() if is_audio_file(p))
        if not files:
            raise KitError(f"{folder}: class '{label}' has no audio files")
        rows += [(path, label, _fold_of(path)) for path in files]
    return rows


def _clips_from_meta(root: Path, meta: Path, esc10_only: bool = False) -> tuple[list[tuple[Path, str, int]], list[str]]:
    """ESC-50 layout: ``audio/<file>`` listed in ``meta/esc50.csv`` (filename, fold, target, category,
    esc10, src_file, take). ``esc10_only`` keeps the rows whose ``esc10`` flag is True (ESC-10 is
    the 10-class subset of ESC-50 with the same folds). Returns the rows whose file exists and the
    listed files that do not."""
    rows, missing = [], []
    require_regular_file(meta, "ESC-50 metadata")
    with meta.open(newline="") as handle:
        reader = csv.DictReader(handle)
        needed = ["filename", "fold", "category"] + (["esc10"] if esc10_only else [])
        absent = [c for c in needed if c not in (reader.fieldnames or ())]
        if absent:
            raise KitError(f"{meta}: column '{absent[0]}' is missing (expected {', '.join(needed)})")
        for line, record in enumerate(reader, start=2):
            if esc10_only and record["esc10"].strip().lower() not in ("true", "1"):
                continue
            try:
                fold = int(record["fold"])
            except ValueError:
                raise KitError(f"{meta} line {line}: fold '{record['fold']}' is not a number") from None
            if fold not in ESC_FOLDS:
                raise KitError(f"{meta} line {line}: fold {fold} is out of range (ESC has folds 1..5)")
            path = root / "audio" / record["filename"]
            if path.is_file():
                rows.append((path, record["category"], fold))
            else:
                missing.append(record["filename"])
    return sorted(rows), missing


def load_esc(name: str, data_dir: Path, test_fold: int = 5) -> AudioDataset:
    """ESC-10 or ESC-50 with fold ``test_fold`` as the test split."""
    root = data_dir / name
    if name == "esc10" and not root.is_dir() and (data_dir / "esc50" / "meta" / "esc50.csv").is_file():
        root = data_dir / "esc50"  # ESC-10 is the esc10-flagged part of an ESC-50 download
    if not root.is_dir():
        raise missing_data(name, root, data_dir, _DOWNLOAD_HINT[name].format(where=root))
    check_test_fold(name, test_fold, ESC_FOLDS)
    meta = root / "meta" / "esc50.csv"
    missing: list[str] = []
    if meta.exists():
        rows, missing = _clips_from_meta(root, meta, esc10_only=name == "esc10")
    else:
        rows = _clips_from_folders(root)
    if not rows:
        raise KitError(f"{root}: no audio clips found for {name}")
    folds = sorted({fold for _, _, fold in rows})
    if test_fold not in folds:
        raise KitError(f"{name}: --test-fold {test_fold} is not one of the dataset's folds {folds}")
    clips = [
        Clip(path=path, label=label, split="test" if fold == test_fold else "train", group=f"fold{fold}")
        for path, label, fold in rows
    ]
    rule = f"fold {test_fold} test, folds {', '.join(str(f) for f in folds if f != test_fold)} train"
    return AudioDataset(
        name=name,
        root=root,
        classes=sorted({c.label for c in clips}),
        clips=clips,
        feature_config=ESC_CONFIG,
        description=(
            f"{name.upper()} environmental sounds, 5-s clips (window: the whole clip); split {rule}"
            + (
                f"; {len(missing)} clip(s) listed in meta/esc50.csv are missing on disk and left out "
                f"(first: {missing[0]})"
                if missing
                else ""
            )
        ),
        split_rule=rule,
        origin=name,
    )
