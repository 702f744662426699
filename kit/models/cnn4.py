"""The small 4-layer CNN used for audio in the RFAD audio-distillation experiments.

Why a second architecture: a coreset that only works on the network it was distilled with is of
little use on a device; evaluating on a different, BatchNorm-based network with global average
pooling measures cross-architecture transfer. It is also small enough (about 0.3 M parameters at
the default widths) to run on a microcontroller-class device.
Layers: 4 x (conv3x3 -> BatchNorm -> ReLU), 2x2 max-pooling after each of the first three
(guarded for 1-high maps), global average pooling, linear head.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .base import KitModel, make_norm, pool_kernel


class CNN4(KitModel):
    """kwargs: ``widths`` (32, 64, 128, 128), ``norm`` (batch|instance|none), ``dropout`` (0.0)."""

    arch = "cnn4"

    def __init__(
        self,
        in_shape: tuple[int, int, int],
        n_classes: int,
        *,
        widths: Sequence[int] = (32, 64, 128, 128),
        norm: str = "batch",
        dropout: float = 0.0,
    ) -> None:
        widths = [int(w) for w in widths]
        super().__init__(in_shape, n_classes, {"widths": widths, "norm": norm, "dropout": float(dropout)})
        if len(widths) != 4 or min(widths) < 1:
            raise ValueError(f"cnn4 needs 4 positive widths, got {widths}")
        channels, height, frames = self.in_shape
        layers: list[nn.Module] = []
        for i, width in enumerate(widths):
            layers += [
                nn.Conv2d(channels, width, 3, padding=1, bias=norm == "none"),
                make_norm(norm, width),
                nn.ReLU(inplace=True),
            ]
            if i < 3:
                kernel = pool_kernel(height, frames)
                if kernel != (1, 1):
                    layers.append(nn.MaxPool2d(kernel, stride=kernel))
                height, frames = height // kernel[0], frames // kernel[1]
            channels = width
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.embedding_dim = widths[-1]
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(self.embedding_dim, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.embed(x)))

    def forward_with_embedding(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.embed(x)
        return self.head(self.dropout(z)), z
