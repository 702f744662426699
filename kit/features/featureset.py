"""``load_feature_set``: dataset name in, normalised train/test tensors out.

Why normalise here and only from the training split: every consumer (distillers, training,
evaluation, export) needs the same statistics, and fitting them on test clips would leak test
information into the model input space. The ``Normalizer`` travels with coresets and models so
raw audio on the device is normalised identically.
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deploy.runtime.coreset import Normalizer
from deploy.runtime.errors import KitError
from deploy.runtime.features import FeatureConfig

from ..data.registry import load_dataset
from ..data.types import AudioDataset, Clip
from .extract import extract_clips


@dataclass
class FeatureSet:
    """Normalised features of one dataset split, labels as indices into sorted ``classes``."""

    classes: list[str]
    config: FeatureConfig
    normalizer: Normalizer
    x_train: np.ndarray  # (N, C, F, T) float32, normalised
    y_train: np.ndarray  # (N,) int64
    groups_train: np.ndarray  # (N,) str: speaker / fold / recording, for grouped validation
    x_test: np.ndarray
    y_test: np.ndarray
    source: dict = field(default_factory=dict)  # JSON-ready provenance: dataset fingerprint, split, skips

    @property
    def n_classes(self) -> int:
        return len(self.classes)


def limit_clips(dataset: AudioDataset, clips: list[Clip], limit_per_class: int | None) -> list[Clip]:
    """The first ``limit_per_class`` clips per class and split, ranked by a hash of the path.

    A hash order (not the sorted file order) spreads a small subset over speakers and takes;
    the first n of FSDD's sorted files would all be one speaker. Output keeps dataset order.
    """
    if limit_per_class is None:
        return clips
    if limit_per_class < 1:
        raise KitError(f"limit_per_class must be at least 1, not {limit_per_class}")
    ranked = sorted(
        range(len(clips)),
        key=lambda i: hashlib.sha1(f"{dataset.relative_path(clips[i])}@{clips[i].offset_s}".encode()).hexdigest(),
    )
    taken: dict[tuple[str, str], int] = defaultdict(int)
    keep = []
    for i in ranked:
        key = (clips[i].split, clips[i].label)
        if taken[key] < limit_per_class:
            taken[key] += 1
            keep.append(i)
    return [clips[i] for i in sorted(keep)]


def load_feature_set(
    dataset: str | os.PathLike | AudioDataset,
    data_dir: str | os.PathLike | None = None,
    *,
    config: FeatureConfig | None = None,
    split: str = "official",
    task: str = "kws10",
    test_fold: int = 5,
    cache_dir: str | os.PathLike | None = None,
    skip_bad: bool = False,
    progress: bool = True,
    limit_per_class: int | None = None,
    jobs: int | None = None,
    seed: int = 0,
    extra_train: Sequence[str | os.PathLike] = (),
) -> FeatureSet:
    """Load a dataset (or take an ``AudioDataset``), extract cached features, normalise on train.

    ``config`` defaults to the dataset's own front-end. Clips of a "val" split (official
    Speech Commands lists) are not part of a ``FeatureSet``.
    """
    if not isinstance(dataset, AudioDataset):
        dataset = load_dataset(
            dataset, data_dir, split=split, task=task, test_fold=test_fold, seed=seed, extra_train=extra_train
        )
    config = config or dataset.feature_config
    train = limit_clips(dataset, dataset.clips_in("train"), limit_per_class)
    test = limit_clips(dataset, dataset.clips_in("test"), limit_per_class)
    clips = train + test
    features, kept = extract_clips(clips, config, cache_dir=cache_dir, jobs=jobs, skip_bad=skip_bad, progress=progress)
    index = {name: i for i, name in enumerate(dataset.classes)}
    in_train = kept < len(train)
    kept_train, kept_test = kept[in_train], kept[~in_train]
    if len(kept_train) == 0:
        raise KitError(f"dataset '{dataset.name}': no training clip could be read")
    y_all = np.array([index[c.label] for c in clips], dtype=np.int64)
    y_train, y_test = y_all[kept_train], y_all[kept_test]
    missing = sorted(set(range(len(dataset.classes))) - set(y_train.tolist()))
    if missing:
        raise KitError(f"dataset '{dataset.name}': class '{dataset.classes[missing[0]]}' has no readable training clip")
    raw_train, raw_test = features[in_train], features[~in_train]
    normalizer = Normalizer.fit(raw_train)
    skipped = sorted(set(range(len(clips))) - set(kept.tolist()))
    source = {
        "dataset": dataset.fingerprint(),
        "dataset_path": dataset.origin or dataset.name,  # what load_dataset needs to get it back
        "description": dataset.description,
        "split": split,
        "task": task,
        "test_fold": test_fold,
        "seed": seed,
        **({"extra_train": [str(Path(f).expanduser().resolve()) for f in extra_train]} if extra_train else {}),
        "limit_per_class": limit_per_class,
        "feature_config": config.to_dict(),
        "n_train": int(len(kept_train)),
        "n_test": int(len(kept_test)),
        "n_skipped": len(skipped),
        "skipped": [dataset.relative_path(clips[i]) for i in skipped[:20]],
    }
    return FeatureSet(
        classes=list(dataset.classes),
        config=config,
        normalizer=normalizer,
        x_train=normalizer.transform(raw_train),
        y_train=y_train,
        groups_train=np.array([clips[i].group for i in kept_train], dtype=str),
        x_test=normalizer.transform(raw_test),
        y_test=y_test,
        source=source,
    )
