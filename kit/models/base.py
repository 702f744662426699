"""The common shape of every kit model, so training, export and the artifact code stay arch-agnostic.

Why a base class: the model artifact stores only weights plus the constructor arguments, and
rebuilds the network from the registry on load (no pickles). That only works if every model
records exactly what it was built with (``arch``, ``in_shape``, ``n_classes``, resolved
``arch_kwargs``) and exposes the same two entry points: ``forward`` (logits) and ``embed`` (the
penultimate representation used by distillers, kNN probes and on-device fine-tuning).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class KitModel(nn.Module):
    """Base class: subclasses build ``self.body`` (x -> (N, D)) and ``self.head`` (D -> K)."""

    arch: str = ""

    @property
    def mcu_ready(self) -> bool:
        """True when the int8 TFLite export uses only ops CMSIS-NN accelerates (see ``kit.models.mcu``)."""
        return False

    @property
    def tflite_layout(self) -> str:
        """Input layout of the TFLite export: ``NCHW`` (N, C, F, T) as in PyTorch, or ``NHWC``
        (N, F, T, C), the layout TFLite kernels use natively (no TRANSPOSE ops in the graph)."""
        return "NCHW"

    def __init__(self, in_shape: tuple[int, int, int], n_classes: int, arch_kwargs: dict[str, Any]) -> None:
        super().__init__()
        if len(in_shape) != 3 or min(in_shape) < 1:
            raise ValueError(f"in_shape must be (channels, coefficients, frames), got {in_shape}")
        if n_classes < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {n_classes}")
        self.in_shape: tuple[int, int, int] = tuple(int(v) for v in in_shape)  # type: ignore[assignment]
        self.n_classes = int(n_classes)
        self.arch_kwargs: dict[str, Any] = dict(arch_kwargs)
        self.embedding_dim: int = 0  # set by the subclass once its body is built

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features, shape (N, embedding_dim)."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits, shape (N, n_classes)."""
        return self.head(self.embed(x))

    def forward_with_embedding(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and embedding from one pass (what the ONNX export exposes)."""
        z = self.embed(x)
        return self.head(z), z

    @property
    def spec(self) -> dict[str, Any]:
        """Everything ``build_model`` needs to rebuild this network (JSON-serialisable)."""
        return {
            "arch": self.arch,
            "in_shape": list(self.in_shape),
            "n_classes": self.n_classes,
            "arch_kwargs": dict(self.arch_kwargs),
        }


def make_norm(kind: str, channels: int) -> nn.Module:
    """instance = GroupNorm(C, C) (per-sample, per-channel; what DC/DM/RFAD ConvNets use, and it does
    not depend on batch statistics, which matters when a coreset has one clip per class);
    batch = BatchNorm2d; none = identity."""
    if kind == "instance":
        return nn.GroupNorm(channels, channels, affine=True)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm '{kind}' (choose instance, batch or none)")


def pool_kernel(height: int, width: int, size: int = 2) -> tuple[int, int]:
    """Pooling kernel that halves each axis but leaves an axis of size 1 alone.

    13 MFCC coefficients shrink 13 -> 6 -> 3 -> 1; a deeper net would otherwise try to pool a
    1-high map and fail (or produce an empty tensor).
    """
    return (size if height >= size else 1, size if width >= size else 1)
