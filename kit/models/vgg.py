"""VGG11 adapted to small audio feature maps.

Why adapted: VGG11 max-pools five times, which no 13-coefficient axis survives; here each pool
halves only the axes that are still at least 2 long (``pool_kernel``), so a (3, 13, 64) map goes
13 -> 6 -> 3 -> 1 -> 1 -> 1 along the coefficients and 64 -> 2 along time. The three 4096-wide
fully connected layers of the ImageNet network are replaced by global average pooling and one
linear layer (as in the VGG11 of the dataset-distillation papers' cross-architecture tables):
they would hold 90 % of the parameters and assume a 7x7 map.

Configuration "A" (VGG11): 8 convolutions, widths (1, M, 2, M, 4, 4, M, 8, 8, M, 8, 8, M) x
``width`` (64 is the original: 9.2 M parameters). ``norm`` batch|instance|none after every
convolution.
"""

from __future__ import annotations

from torch import nn

from .base import KitModel, make_norm, pool_kernel

#: VGG11 ("A"): multiples of ``width`` for the convolutions, "M" for a 2x2 max-pool
VGG11_PLAN: tuple[int | str, ...] = (1, "M", 2, "M", 4, 4, "M", 8, 8, "M", 8, 8, "M")


class VGG11(KitModel):
    """kwargs: ``width`` (64, channels of the first convolution), ``norm`` (batch|instance|none)."""

    arch = "vgg11"

    def __init__(self, in_shape: tuple[int, int, int], n_classes: int, *, width: int = 64, norm: str = "batch") -> None:
        super().__init__(in_shape, n_classes, {"width": int(width), "norm": norm})
        if int(width) < 1:
            raise ValueError(f"vgg11 width must be positive, got {width}")
        make_norm(norm, 1)
        channels, height, frames = self.in_shape
        layers: list[nn.Module] = []
        for item in VGG11_PLAN:
            if item == "M":
                kernel = pool_kernel(height, frames)
                if kernel != (1, 1):
                    layers.append(nn.MaxPool2d(kernel, stride=kernel))
                height, frames = height // kernel[0], frames // kernel[1]
                continue
            out = int(width) * int(item)
            layers += [nn.Conv2d(channels, out, 3, padding=1, bias=norm == "none"), make_norm(norm, out), nn.ReLU()]
            channels = out
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.embedding_dim = channels
        self.head = nn.Linear(self.embedding_dim, n_classes)
