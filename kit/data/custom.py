"""User datasets: a folder with one sub-folder per class, or a CSV manifest.

Why these two: a folder tree is what people already have; a manifest is how they say anything
a tree cannot (their own split, folds, speakers). Either way the split keeps speakers (groups)
on one side whenever the data says who is speaking, because a random per-file split of speech
reports accuracy on voices the model has already heard.
"""
from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

from deploy.runtime.errors import KitError
from deploy.runtime.features import FeatureConfig
from deploy.runtime.safeio import require_regular_file

from ..audio import audio_info, is_audio_file
from .splits import held_out_groups, parse_group, stratified_by_name, usable_groups
from .types import SPLITS, AudioDataset, Clip

TEST_FRACTION = 0.2
DEFAULT_RATE = 16000


def _config_for(first: Path | None) -> FeatureConfig:
    """Features at the first readable file's own rate (no pointless resampling), else 16 kHz."""
    rate = DEFAULT_RATE
    if first is not None:
        try:
            rate = audio_info(first).sample_rate
        except KitError:
            pass
    return FeatureConfig(sample_rate=rate)


def _split_without_column(
    root: Path, rows: list[tuple[Path, str]], groups: list[str | None], seed: int
) -> tuple[list[str], list[str], str]:
    """Held-out groups when names carry usable groups, else a stratified file-name hash."""
    labels = [label for _, label in rows]
    if usable_groups(labels, groups):
        test_groups = held_out_groups([g for g in groups if g is not None], TEST_FRACTION, seed)
        sides = ["test" if g in test_groups else "train" for g in groups]
        rule = f"held-out groups from '<group>_' file names: {len(test_groups)} of {len(set(groups))} groups ({sorted(test_groups)}) test, seed {seed}"
        return sides, [g or "" for g in groups], rule
    names: dict[str, list[str]] = defaultdict(list)
    keys = [path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path) for path, _ in rows]
    for key, label in zip(keys, labels):
        names[label].append(key)
    test = stratified_by_name(names, TEST_FRACTION, seed)
    sides = ["test" if key in test else "train" for key in keys]
    rule = f"per-class file-name hash: {int(TEST_FRACTION * 100)}% test, seed {seed}"
    return sides, keys, rule


def load_folder(root: Path, split: str = "official", seed: int = 0) -> AudioDataset:
    """One sub-folder per class; every audio file below a class folder is a clip of that class."""
    if split not in ("official", "default"):
        raise KitError(f"{root}: a folder dataset has no split named '{split}' (its split is 'official': held-out speakers)")
    rows: list[tuple[Path, str]] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(p for p in folder.rglob("*") if p.is_file() and is_audio_file(p))
        if not files:
            raise KitError(f"{folder}: class '{folder.name}' has no audio files (.wav/.flac/.ogg)")
        rows += [(path, folder.name) for path in files]
    if not rows:
        raise KitError(f"{root}: no class folders with audio files (expected {root}/<class>/<file>.wav)")
    groups = [parse_group(path.name) for path, _ in rows]
    sides, group_names, rule = _split_without_column(root, rows, groups, seed)
    clips = [Clip(path=p, label=label, split=s, group=g) for (p, label), s, g in zip(rows, sides, group_names)]
    return AudioDataset(
        name=root.name,
        root=root,
        classes=sorted({label for _, label in rows}),
        clips=clips,
        feature_config=_config_for(rows[0][0]),
        description=f"folder-per-class dataset at {root}; split {rule}",
        split_rule=rule,
        origin=str(root.resolve()),
    )


def load_manifest(csv_path: Path, test_fold: int = 5, seed: int = 0) -> AudioDataset:
    """A CSV with header ``path,label`` and optionally one of ``split``, ``fold``, ``group``.

    Paths are relative to the CSV. ``split`` is used as given; ``fold`` holds out ``test_fold``;
    ``group`` holds out 20 % of the groups; with none of them, a stratified file-name hash.
    """
    root = csv_path.parent.resolve()
    require_regular_file(csv_path, "CSV manifest")
    with csv_path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        records = [{(k or "").strip(): (v or "").strip() for k, v in record.items()} for record in reader]
    if not {"path", "label"} <= set(columns):
        raise KitError(f"{csv_path}: a manifest needs a header with 'path' and 'label' columns, found {columns}")
    if not records:
        raise KitError(f"{csv_path}: the manifest lists no clips")
    rows: list[tuple[Path, str]] = []
    for line, record in enumerate(records, start=2):
        if not record["path"] or not record["label"]:
            raise KitError(f"{csv_path}:{line}: empty path or label")
        path = (root / record["path"]).resolve() if not Path(record["path"]).is_absolute() else Path(record["path"])
        if not path.is_file():
            raise KitError(f"{csv_path}:{line}: audio file {path} does not exist")
        rows.append((path, record["label"]))
    if "split" in columns:
        sides = [r["split"].lower() for r in records]
        bad = next((s for s in sides if s not in SPLITS), None)
        if bad is not None:
            raise KitError(f"{csv_path}: split column has '{bad}' (use {', '.join(SPLITS)})")
        groups = [r.get("group") or "" for r in records]
        rule = "split column of the manifest"
    elif "fold" in columns:
        folds = [r["fold"] for r in records]
        if str(test_fold) not in set(folds):
            raise KitError(f"{csv_path}: --test-fold {test_fold} is not one of the folds {sorted(set(folds))}")
        sides = ["test" if f == str(test_fold) else "train" for f in folds]
        groups = [f"fold{f}" for f in folds]
        rule = f"fold column: fold {test_fold} test"
    elif "group" in columns:
        groups = [r["group"] for r in records]
        if any(not g for g in groups):
            raise KitError(f"{csv_path}: the group column has empty cells")
        test_groups = held_out_groups(groups, TEST_FRACTION, seed)
        if not test_groups:
            raise KitError(f"{csv_path}: the group column needs at least two groups to hold one out")
        sides = ["test" if g in test_groups else "train" for g in groups]
        rule = f"group column: {len(test_groups)} of {len(set(groups))} groups held out for test, seed {seed}"
    else:
        sides, groups, rule = _split_without_column(root, rows, [None] * len(rows), seed)
    clips = [Clip(path=p, label=label, split=s, group=g) for (p, label), s, g in zip(rows, sides, groups)]
    clips.sort(key=lambda c: (str(c.path), c.offset_s))
    return AudioDataset(
        name=csv_path.stem,
        root=root,
        classes=sorted({label for _, label in rows}),
        clips=clips,
        feature_config=_config_for(rows[0][0]),
        description=f"CSV manifest {csv_path}; split {rule}",
        split_rule=rule,
        origin=str(csv_path.resolve()),
    )
