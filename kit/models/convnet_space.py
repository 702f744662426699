"""A ConvNet search space for the NAS-proxy experiment (DDFAD §5.2): depth, width, norm, pooling, activation.

Why a separate arch instead of options on ``convnet``: the ``convnet`` of the distillation
papers is the fixed evaluation network every coreset figure is reported on, and its artifact
format must not drift. The NAS proxy needs a *family* of networks that differ along the axes a
small-model designer actually tunes (how deep, how wide, which normalisation, avg or max
pooling, which non-linearity) so that one can ask: does training each candidate on a 20-per-class
coreset rank the candidates the way training on the full data does?

The block is conv3x3 -> norm -> activation -> pool, like ``convnet``; with ``pooling="avg"`` and
``activation="relu"`` the network is layer-for-layer the ``convnet`` of the same width/depth/norm.
"""

from __future__ import annotations

import itertools
from typing import Any

from torch import nn

from .base import KitModel, make_norm, pool_kernel

#: activation name -> constructor (all elementwise, so the export path handles every one)
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leakyrelu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "silu": nn.SiLU,
}
POOLINGS: dict[str, type[nn.Module]] = {"avg": nn.AvgPool2d, "max": nn.MaxPool2d}
NORMS = ("instance", "batch", "none")

#: the axes of the NAS grids; ``full`` is 3 x 2 x 3 x 2 x 2 = 72 variants, ``medium`` the 48 of depth 2-3
GRIDS: dict[str, dict[str, tuple[Any, ...]]] = {
    "full": {
        "depth": (2, 3, 4),
        "width": (32, 64),
        "norm": NORMS,
        "pooling": ("avg", "max"),
        "activation": ("relu", "leakyrelu"),
    },
    "medium": {
        "depth": (2, 3),
        "width": (32, 64),
        "norm": NORMS,
        "pooling": ("avg", "max"),
        "activation": ("relu", "leakyrelu"),
    },
}
#: a handful of deliberately different variants (every axis value appears) for the quick setting
QUICK_GRID: tuple[dict[str, Any], ...] = (
    {"depth": 2, "width": 16, "norm": "instance", "pooling": "avg", "activation": "relu"},
    {"depth": 3, "width": 16, "norm": "batch", "pooling": "max", "activation": "leakyrelu"},
    {"depth": 2, "width": 32, "norm": "none", "pooling": "max", "activation": "gelu"},
    {"depth": 3, "width": 32, "norm": "instance", "pooling": "max", "activation": "relu"},
    {"depth": 4, "width": 16, "norm": "none", "pooling": "avg", "activation": "leakyrelu"},
)


class ConvNetNAS(KitModel):
    """ConvNet with a choice of pooling (avg|max) and activation (relu|leakyrelu|gelu|elu|silu).

    kwargs: ``width`` (64), ``depth`` (3), ``norm`` (instance|batch|none), ``pooling`` (avg),
    ``activation`` (relu).
    """

    arch = "convnet-nas"

    def __init__(
        self,
        in_shape: tuple[int, int, int],
        n_classes: int,
        *,
        width: int = 64,
        depth: int = 3,
        norm: str = "instance",
        pooling: str = "avg",
        activation: str = "relu",
    ) -> None:
        super().__init__(
            in_shape,
            n_classes,
            {"width": int(width), "depth": int(depth), "norm": norm, "pooling": pooling, "activation": activation},
        )
        if width < 1 or depth < 1:
            raise ValueError(f"width and depth must be positive (got width={width}, depth={depth})")
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling '{pooling}' (choose {' or '.join(POOLINGS)})")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation '{activation}' (choose from {', '.join(ACTIVATIONS)})")
        if norm not in NORMS:
            raise ValueError(f"unknown norm '{norm}' (choose instance, batch or none)")
        channels, height, frames = self.in_shape
        layers: list[nn.Module] = []
        for _ in range(int(depth)):
            layers += [
                nn.Conv2d(channels, int(width), 3, padding=1),
                make_norm(norm, int(width)),
                ACTIVATIONS[activation](),
            ]
            kernel = pool_kernel(height, frames)
            if kernel != (1, 1):
                layers.append(POOLINGS[pooling](kernel, stride=kernel))
            height, frames = height // kernel[0], frames // kernel[1]
            channels = int(width)
        layers.append(nn.Flatten())
        self.body = nn.Sequential(*layers)
        self.embedding_dim = int(width) * height * frames
        self.head = nn.Linear(self.embedding_dim, n_classes)


def variant_name(variant: dict[str, Any]) -> str:
    """Short stable id, e.g. ``d3-w64-instance-max-gelu`` (cell keys, table rows, plot labels)."""
    return f"d{variant['depth']}-w{variant['width']}-{variant['norm']}-{variant['pooling']}-{variant['activation']}"


def search_space(grid: str) -> list[dict[str, Any]]:
    """The variants of a named grid (``quick``, ``medium`` or ``full``) as ``arch_kwargs`` dicts."""
    if grid == "quick":
        return [dict(v) for v in QUICK_GRID]
    if grid not in GRIDS:
        raise ValueError(f"unknown NAS grid '{grid}' (choose quick, {', '.join(GRIDS)})")
    axes = GRIDS[grid]
    return [dict(zip(axes, values)) for values in itertools.product(*axes.values())]
