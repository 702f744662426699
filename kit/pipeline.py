"""The steps every front door shares: load a training set, distil it into a Coreset, score a coreset.

Why one module: ``kit distill``, ``kit demo`` and the benchmarks must produce identical coresets
with identical provenance for the same options; if each built its own, their figures would stop
being comparable the first time one of them changed.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from deploy.runtime.compat import renormalize, require_same_space
from deploy.runtime.coreset import Coreset

from .data import load_dataset
from .features import FeatureSet, load_feature_set


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def jsonable(value: Any) -> Any:
    """Paths, tuples, numpy scalars and arrays inside parameter dicts or results, made JSON-ready."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def load_training_set(
    dataset: str,
    data_dir: str | os.PathLike | None = None,
    *,
    split: str = "official",
    task: str = "kws10",
    test_fold: int = 5,
    feature: str | None = None,
    limit_per_class: int | None = None,
    skip_bad: bool = False,
    progress: bool = True,
    extra_train: Sequence[str | os.PathLike] = (),
) -> tuple[FeatureSet, dict[str, Any]]:
    """The feature set and a record of exactly how it was loaded (the loader options).

    ``extra_train`` folders (Speech Commands only) join the training split; the loader refuses a
    speaker who is also in the test split, so a coreset distilled from them never saw a test voice."""
    ds = load_dataset(dataset, data_dir, split=split, task=task, test_fold=test_fold, extra_train=extra_train)
    config = ds.feature_config.with_(kind=feature) if feature is not None else None
    fs = load_feature_set(
        ds,
        data_dir,
        config=config,
        split=split,
        task=task,
        test_fold=test_fold,
        progress=progress,
        limit_per_class=limit_per_class,
        skip_bad=skip_bad,
        extra_train=extra_train,
    )
    loader = {
        "dataset": dataset,
        "data_dir": None if data_dir is None else str(data_dir),
        "split": split,
        "task": task,
        "test_fold": test_fold,
        "feature": fs.config.kind,
        "limit_per_class": limit_per_class,
        "skip_bad": skip_bad,
        "data_fingerprint": ds.fingerprint(),
    }
    if extra_train:
        loader["extra_train"] = [str(Path(f).expanduser().resolve()) for f in extra_train]
    return fs, loader


def distill_coreset(
    fs: FeatureSet, loader: dict[str, Any], method: str, ipc: int, seed: int = 0, **params: Any
) -> tuple[Coreset, Any, dict[str, Any]]:
    """Fit ``method`` on the training split and wrap the result as a Coreset with full provenance.

    Returns (coreset, fitted distiller, summary with fit time and peak memory).
    """
    from distill import make_distiller  # lazy: pulls in torch
    from distill.base import validate_training_set  # lazy: pulls in torch
    from distill.iterative import data_fingerprint  # lazy: pulls in torch

    distiller = make_distiller(method, ipc, seed=seed, **params)
    validate_training_set(fs.x_train, fs.y_train, len(fs.classes), ipc, class_names=fs.classes)
    started = time.time()
    distiller.fit(fs.x_train, fs.y_train, n_classes=len(fs.classes))
    wall = time.time() - started

    resolved = distiller.resolved_params()
    source = dict(jsonable(fs.source or {}))
    for key, value in loader.items():
        source.setdefault(key, value)
    source["dataset_name"] = loader["dataset"]
    source["train_fingerprint"] = data_fingerprint(fs.x_train, fs.y_train)
    source["n_train"] = int(len(fs.x_train))
    summary = dict(distiller.summary())
    summary.update(fit_time_s=round(wall, 2), peak_rss_mb=round(peak_rss_mb(), 1))
    selected = distiller.selected_indices()
    if selected is not None:
        summary["train_indices"] = [int(i) for i in selected]
    coreset = Coreset(
        features=distiller.features_,
        labels=distiller.labels_,
        classes=list(fs.classes),
        feature_config=fs.config,
        normalizer=fs.normalizer,
        method=method,
        params=jsonable(resolved),
        seed=seed,
        source=source,
        extra={"history": summary},
    )
    return coreset, distiller, summary


def coreset_features_for(coreset: Coreset, fs: FeatureSet, where: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """A coreset's samples and labels in ``fs``'s normalisation, for training next to ``fs``'s data.

    The coreset must share the classes (same order) and the front-end; ``where`` (its file, or the
    option that named it) leads the one-line error otherwise. Features are re-normalised from the
    coreset's statistics to the feature set's, which differ when e.g. an experiment loads a subset
    of the training split.
    """
    require_same_space(fs, coreset, where, expected_name="the dataset's", normalizer=False)
    x = renormalize(coreset.features, coreset.normalizer, fs.normalizer)
    return x, coreset.labels


def score_coreset(
    x: np.ndarray, y: np.ndarray, fs: FeatureSet, seeds: tuple[int, ...] = (0, 1, 2), **train_options: Any
) -> dict[str, Any]:
    """ConvNet test accuracy (mean ± std over ``seeds``) of training on ``(x, y)``, on ``fs``'s test split."""
    from .training import TrainConfig, train_eval_seeds  # lazy: pulls in torch

    config = TrainConfig(**train_options)
    started = time.time()
    result = train_eval_seeds(x, y, fs.x_test, fs.y_test, len(fs.classes), config, seeds=seeds)
    result["train_time_s"] = round(time.time() - started, 1)
    return result
