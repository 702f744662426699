"""UrbanSound8K: 8732 slices (<= 4 s) of 10 urban sound classes in the official folds fold1..fold10.

The layout of the Zenodo archive, unchanged: ``audio/fold{N}/{fsID}-{classID}-{occurrenceID}-
{sliceID}.wav`` and ``metadata/UrbanSound8K.csv`` (slice_file_name, fsID, start, end, salience,
fold, classID, class). The metadata decides when present; without it the class comes from the
documented file name and the fold from the folder. The folds are used as published, never
reshuffled (the dataset's authors warn that reshuffled folds inflate accuracy, since slices of
one Freesound recording would land on both sides), and the group is the Freesound id (fsID), so
the loader also refuses any split that puts one recording on both sides.

Files come at 8-96 kHz, 8-32 bit, mono or stereo: ``kit.audio.load_audio`` downmixes and resamples
them all with the device's own resampler, so nothing here touches samples.
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
from .folds import check_groups_disjoint, check_test_fold
from .types import AudioDataset, Clip

# The whole clip: slices are at most 4 s, so a 4-s window covers every one (shorter slices are
# centre-padded). Same front-end as ESC (16 kHz, 64-ms window, 31.25-ms hop): 128 frames.
US8K_CONFIG = FeatureConfig(sample_rate=16000, duration_s=4.0, window_ms=64.0, hop_ms=31.25)
US8K_FOLDS = tuple(range(1, 11))
#: classID -> class, as in the dataset's README and metadata
US8K_CLASSES = (
    "air_conditioner",
    "car_horn",
    "children_playing",
    "dog_bark",
    "drilling",
    "engine_idling",
    "gun_shot",
    "jackhammer",
    "siren",
    "street_music",
)
META_COLUMNS = ("slice_file_name", "fsID", "fold", "classID", "class")
_NAME = re.compile(r"^(\d+)-(\d+)-(\d+)-(\d+)\.wav$", re.IGNORECASE)
_FOLDER = re.compile(r"^fold(\d+)$")
_HINT = (
    "run `kit data download urbansound8k --data-dir {data_dir}` (6 GB) or unpack UrbanSound8K.tar.gz from "
    "https://zenodo.org/record/1203745 so that {where}/audio/fold1 exists"
)


def find_root(data_dir: Path) -> Path:
    """``<data_dir>/urbansound8k`` (what the download installs) or ``<data_dir>/UrbanSound8K`` (the archive
    as unpacked)."""
    for name in ("urbansound8k", "UrbanSound8K", "us8k"):
        if (data_dir / name).is_dir():
            return data_dir / name
    return data_dir / "urbansound8k"


def _fold_number(text: str, where: str) -> int:
    try:
        fold = int(text)
    except ValueError:
        raise KitError(f"{where}: fold '{text}' is not a number") from None
    if fold not in US8K_FOLDS:
        raise KitError(f"{where}: fold {fold} is out of range (UrbanSound8K has folds 1..10)")
    return fold


def parse_slice_name(path: Path) -> tuple[str, int]:
    """(fsID, classID) from ``[fsID]-[classID]-[occurrenceID]-[sliceID].wav``; a one-line error otherwise."""
    match = _NAME.match(path.name)
    if not match:
        raise KitError(
            f"{path}: file name breaks the UrbanSound8K convention [fsID]-[classID]-[occurrenceID]-[sliceID].wav"
        )
    class_id = int(match.group(2))
    if class_id >= len(US8K_CLASSES):
        raise KitError(f"{path}: classID {class_id} is out of range (UrbanSound8K has classIDs 0..9)")
    return match.group(1), class_id


def _rows_from_meta(root: Path, meta: Path) -> tuple[list[tuple[Path, str, int, str]], list[str]]:
    """(path, class, fold, fsID) per metadata row whose file exists, and the listed files that do not."""
    require_regular_file(meta, "UrbanSound8K metadata")
    rows, missing = [], []
    with meta.open(newline="") as handle:
        reader = csv.DictReader(handle)
        absent = [c for c in META_COLUMNS if c not in (reader.fieldnames or ())]
        if absent:
            raise KitError(f"{meta}: column '{absent[0]}' is missing (expected {', '.join(META_COLUMNS)})")
        for line, record in enumerate(reader, start=2):
            where = f"{meta} line {line}"
            fold = _fold_number(record["fold"], where)
            name = record["slice_file_name"]
            label = record["class"].strip()
            if not label:
                raise KitError(f"{where}: empty class for {name}")
            path = root / "audio" / f"fold{fold}" / name
            if path.is_file():
                rows.append((path, label, fold, record["fsID"].strip()))
            else:
                missing.append(f"fold{fold}/{name}")
    return rows, missing


def _rows_from_names(root: Path) -> list[tuple[Path, str, int, str]]:
    """Without metadata: class from the file name, fold from the ``fold{N}`` folder."""
    audio = root / "audio"
    rows = []
    for folder in sorted(p for p in audio.iterdir() if p.is_dir() and not p.name.startswith(".")):
        match = _FOLDER.match(folder.name)
        if not match:
            raise KitError(f"{folder}: not a fold folder (expected audio/fold1 .. audio/fold10)")
        fold = _fold_number(match.group(1), str(folder))
        for path in sorted(p for p in folder.iterdir() if is_audio_file(p)):
            fs_id, class_id = parse_slice_name(path)
            rows.append((path, US8K_CLASSES[class_id], fold, fs_id))
    return rows


def load_urbansound8k(data_dir: Path, test_fold: int = 10) -> AudioDataset:
    """All slices, fold ``test_fold`` as the test split, grouped by Freesound recording (fsID)."""
    root = find_root(data_dir)
    if not (root / "audio").is_dir():
        raise missing_data("urbansound8k", root / "audio", data_dir, _HINT.format(data_dir=data_dir, where=root))
    check_test_fold("urbansound8k", test_fold, US8K_FOLDS)
    meta = root / "metadata" / "UrbanSound8K.csv"
    missing: list[str] = []
    if meta.exists():
        rows, missing = _rows_from_meta(root, meta)
        source = "metadata/UrbanSound8K.csv"
    else:
        rows, source = _rows_from_names(root), "file names (no metadata/UrbanSound8K.csv)"
    if not rows:
        raise KitError(f"{root}: no UrbanSound8K slices found under audio/fold1..fold10")
    clips = [
        Clip(path=path, label=label, split="test" if fold == test_fold else "train", group=f"fs{fs_id}")
        for path, label, fold, fs_id in sorted(rows)
    ]
    present = sorted({fold for _, _, fold, _ in rows})
    rule = f"official fold {test_fold} test, the other {len(present) - 1} folds train (labels from {source})"
    note = ""
    if missing:
        note = f"; {len(missing)} clip(s) listed in the metadata are missing on disk and left out (first: {missing[0]})"
    dataset = AudioDataset(
        name="urbansound8k",
        root=root,
        classes=sorted({label for _, label, _, _ in rows}),
        clips=clips,
        feature_config=US8K_CONFIG,
        description=(
            f"UrbanSound8K, <= 4-s slices in folds {present[0]}..{present[-1]} (group = fsID); "
            f"window: the whole slice (4 s, shorter ones centre-padded); split {rule}{note}"
        ),
        split_rule=rule,
        origin="urbansound8k",
    )
    return check_groups_disjoint(dataset, "Freesound recording (fsID)")
