"""DS-CNN, the depthwise-separable keyword-spotting network of "Hello Edge" (Zhang et al., 2017).

Why this network: it is the reference design for keyword spotting on microcontrollers (the
paper's small model, 38.6 KB of memory and 5.4 M operations on 49 x 10 MFCC, fits Cortex-M
memory; built here for that input it has 23 K parameters and 2.55 M MACs = 5.1 M operations), so it is
the natural deployment target for a distilled coreset. Layout as in the paper
and ARM's ML-KWS code: one ordinary convolution (kernel 10 frames x 4 coefficients, stride 2 on
both axes), then ``blocks`` depthwise-separable blocks (3x3 depthwise conv -> norm -> ReLU ->
1x1 pointwise conv -> norm -> ReLU), global average pooling and one linear layer.

Sizes (``size``): ``small`` 64 channels and 4 DS blocks, ``medium`` 172 channels and 4 DS blocks
(the paper's S and M rows); ``channels``/``blocks`` override them. Adapted to the kit's (C, F, T)
maps: the first kernel is (4, 10) = (coefficients, frames) and is clipped to the map where an
axis is shorter, and an axis shorter than the kernel is not strided (a 1-coefficient map stays 1).
Parameter count does not depend on the input length (global pooling), only on its channels: the
kit's 3-channel FD-MFCC adds 2 x 40 x ``channels`` weights to the first layer.
"""

from __future__ import annotations

from torch import nn

from .base import KitModel, make_norm

#: Hello Edge table: size -> (channels, depthwise-separable blocks)
DSCNN_SIZES: dict[str, tuple[int, int]] = {"small": (64, 4), "medium": (172, 4)}
#: first convolution (coefficients, frames) kernel and stride, after the paper's (10 time x 4 freq, stride 2 x 2)
FIRST_KERNEL = (4, 10)
FIRST_STRIDE = (2, 2)
#: first-convolution paddings: centred as before, or none
FIRST_PADDINGS = ("centred", "valid")


def _separable(channels: int, norm: str) -> list[nn.Module]:
    bias = norm == "none"
    return [
        nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=bias),
        make_norm(norm, channels),
        nn.ReLU(),
        nn.Conv2d(channels, channels, 1, bias=bias),
        make_norm(norm, channels),
        nn.ReLU(),
    ]


class DSCNN(KitModel):
    """kwargs: ``size`` (small|medium), ``channels``/``blocks`` (None: from the size), ``norm``
    (batch|instance|none; the paper uses batch norm), ``dropout`` before the head (0.0),
    ``padding`` of the first convolution: ``centred`` ((k - 1) // 2 each side) or ``valid`` (none;
    what ``dscnn-mcu`` uses: a centred pad of the even (4, 10) kernel is not TFLite's SAME, so the
    converter would emit a separate PAD op). ``padding`` is recorded only when not ``centred``, so
    artifacts written before the option existed rebuild unchanged."""

    arch = "dscnn"

    def __init__(
        self,
        in_shape: tuple[int, int, int],
        n_classes: int,
        *,
        size: str = "small",
        channels: int | None = None,
        blocks: int | None = None,
        norm: str = "batch",
        dropout: float = 0.0,
        padding: str = "centred",
    ) -> None:
        if size not in DSCNN_SIZES:
            raise ValueError(f"unknown dscnn size '{size}' (choose {', '.join(DSCNN_SIZES)})")
        default_channels, default_blocks = DSCNN_SIZES[size]
        channels = default_channels if channels is None else int(channels)
        blocks = default_blocks if blocks is None else int(blocks)
        super().__init__(
            in_shape,
            n_classes,
            {
                "size": size,
                "channels": channels,
                "blocks": blocks,
                "norm": norm,
                "dropout": float(dropout),
                **({"padding": padding} if padding != "centred" else {}),
            },
        )
        if padding not in FIRST_PADDINGS:
            raise ValueError(f"unknown dscnn padding '{padding}' (choose {', '.join(FIRST_PADDINGS)})")
        if channels < 1 or blocks < 0:
            raise ValueError(f"dscnn needs channels >= 1 and blocks >= 0 (got {channels}, {blocks})")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dscnn dropout must be in [0, 1), got {dropout}")
        make_norm(norm, 1)
        in_channels, height, frames = self.in_shape
        kernel = (min(FIRST_KERNEL[0], height), min(FIRST_KERNEL[1], frames))
        stride = tuple(s if n >= k else 1 for s, n, k in zip(FIRST_STRIDE, (height, frames), FIRST_KERNEL))
        pad = ((kernel[0] - 1) // 2, (kernel[1] - 1) // 2) if padding == "centred" else (0, 0)
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, channels, kernel, stride=stride, padding=pad, bias=norm == "none"),
            make_norm(norm, channels),
            nn.ReLU(),
        ]
        for _ in range(blocks):
            layers += _separable(channels, norm)
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.embedding_dim = channels
        self.dropout = nn.Dropout(float(dropout)) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(channels, n_classes)

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.head(self.dropout(self.embed(x)))

    def forward_with_embedding(self, x):  # type: ignore[no-untyped-def]
        z = self.embed(x)
        return self.head(self.dropout(z)), z
