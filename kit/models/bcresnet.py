"""BC-ResNet, the broadcasted-residual keyword-spotting network of Kim et al. (Interspeech 2021).

Why this network: at its size it is among the strongest KWS designs in the literature (the
paper reports about 96-97 % on GSC-12 v2 with 9 K weights and the full training set; DS-CNN
small is reported at about 94 % with 24 K). Its trick is to split each 3 x 3 convolution in two cheap halves: a
depthwise convolution along frequency on the whole map, then an average over frequency and a
depthwise convolution along time on the resulting 1-D sequence, whose output is broadcast back
over frequency and added. Most of the work happens on a 1-D map, so the network can be wide
where it matters for the same multiply count.

Adapted to the kit (and to int8 export):
- Plain batch norm instead of the paper's sub-spectral norm, so every norm folds into the
  convolution before it (the paper credits sub-spectral norm with a small gain).
- ReLU instead of swish: int8 TFLite fuses ReLU into the convolution before it, not swish.
- The head is global average pooling and one linear layer on the embedding, like every kit model,
  so on-device learning (``deploy.runtime.head``) can retrain it.
- A frequency axis is strided only while it is at least 4 long: the kit's FD-MFCC has 13
  coefficients (the paper's 40 log-mel bands take one more halving), so 13 -> 7 -> 4 -> 2.

Layout (``width`` w): a 5 x 5 stem of 16w channels (stride 2 on frequency), then four stages of
(2, 2, 4, 4) blocks of (8w, 12w, 16w, 20w) channels with time dilations (1, 2, 4, 8); stages 2
and 3 halve frequency in their first block; then a depthwise convolution over what is left of
frequency (5 frames wide), a 1 x 1 convolution to 32w channels, global pooling and the head.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import KitModel

#: the paper's stages: (blocks, channels per unit width, time dilation, halve frequency)
STAGES: tuple[tuple[int, int, int, bool], ...] = (
    (2, 8, 1, False),
    (2, 12, 2, True),
    (4, 16, 4, True),
    (4, 20, 8, False),
)


def _channels(width: float, per_unit: int) -> int:
    return max(1, int(round(per_unit * width)))


class BroadcastBlock(nn.Module):
    """One BC-ResBlock. A transition block (new channel count or a frequency stride) first maps
    the channels with a 1 x 1 convolution and has no identity shortcut, as in the paper."""

    def __init__(self, in_ch: int, out_ch: int, dilation: int, freq_stride: int, dropout: float) -> None:
        super().__init__()
        self.transition = in_ch != out_ch or freq_stride != 1
        self.expand = (
            nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU())
            if self.transition
            else nn.Identity()
        )
        # frequency-wise depthwise convolution on the 2-D map (f2 in the paper)
        self.freq = nn.Sequential(
            nn.Conv2d(out_ch, out_ch, (3, 1), stride=(freq_stride, 1), padding=(1, 0), groups=out_ch, bias=False),
            nn.BatchNorm2d(out_ch),
        )
        # temporal depthwise + pointwise convolution on the frequency average (f1 in the paper)
        self.time = nn.Sequential(
            nn.Conv2d(out_ch, out_ch, (1, 3), padding=(0, dilation), dilation=(1, dilation), groups=out_ch, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(),
            nn.Conv2d(out_ch, out_ch, 1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.Dropout2d(dropout) if dropout > 0 else nn.Identity(),
        )
        self.out = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.expand(x)
        spectral = self.freq(x)
        temporal = self.time(spectral.mean(dim=2, keepdim=True))  # (N, C, 1, T), broadcast over F
        shortcut = spectral if self.transition else x + spectral
        return self.out(shortcut + temporal)


class BCResNet(KitModel):
    """kwargs: ``width`` (the paper's w: 1, 1.5, 2, 3, 6, 8; default 2, about 26 K weights) and
    ``dropout``, the spatial dropout inside each block's temporal branch (0.1, as in the paper)."""

    arch = "bcresnet"

    def __init__(
        self, in_shape: tuple[int, int, int], n_classes: int, *, width: float = 2.0, dropout: float = 0.1
    ) -> None:
        super().__init__(in_shape, n_classes, {"width": float(width), "dropout": float(dropout)})
        if not float(width) > 0:
            raise ValueError(f"bcresnet width must be positive, got {width}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"bcresnet dropout must be in [0, 1), got {dropout}")
        in_channels, height, _frames = self.in_shape
        stem = _channels(width, 16)
        freq_stride = 2 if height >= 4 else 1
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, stem, 5, stride=(freq_stride, 1), padding=2, bias=False),
            nn.BatchNorm2d(stem),
            nn.ReLU(),
        ]
        height = (height + 2 * 2 - 5) // freq_stride + 1
        channels = stem
        for blocks, per_unit, dilation, halve in STAGES:
            out = _channels(width, per_unit)
            for i in range(blocks):
                stride = 2 if halve and i == 0 and height >= 4 else 1
                layers.append(BroadcastBlock(channels, out, dilation, stride, float(dropout)))
                height = (height + 2 - 3) // stride + 1
                channels = out
        embedding = _channels(width, 32)
        layers += [
            # what is left of frequency, folded away with one depthwise convolution (5 frames wide)
            nn.Conv2d(channels, channels, (height, 5), padding=(0, 2), groups=channels, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, embedding, 1, bias=False),
            nn.BatchNorm2d(embedding),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        ]
        self.body = nn.Sequential(*layers)
        self.embedding_dim = embedding
        self.head = nn.Linear(embedding, n_classes)

    @property
    def tflite_layout(self) -> str:
        """NHWC: the exported graph then holds no TRANSPOSE. Not ``mcu_ready``: the frequency average
        (MEAN) and the final convolution's PAD are outside the ops the C firmware lowers."""
        return "NHWC"
