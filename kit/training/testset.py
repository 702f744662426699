"""The real test split a coreset or a model is scored on, in that coreset's/model's input space.

Why its own module: a coreset only records where it came from (``source``: the dataset and the
loader options) plus the feature configuration and normaliser it was made with. Scoring it
fairly means rebuilding exactly that test split, extracting features with the coreset's
configuration and normalising with the coreset's statistics, never with statistics refitted on
some other subset. Only test clips are decoded (through the feature cache), not the train split.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deploy.runtime.coreset import Normalizer
from deploy.runtime.errors import KitError
from deploy.runtime.features import FeatureConfig

from ..data import load_dataset
from ..features import extract_clips, limit_clips

_LOADER_OPTIONS = ("split", "task", "test_fold", "seed", "extra_train")  # extra_train: so the fingerprint matches


@dataclass
class EvalSplit:
    """Normalised test features (N, C, F, T), labels indexing ``classes``, and provenance."""

    x: np.ndarray
    y: np.ndarray
    classes: list[str]
    info: dict[str, Any] = field(default_factory=dict)


def dataset_reference(source: dict[str, Any]) -> str:
    """The name or path to hand to ``load_dataset`` from a coreset/model ``source`` dict.

    Accepts ``{"dataset_name": "fsdd" or a path}`` (what ``kit distill`` records), ``{"dataset":
    "fsdd"}``, ``{"dataset": {"name": "fsdd", ...}}`` (a dataset fingerprint, as
    ``load_feature_set`` records it) and an explicit ``dataset_path``.
    """
    for key in ("dataset_path", "dataset_name", "path"):
        if isinstance(source.get(key), str):
            return source[key]
    dataset = source.get("dataset")
    if isinstance(dataset, dict):
        dataset = dataset.get("path") or dataset.get("name")
    if not isinstance(dataset, str) or not dataset:
        raise KitError("the coreset/model does not record its source dataset; pass --dataset NAME_OR_PATH")
    return dataset


def load_test_split(
    source: dict[str, Any],
    feature_config: FeatureConfig,
    normalizer: Normalizer | None,
    classes: list[str],
    data_dir: str | os.PathLike | None = None,
    *,
    dataset: str | None = None,
    limit_per_class: int | None = None,
    progress: bool = True,
) -> EvalSplit:
    """Features of the source dataset's test clips, normalised with ``normalizer``.

    The data folder is ``data_dir``, else ``$KIT_DATA_DIR``, else the ``data_dir`` the source
    recorded (if it still exists), else the kit's default cache.

    Class names must match the coreset's (same set); labels are re-indexed to ``classes`` order.
    A different clip list than the one the coreset was made from (dataset SHA-256) is reported in
    ``info["dataset_matches"]`` rather than refused, since data folders are sometimes re-synced.
    """
    reference = dataset or dataset_reference(source)
    recorded_dir = source.get("data_dir")
    if (
        data_dir is None
        and not os.environ.get("KIT_DATA_DIR")
        and isinstance(recorded_dir, str)
        and Path(recorded_dir).is_dir()
    ):
        data_dir = recorded_dir  # where the coreset's data was read from, when nothing else is given
    options = {key: source[key] for key in _LOADER_OPTIONS if key in source}
    audio = load_dataset(reference, data_dir, **options)
    missing = sorted(set(classes) - set(audio.classes))
    extra = sorted(set(audio.classes) - set(classes))
    if missing or extra:
        raise KitError(
            f"dataset '{reference}' classes do not match the model's (missing {missing[:5]}, unexpected {extra[:5]})"
        )
    clips = limit_clips(audio, audio.clips_in("test"), limit_per_class)
    if not clips:
        raise KitError(f"dataset '{reference}' has no test clips")
    raw, kept = extract_clips(clips, feature_config, progress=progress)
    index = {name: i for i, name in enumerate(classes)}
    y = np.array([index[clips[i].label] for i in kept], dtype=np.int64)
    x = normalizer.transform(raw) if normalizer is not None else raw.astype(np.float32)
    fingerprint = audio.fingerprint()
    recorded = source.get("dataset")
    matches = None
    if isinstance(recorded, dict) and "sha256" in recorded:
        matches = recorded["sha256"] == fingerprint["sha256"]
    info = {
        "dataset": reference,
        "options": options,
        "n_test": int(len(y)),
        "limit_per_class": limit_per_class,
        "dataset_sha256": fingerprint["sha256"],
        "dataset_matches": matches,
    }
    return EvalSplit(x=x, y=y, classes=list(classes), info=info)
