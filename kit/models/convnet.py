"""The ConvNet of the dataset-distillation literature (Zhao et al., DC/DSA/DM; also KIP/RFAD evals).

Why this network: coreset and distillation results are only comparable when they are evaluated
on the same architecture, and this is the one the papers report. Blocks are
conv3x3 -> norm -> ReLU -> avg-pool 2, repeated ``depth`` times, then flatten and a linear head.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import KitModel, make_norm, pool_kernel


class ConvNet(KitModel):
    """DC-style ConvNet. kwargs: ``width`` (128), ``depth`` (3), ``norm`` (instance|batch|none),
    ``dropout`` (0.0).

    ``dropout`` sits between the embedding and the head (as in CNN4) so active learning can draw
    MC-dropout samples (BALD) from the same network family it evaluates. It is recorded in
    ``arch_kwargs`` only when non-zero: models and artifacts built without it stay byte-identical
    to those written before the option existed.
    """

    arch = "convnet"

    def __init__(
        self,
        in_shape: tuple[int, int, int],
        n_classes: int,
        *,
        width: int = 128,
        depth: int = 3,
        norm: str = "instance",
        dropout: float = 0.0,
    ) -> None:
        kwargs: dict[str, object] = {"width": int(width), "depth": int(depth), "norm": norm}
        if dropout:
            kwargs["dropout"] = float(dropout)
        super().__init__(in_shape, n_classes, kwargs)
        if width < 1 or depth < 1:
            raise ValueError(f"convnet width and depth must be positive (got width={width}, depth={depth})")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"convnet dropout must be in [0, 1), got {dropout}")
        channels, height, frames = self.in_shape
        layers: list[nn.Module] = []
        for _ in range(depth):
            layers += [nn.Conv2d(channels, width, 3, padding=1), make_norm(norm, width), nn.ReLU(inplace=True)]
            kernel = pool_kernel(height, frames)
            if kernel != (1, 1):
                layers.append(nn.AvgPool2d(kernel, stride=kernel))
            height, frames = height // kernel[0], frames // kernel[1]
            channels = width
        layers.append(nn.Flatten())
        self.body = nn.Sequential(*layers)
        self.embedding_dim = width * height * frames
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(self.embedding_dim, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.embed(x)))

    def forward_with_embedding(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.embed(x)
        return self.head(self.dropout(z)), z
