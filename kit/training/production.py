"""Train a model and save it with everything a device needs: the one path from tensors to a model artifact.

Why one function: ``kit train``, the experiments and every benchmark used to hand-build the model's
metadata (classes, front-end, normaliser, training config, seed, metrics, provenance). When one of
them forgot a key, ``kit export`` / ``kit bundle`` later failed or, worse, calibrated in another
input space. Everything that writes a model artifact goes through ``save_trained`` (and
``train_and_save`` when it also trains), so every ``model.kit`` can be exported and bundled.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deploy.runtime.compat import FeatureSpace

from ..models import KitModel, save_model
from .config import TrainConfig
from .evaluate import evaluate
from .loop import train_model


def model_meta(
    space: Any,
    config: TrainConfig,
    *,
    metrics: dict[str, Any] | None = None,
    source: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The metadata of a model trained in ``space`` (a FeatureSet, Coreset or FeatureSpace) with ``config``."""
    where = FeatureSpace.of(space)
    if where.classes is None or where.feature_config is None:
        raise ValueError("a saved model needs the classes and the front-end of its training data")
    return {
        "classes": list(where.classes),
        "feature_config": where.feature_config,
        "normalizer": where.normalizer,
        "train_config": config.to_dict(),
        "seed": config.seed,
        "metrics": dict(metrics or {}),
        "source": dict(source if source is not None else (getattr(space, "source", None) or {})),
        **extra,
    }


def save_trained(
    path: str | os.PathLike,
    model: KitModel,
    space: Any,
    config: TrainConfig,
    *,
    metrics: dict[str, Any] | None = None,
    **extra: Any,
) -> Path:
    """Write ``model`` (moved to the CPU) as a model artifact whose meta comes from ``model_meta``."""
    return save_model(path, model.cpu(), model_meta(space, config, metrics=metrics, **extra))


@dataclass
class TrainedModel:
    """What ``train_and_save`` produced: the file, the model (on the CPU) and its figures."""

    path: Path
    model: KitModel
    metrics: dict[str, Any] = field(default_factory=dict)
    train_stats: dict[str, Any] = field(default_factory=dict)


def train_and_save(
    path: str | os.PathLike,
    x: np.ndarray,
    y: np.ndarray,
    space: Any,
    config: TrainConfig,
    *,
    x_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
    progress: bool = True,
    words: tuple[np.ndarray, list[str]] | None = None,
    sample_weight: np.ndarray | None = None,
    **extra: Any,
) -> TrainedModel:
    """Train ``config.arch`` on ``(x, y)``, score it on ``(x_test, y_test)`` when given, and save it.

    ``space`` names the input space of ``x`` (classes, front-end, normaliser, provenance); ``extra``
    keys go into the model's metadata as they are. ``words`` (labels, names) feed the training-only
    word head (``config.word_head``; see ``recipe.py``); the names are recorded, the head is not saved.
    ``sample_weight`` (N,) weights how often each row is drawn (``train_model``).
    """
    n_classes = len(FeatureSpace.of(space).classes or ())
    word_labels, word_classes = words if words is not None else (None, None)
    if word_classes is not None and config.word_head > 0:
        extra["word_head_classes"] = list(word_classes)
    model = train_model(x, y, n_classes, config, progress=progress, words=word_labels, sample_weight=sample_weight)
    metrics: dict[str, Any] = {}
    if x_test is not None and y_test is not None:
        metrics = {"accuracy": float(evaluate(model, x_test, y_test)["accuracy"]), "n_test": int(len(y_test))}
    model = model.cpu()
    saved = save_trained(path, model, space, config, metrics=metrics, **extra)
    return TrainedModel(saved, model, metrics, dict(getattr(model, "train_stats", {}) or {}))
