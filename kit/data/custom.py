"""User datasets: a folder with one sub-folder per class, or a CSV manifest.

Why these two: a folder tree is what people already have; a manifest is how they say anything
a tree cannot (their own split, folds, speakers). Either way the split keeps speakers (groups)
on one side whenever the data says who is speaking, because a random per-file split of speech
reports accuracy on voices the model has already heard.
"""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from pathlib import Path

from deploy.runtime.errors import KitError
from deploy.runtime.features import FeatureConfig
from deploy.runtime.names import check_class_name
from deploy.runtime.safeio import require_regular_file

from ..audio import audio_info, is_audio_file
from .splits import held_out_groups, parse_group, stratified_by_name, usable_groups
from .types import SPLITS, AudioDataset, Clip

TEST_FRACTION = 0.2
DEFAULT_RATE = 16000
DEFAULT_TEST_FOLD = 5


def _config_for(where: Path, paths: list[Path]) -> FeatureConfig:
    """Features at the files' own rate (no pointless resampling), read from every file's header.

    Mixed rates are refused with a count: picking one file's rate let one stray 4 kHz clip set
    the front-end of a whole 16 kHz dataset. Unreadable files are left to the loader (--skip-bad).
    """
    rates: Counter[int] = Counter()
    example: dict[int, Path] = {}
    for path in paths:
        try:
            rate = audio_info(path).sample_rate
        except KitError:
            continue
        rates[rate] += 1
        example.setdefault(rate, path)
    if len(rates) > 1:
        (common, n), *others = rates.most_common()
        listed = ", ".join(f"{m} at {r} Hz (e.g. {example[r]})" for r, m in others)
        raise KitError(
            f"{where}: clips have mixed sample rates: {n} at {common} Hz, {listed}; convert them to one rate"
        )
    return FeatureConfig(sample_rate=next(iter(rates), DEFAULT_RATE))


def _check_classes(where: Path, labels: list[str]) -> list[str]:
    """At least two classes, each with a name that survives labels.txt and folder names."""
    classes = sorted(set(labels))
    for name in classes:
        check_class_name(name, str(where))
    if len(classes) < 2:
        raise KitError(f"{where}: a dataset needs at least 2 classes, found {len(classes)} ({', '.join(classes)})")
    return classes


def _audio_entries(root: Path, folder: Path) -> list[Path]:
    """The audio files under ``folder``; an audio-named entry that is not a readable regular file (a
    dangling symlink, a symlink loop, a FIFO) is refused by name rather than skipped without a word."""
    files = []
    for path in sorted(folder.rglob("*")):
        if not is_audio_file(path):
            continue
        try:
            if path.is_dir():
                continue
        except OSError:
            pass
        require_regular_file(path, "audio")  # names the entry: loop, dangling link, FIFO, socket
        files.append(path)
    return files


def _split_without_column(
    root: Path, rows: list[tuple[Path, str]], groups: list[str | None], seed: int
) -> tuple[list[str], list[str], str]:
    """Held-out groups when names carry usable groups, else a stratified file-name hash."""
    labels = [label for _, label in rows]
    if usable_groups(labels, groups):
        test_groups = held_out_groups([g for g in groups if g is not None], TEST_FRACTION, seed)
        sides = ["test" if g in test_groups else "train" for g in groups]
        rule = (
            f"held-out groups from '<group>_' file names: {len(test_groups)} of {len(set(groups))} groups "
            f"({sorted(test_groups)}) test, seed {seed}"
        )
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
        raise KitError(
            f"{root}: a folder dataset has no split named '{split}' (its split is 'official': held-out speakers)"
        )
    rows: list[tuple[Path, str]] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        check_class_name(folder.name, str(folder))
        files = _audio_entries(root, folder)
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
        classes=_check_classes(root, [label for _, label in rows]),
        clips=clips,
        feature_config=_config_for(root, [path for path, _ in rows]),
        description=f"folder-per-class dataset at {root}; split {rule}",
        split_rule=rule,
        origin=str(root.resolve()),
    )


def _read_csv(csv_path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows of a UTF-8 CSV; encoding errors, NUL bytes and ragged rows name the line."""
    require_regular_file(csv_path, "CSV manifest")
    try:
        with csv_path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            records = []
            for record in reader:
                if None in record or None in record.values():
                    raise KitError(
                        f"{csv_path}:{reader.line_num}: row has {'more' if None in record else 'fewer'} "
                        f"cells than the header's {len(columns)} columns"
                    )
                if any("\x00" in (v or "") for v in record.values()):
                    raise KitError(f"{csv_path}:{reader.line_num}: row holds a NUL byte (a binary file, not a CSV)")
                records.append({(k or "").strip(): (v or "").strip() for k, v in record.items()})
    except UnicodeDecodeError as exc:
        raise KitError(
            f"{csv_path}: not UTF-8 text (byte {exc.start}: {exc.reason}); save the manifest as UTF-8"
        ) from None
    except csv.Error as exc:
        raise KitError(f"{csv_path}: not a readable CSV manifest ({exc})") from None
    return columns, records


def _check_unique_paths(csv_path: Path, rows: list[tuple[Path, str]], records: list[dict[str, str]]) -> None:
    """Each clip once: a repeated path is a duplicate, a conflicting label or a train/test leak."""
    seen: dict[Path, int] = {}
    for index, (path, label) in enumerate(rows):
        if path in seen:
            first = seen[path]
            kind = (
                "a conflicting label"
                if rows[first][1] != label
                else "a train/test leak"
                if records[first].get("split", "") != records[index].get("split", "")
                else "a duplicate row"
            )
            raise KitError(f"{csv_path}:{index + 2}: {path.name} is listed again (first on line {first + 2}): {kind}")
        seen[path] = index


def load_manifest(csv_path: Path, test_fold: int = 5, seed: int = 0) -> AudioDataset:
    """A CSV with header ``path,label`` and optionally one of ``split``, ``fold``, ``group``.

    Paths are relative to the CSV. ``split`` is used as given; ``fold`` holds out ``test_fold``;
    ``group`` holds out 20 % of the groups; with none of them, a stratified file-name hash.
    """
    root = csv_path.parent.resolve()
    columns, records = _read_csv(csv_path)
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
    _check_unique_paths(csv_path, rows, records)
    _check_classes(csv_path, [label for _, label in rows])
    if "fold" not in columns and test_fold != DEFAULT_TEST_FOLD:  # the default may come from a recorded source
        raise KitError(f"--test-fold {test_fold}: {csv_path} has no fold column (columns: {', '.join(columns)})")
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
        feature_config=_config_for(csv_path, [path for path, _ in rows]),
        description=f"CSV manifest {csv_path}; split {rule}",
        split_rule=rule,
        origin=str(csv_path.resolve()),
    )
