"""Microcontroller-ready networks: DS-CNN and a small ConvNet whose int8 TFLite graph holds only
ops that CMSIS-NN accelerates (CONV_2D, DEPTHWISE_CONV_2D, AVERAGE_POOL_2D, FULLY_CONNECTED,
RESHAPE).

Why separate architectures and not export options: what an MCU can run is decided by the network
itself, not by the exporter. Instance norm decomposes into MEAN / RSQRT / MUL ops in TFLite (no
CMSIS-NN kernel, and many MCU runtimes lack them); batch norm folds into the preceding convolution
at export (``deploy.edge_graph``). A flatten of a (C, F, T) map needs a TRANSPOSE once the graph
is NHWC, so these networks end in global average pooling (exported as AVERAGE_POOL_2D, not MEAN).
An even kernel with centred padding is not TFLite's SAME padding and costs a PAD op, so strided
first layers use no padding. With ``norm="instance"`` (what distillers ask for by default) the
network still trains and distils, but is not MCU-ready and exports like any other model.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import KitModel, make_norm, pool_kernel
from .dscnn import DSCNN

MCU_NORMS = ("batch", "none")


class DSCNNMCU(DSCNN):
    """DS-CNN (Hello Edge S/M) with batch norm and an unpadded first convolution. kwargs as ``dscnn``."""

    arch = "dscnn-mcu"

    def __init__(
        self, in_shape: tuple[int, int, int], n_classes: int, *, padding: str = "valid", **kwargs: object
    ) -> None:
        super().__init__(in_shape, n_classes, padding=padding, **kwargs)  # type: ignore[arg-type]
        self.arch_kwargs["padding"] = padding  # always recorded: this arch's default differs from dscnn's

    @property
    def mcu_ready(self) -> bool:
        return self.arch_kwargs["norm"] in MCU_NORMS and self.arch_kwargs.get("padding") == "valid"

    @property
    def tflite_layout(self) -> str:
        return "NHWC" if self.mcu_ready else "NCHW"


class ConvNetMCU(KitModel):
    """A small ConvNet for microcontrollers. kwargs: ``width`` (32), ``depth`` (3), ``norm``
    (batch|none|instance; batch by default), ``dropout`` before the head (0.0).

    Layers: a stem of one 3x3 convolution with stride 2 and no padding -> norm -> ReLU -> average
    pooling (2 x 2; 1 x 2 when fewer than 8 coefficients are left), so the map shrinks 8-16x
    before the first full-width pair of activations is live (the TFLM arena is set by the
    largest such pair: 40 log-mel bands x 64 frames needed 40.7 KB without the stem pool, over
    the 32 KB target), then ``depth - 1`` blocks of 3x3 convolution (padding 1 = SAME) -> norm ->
    ReLU -> 2x2 average pooling (not after the last block), global average pooling and one
    linear layer. At width 32 and the default 3 x 13 x 64 FD-MFCC input it has about 20 K weights.
    """

    arch = "convnet-mcu"

    def __init__(
        self,
        in_shape: tuple[int, int, int],
        n_classes: int,
        *,
        width: int = 32,
        depth: int = 3,
        norm: str = "batch",
        dropout: float = 0.0,
    ) -> None:
        super().__init__(
            in_shape, n_classes, {"width": int(width), "depth": int(depth), "norm": norm, "dropout": float(dropout)}
        )
        if width < 1 or depth < 1:
            raise ValueError(f"convnet-mcu width and depth must be positive (got width={width}, depth={depth})")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"convnet-mcu dropout must be in [0, 1), got {dropout}")
        make_norm(norm, 1)
        channels, height, frames = self.in_shape
        kernel = (min(3, height), min(3, frames))
        stride = tuple(2 if n >= 3 else 1 for n in (height, frames))
        layers: list[nn.Module] = [
            nn.Conv2d(channels, width, kernel, stride=stride, bias=norm != "batch"),
            make_norm(norm, width),
            nn.ReLU(),
        ]
        height, frames = (height - kernel[0]) // stride[0] + 1, (frames - kernel[1]) // stride[1] + 1
        stem_pool = (2 if height >= 8 else 1, 2 if frames >= 2 else 1)  # keep a short coefficient axis
        if stem_pool != (1, 1):
            layers.append(nn.AvgPool2d(stem_pool, stride=stem_pool))
            height, frames = height // stem_pool[0], frames // stem_pool[1]
        for block in range(depth - 1):
            layers += [nn.Conv2d(width, width, 3, padding=1, bias=norm != "batch"), make_norm(norm, width), nn.ReLU()]
            pool = pool_kernel(height, frames)
            if block < depth - 2 and pool != (1, 1):  # the last block pools globally instead
                layers.append(nn.AvgPool2d(pool, stride=pool))
                height, frames = height // pool[0], frames // pool[1]
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.embedding_dim = int(width)
        self.dropout = nn.Dropout(float(dropout)) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(width, n_classes)

    @property
    def mcu_ready(self) -> bool:
        return self.arch_kwargs["norm"] in MCU_NORMS

    @property
    def tflite_layout(self) -> str:
        return "NHWC" if self.mcu_ready else "NCHW"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.embed(x)))

    def forward_with_embedding(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.embed(x)
        return self.head(self.dropout(z)), z
