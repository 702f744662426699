"""ResNet-18 adapted to small audio feature maps (13-40 coefficients x 64-160 frames).

Why adapted: the ImageNet ResNet opens with a 7x7 stride-2 convolution and a max-pool, which
would shrink 13 MFCC coefficients to 4 before the first residual block. Here the stem is one 3x3
convolution at stride 1 (as in the CIFAR ResNets of the distillation papers' cross-architecture
tables), and a stage halves an axis only while that axis is at least 2 high (``pool_kernel``),
so even a (1, 13, 64) MFCC map passes all four stages. Layout: BasicBlocks [2, 2, 2, 2] with
widths w, 2w, 4w, 8w, global average pooling, one linear head (embedding = 8w values).

``width`` 64 is the original network (11 M parameters, ~0.5 G MACs on a (3, 13, 64) map: too
heavy for a microcontroller, useful as the "large network" of a cross-architecture test);
``width`` 16 is 1/16 of that and trains on a CPU at about the cost of the width-128 ConvNet.
``norm`` batch is the usual choice for evaluation; instance (GroupNorm per channel) keeps a
network independent of batch composition, which the distillers' random networks need.
"""

from __future__ import annotations

from torch import nn

from .base import KitModel, make_norm, pool_kernel


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or 1x1 projection) shortcut."""

    def __init__(self, in_channels: int, channels: int, stride: tuple[int, int], norm: str) -> None:
        super().__init__()
        bias = norm == "none"
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=bias)
        self.norm1 = make_norm(norm, channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=bias)
        self.norm2 = make_norm(norm, channels)
        self.relu = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != (1, 1) or in_channels != channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride=stride, bias=bias), make_norm(norm, channels)
            )

    def forward(self, x):  # type: ignore[no-untyped-def]
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet18(KitModel):
    """kwargs: ``width`` (64, channels of the first stage), ``norm`` (batch|instance|none)."""

    arch = "resnet18"
    blocks = (2, 2, 2, 2)

    def __init__(self, in_shape: tuple[int, int, int], n_classes: int, *, width: int = 64, norm: str = "batch") -> None:
        super().__init__(in_shape, n_classes, {"width": int(width), "norm": norm})
        if int(width) < 1:
            raise ValueError(f"resnet18 width must be positive, got {width}")
        make_norm(norm, 1)  # unknown norm -> ValueError before anything is built
        width = int(width)
        channels, height, frames = self.in_shape
        layers: list[nn.Module] = [
            nn.Conv2d(channels, width, 3, padding=1, bias=norm == "none"),
            make_norm(norm, width),
            nn.ReLU(),
        ]
        channels = width
        for stage, n_blocks in enumerate(self.blocks):
            stage_width = width * 2**stage
            for block in range(n_blocks):
                stride = pool_kernel(height, frames) if stage > 0 and block == 0 else (1, 1)
                layers.append(BasicBlock(channels, stage_width, stride, norm))
                # a 3x3 conv with padding 1 and stride s gives ceil(n / s) outputs
                height, frames = -(-height // stride[0]), -(-frames // stride[1])
                channels = stage_width
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.embedding_dim = channels
        self.head = nn.Linear(self.embedding_dim, n_classes)
