"""Knowledge distillation: train a small model on the averaged predictions of trained teachers.

Why: a device model is small because it must fit a microcontroller, not because small models
learn best. Several trained models (other seeds, a bigger architecture) average into a better
classifier than any one of them, and their softened class probabilities say which words sound
alike, which a one-hot label does not. ``kit train DATASET --teacher A.kit --teacher B.kit``
mixes that average into the training targets of the one model that ships (Hinton et al., 2015).

Teachers must share the student's input space (classes, front-end, normaliser), or their
predictions on the student's feature maps would be meaningless; ``load_teachers`` refuses others
with a one-line error naming the file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import track

from deploy.runtime.artifact import sha256_file
from deploy.runtime.classifier import softmax
from deploy.runtime.compat import require_same_space
from deploy.runtime.errors import KitError

from ..models import KitModel, load_model
from .evaluate import predict_logits


@dataclass
class Teachers:
    """Loaded teacher models and what a run records about them."""

    models: list[KitModel]
    records: list[dict[str, Any]]


def check_teacher_files(paths: Sequence[str | os.PathLike]) -> None:
    """A one-line error naming the first teacher path that is not a file.

    Why apart from ``load_teachers``: ``kit train`` calls it before the features load, so a typo
    costs nothing instead of minutes."""
    for raw in paths:
        if not Path(raw).is_file():
            raise KitError(f"--teacher {raw}: no such model file")


def load_teachers(paths: Sequence[str | os.PathLike], fs: Any) -> Teachers:
    """Load each teacher model and check it reads the student's input space (``fs``, a FeatureSet)."""
    check_teacher_files(paths)
    models, records = [], []
    for raw in paths:
        path = Path(raw)
        model, meta = load_model(path)
        require_same_space(fs, meta, f"--teacher {path}", expected_name="this training set's", what="teacher")
        models.append(model.eval())
        records.append(
            {
                "path": str(path),
                "sha256": sha256_file(path),
                "arch": meta.get("train_config", {}).get("arch"),
                "accuracy": meta.get("metrics", {}).get("accuracy"),
            }
        )
    return Teachers(models, records)


def teacher_probabilities(teachers: Teachers, x: np.ndarray, progress: bool = False) -> np.ndarray:
    """The teachers' class probabilities on ``x``, averaged (N, K) float32.

    Why no temperature: the detector on the device thresholds the student's confidence, and targets
    flattened by a temperature would teach the student to be unsure (as label smoothing does).
    """
    if not teachers.models:
        raise ValueError("teacher_probabilities needs at least one teacher")
    models = track(
        teachers.models,
        description=f"teachers: predicting {len(x)} examples",
        console=Console(stderr=True),
        transient=True,
        disable=not progress,
    )
    probs = [softmax(predict_logits(model, x)) for model in models]
    return np.mean(probs, axis=0).astype(np.float32)


def check_teacher_weight(weight: float) -> None:
    """A one-line error unless ``weight`` (the teachers' share of a target) lies in (0, 1]."""
    if not 0.0 < weight <= 1.0:
        raise KitError(f"--teacher-weight must lie in (0, 1], got {weight}")


def distillation_targets(y: np.ndarray, teacher_probs: np.ndarray, weight: float) -> np.ndarray:
    """``(1 - weight)`` x one-hot labels ``y`` + ``weight`` x the teachers' probabilities, (N, K) float32.

    At ``weight`` <= 0.5 the label's class stays each row's argmax, so class balance by sampling
    (which counts rows by argmax) still counts each clip under its own label.
    """
    check_teacher_weight(weight)
    labels = np.asarray(y, dtype=np.int64)
    n, k = teacher_probs.shape
    if labels.shape != (n,):
        raise KitError(f"{n} teacher predictions but {labels.shape[0]} labels")
    targets = np.zeros((n, k), dtype=np.float32)
    targets[np.arange(n), labels] = 1.0 - weight
    return targets + weight * teacher_probs
