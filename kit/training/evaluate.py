"""Accuracy of a trained model, and the kit's reported figure: mean +- std over seeds.

Why several seeds: with 1-50 clips per class, one training run's accuracy swings by several
points from initialisation and batch order alone; a coreset comparison is only meaningful as a
mean over >= 3 independently seeded trainings (std with ddof=0, as in the DC/DM papers).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from deploy.runtime.errors import KitError

from .config import TrainConfig
from .loop import torch_threads, train_model
from .targets import hard_labels


@torch.no_grad()
def predict_logits(model: torch.nn.Module, x: np.ndarray | torch.Tensor, batch_size: int = 512) -> np.ndarray:
    """Logits (N, K) in eval mode, batched, on the model's device."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    x = torch.as_tensor(np.asarray(x, dtype=np.float32))
    outputs = [model(x[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)]
    model.train(was_training)
    return torch.cat(outputs).numpy() if outputs else np.zeros((0, getattr(model, "n_classes", 0)), np.float32)


def evaluate(
    model: torch.nn.Module, x: np.ndarray | torch.Tensor, y: np.ndarray, batch_size: int = 512
) -> dict[str, Any]:
    """``{"accuracy", "predictions" (N,), "confusion" (K, K) rows = true class, "n"}``."""
    labels = hard_labels(y)
    if len(labels) != len(x):
        raise KitError(f"{len(x)} test feature maps but {len(labels)} labels")
    if len(labels) == 0:
        raise KitError("cannot evaluate on an empty test set")
    logits = predict_logits(model, x, batch_size)
    n_classes = logits.shape[1]
    predictions = logits.argmax(axis=1)
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    return {
        "accuracy": float((predictions == labels).mean()),
        "predictions": predictions,
        "confusion": confusion,
        "n": int(len(labels)),
    }


def train_eval_seeds(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    n_classes: int,
    config: TrainConfig | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    progress: bool = True,
    keep_models: bool = False,
) -> dict[str, Any]:
    """Train one model per seed and evaluate each on the test set.

    Returns ``{"mean", "std", "accuracies", "per_seed": [{"seed", "accuracy", "train_seconds",
    "steps", "samples_per_s"}], "n_train", "n_test", "config"}`` plus ``"models"`` (in seed order)
    when ``keep_models``.
    """
    config = config or TrainConfig()
    if not seeds:
        raise KitError("give at least one seed")
    per_seed, models = [], []
    for seed in seeds:
        model = train_model(x_train, y_train, n_classes, config.with_(seed=int(seed)), progress=progress)
        with torch_threads(config.threads):
            result = evaluate(model, x_test, y_test)
        stats = model.train_stats  # type: ignore[attr-defined]
        per_seed.append(
            {
                "seed": int(seed),
                "accuracy": result["accuracy"],
                "train_seconds": stats["seconds"],
                "steps": stats["steps"],
                "samples_per_s": stats["samples_per_s"],
            }
        )
        if keep_models:
            models.append(model)
    accuracies = np.array([row["accuracy"] for row in per_seed])
    out: dict[str, Any] = {
        "mean": float(accuracies.mean()),
        "std": float(accuracies.std()),
        "accuracies": accuracies.tolist(),
        "per_seed": per_seed,
        "n_train": int(len(x_train)),
        "n_test": int(len(x_test)),
        "config": config.to_dict(),
    }
    if keep_models:
        out["models"] = models
    return out
