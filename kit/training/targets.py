"""Label handling: integer labels -> cross-entropy, soft label matrices -> soft cross-entropy.

Why a module of its own: distillers (RFAD, KIP, label learning) emit (N, K) soft labels that are
not always probability vectors (kernel-regression targets can be negative or unnormalised). Rows
that already are distributions are used as-is; any other row is mapped through a softmax, so the
loss stays a proper cross-entropy between distributions.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from deploy.runtime.errors import KitError


def prepare_targets(y: np.ndarray | torch.Tensor, n_samples: int, n_classes: int) -> torch.Tensor:
    """int64 (N,) class indices, or float32 (N, K) rows that each sum to 1."""
    y = torch.as_tensor(np.asarray(y))
    if y.shape[0] != n_samples:
        raise KitError(f"{n_samples} feature maps but {y.shape[0]} labels")
    if y.ndim == 1:
        labels = y.long()
        if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
            raise KitError(f"labels must lie in 0..{n_classes - 1}, got {int(labels.min())}..{int(labels.max())}")
        return labels
    if y.ndim != 2 or y.shape[1] != n_classes:
        raise KitError(f"soft labels must have shape (N, {n_classes}), got {tuple(y.shape)}")
    soft = y.float()
    is_distribution = (soft >= 0).all(dim=1) & ((soft.sum(dim=1) - 1).abs() < 1e-3)
    return torch.where(is_distribution[:, None], soft, torch.softmax(soft, dim=1))


def classification_loss(
    logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0, class_weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Cross-entropy for index targets, soft cross-entropy -sum(t * log p) for (N, K) targets;
    ``class_weight`` (K,) weights each clip by its (argmax) class, normalised by the batch's weights."""
    if targets.ndim == 1:
        return F.cross_entropy(logits, targets, weight=class_weight, label_smoothing=label_smoothing)
    if label_smoothing > 0:
        targets = targets * (1 - label_smoothing) + label_smoothing / targets.shape[1]
    per_clip = -(targets * F.log_softmax(logits, dim=1)).sum(dim=1)
    if class_weight is None:
        return per_clip.mean()
    w = class_weight[targets.argmax(dim=1)]
    return (w * per_clip).sum() / w.sum().clamp_min(1e-12)


def hard_labels(y: np.ndarray) -> np.ndarray:
    """Class indices from integer labels or from soft label rows (argmax)."""
    y = np.asarray(y)
    return y.argmax(axis=1).astype(np.int64) if y.ndim == 2 else y.astype(np.int64)
