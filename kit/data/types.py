"""The two data types every loader returns: a ``Clip`` (one labelled segment of one file) and an
``AudioDataset`` (the clip list with its classes, split and default feature front-end).

Why a flat clip list: splits, groups and labels are plain attributes, so the feature cache, the
``kit data info`` table and leak checks (no speaker on both sides) all work the same way for every
dataset, and a fingerprint over the list identifies exactly which audio a coreset came from.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from deploy.runtime.errors import KitError
from deploy.runtime.features import FeatureConfig

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Clip:
    """One labelled piece of audio: a whole file, or ``duration_s`` seconds from ``offset_s``.

    ``split`` is "train" or "test" ("val" only where a dataset ships an official validation
    list); ``group`` is what must never straddle the split: speaker, fold or source recording.
    """

    path: Path
    label: str
    split: str
    group: str
    offset_s: float = 0.0
    duration_s: float | None = None

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise KitError(f"{self.path}: split must be one of {', '.join(SPLITS)}, not '{self.split}'")


@dataclass
class AudioDataset:
    """A labelled, split clip list plus the feature front-end that suits its recordings.

    ``split_rule`` records how train/test were assigned (e.g. which hashing rule), so two runs
    that differ only in the split are told apart by ``fingerprint()``. ``origin`` is what to pass
    to ``load_dataset`` to get it again: the built-in name, or the folder / CSV path.
    """

    name: str
    root: Path
    classes: list[str]
    clips: list[Clip]
    feature_config: FeatureConfig
    description: str = ""
    split_rule: str = ""
    origin: str = ""

    def clips_in(self, split: str) -> list[Clip]:
        """The clips of one split, in the dataset's (sorted, deterministic) order."""
        if split not in SPLITS:
            raise KitError(f"unknown split '{split}' (choose from {', '.join(SPLITS)})")
        return [clip for clip in self.clips if clip.split == split]

    @property
    def splits(self) -> list[str]:
        present = {clip.split for clip in self.clips}
        return [name for name in SPLITS if name in present]

    def relative_path(self, clip: Clip) -> str:
        """The clip's path relative to the dataset root, with forward slashes (stable across machines)."""
        return Path(os.path.relpath(clip.path, self.root)).as_posix()

    def fingerprint(self) -> dict:
        """Identity of the exact clip list: name, size, classes, split rule and a SHA-256.

        The hash covers sorted (relative path, label, split, offset, duration) tuples, so it does
        not depend on where the data lives or on listing order, but changes when any clip, label
        or split assignment changes.
        """
        rows = sorted(
            (
                self.relative_path(c),
                c.label,
                c.split,
                float(c.offset_s),
                -1.0 if c.duration_s is None else float(c.duration_s),
            )
            for c in self.clips
        )
        digest = hashlib.sha256(json.dumps(rows, separators=(",", ":")).encode()).hexdigest()
        return {
            "name": self.name,
            "n_clips": len(self.clips),
            "classes": list(self.classes),
            "split_rule": self.split_rule,
            "sha256": digest,
        }

    def __len__(self) -> int:
        return len(self.clips)


def check_dataset(dataset: AudioDataset) -> AudioDataset:
    """Refuse datasets that would silently train or score wrongly.

    An empty class cannot be learned, and a class that appears in test but not in train can
    only ever be misclassified, so both stop here with the class named.
    """
    if not dataset.clips:
        raise KitError(f"dataset '{dataset.name}' at {dataset.root} has no audio clips")
    if dataset.classes != sorted(dataset.classes):
        raise KitError(f"dataset '{dataset.name}': class list must be sorted")
    known = set(dataset.classes)
    for clip in dataset.clips:
        if clip.label not in known:
            raise KitError(f"{clip.path}: label '{clip.label}' is not one of the dataset's classes")
    counts = Counter(clip.label for clip in dataset.clips)
    for name in dataset.classes:
        if counts[name] == 0:
            raise KitError(f"dataset '{dataset.name}': class '{name}' has no clips")
    train = {clip.label for clip in dataset.clips if clip.split == "train"}
    if not train:
        raise KitError(
            f"dataset '{dataset.name}' at {dataset.root}: the training split is empty ({dataset.split_rule})"
        )
    for split in ("test", "val"):
        missing = sorted({clip.label for clip in dataset.clips if clip.split == split} - train)
        if missing:
            held = [c for c in dataset.clips if c.label == missing[0] and c.split == split]
            raise KitError(
                f"{held[0].path}: class '{missing[0]}' is in the {split} split but has no training clips "
                f"({len(held)} clip(s), e.g. this one, in group '{held[0].group}'; split: {dataset.split_rule})"
                + (f" (and {len(missing) - 1} more classes)" if len(missing) > 1 else "")
            )
    return dataset
