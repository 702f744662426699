"""Random-feature networks: freshly initialised ConvNets whose penultimate activations are features.

Why: the NNGP kernel of an infinitely wide ConvNet is what a network trained on the coreset
"sees" in the limit; Loo et al. (2022, RFAD) approximate it cheaply by the inner product of
the penultimate activations of M finite random ConvNets (no normalisation layers, He-Gaussian
weights). Redrawing the networks every step makes the coreset good for the kernel's
*expectation* over initialisations rather than for one particular network.

All M networks run as one grouped network (layer 1 is a plain conv with M * width outputs,
later layers are grouped convs with M groups), so a step costs a handful of large conv calls
instead of M small ones. The same module gives the selectors a fixed random embedding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class RandomConvNets:
    """Architecture of M random ConvNets: ``depth`` x (conv3x3 -> ReLU -> avg-pool 2), no norm.

    ``in_shape`` is one input's (C, F, T). Pooling stops shrinking an axis once it reaches 1,
    so short feature maps (e.g. 13 MFCCs) still work at depth 3.
    """

    in_shape: tuple[int, int, int]
    n_models: int = 4
    width: int = 32
    depth: int = 3

    @property
    def out_hw(self) -> tuple[int, int]:
        _, h, w = self.in_shape
        for _ in range(self.depth):
            h, w = (h // 2 if h >= 2 else h), (w // 2 if w >= 2 else w)
        return h, w

    @property
    def dim_per_model(self) -> int:
        """d: penultimate activations of one network."""
        h, w = self.out_hw
        return self.width * h * w

    @property
    def dim(self) -> int:
        """M * d: length of the concatenated random-feature vector."""
        return self.n_models * self.dim_per_model

    def draw(
        self, generator: torch.Generator, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
    ) -> list[torch.Tensor]:
        """Fresh He-Gaussian weights (std = sqrt(2 / fan_in)), no biases, for all M networks.

        Drawn on the CPU from ``generator`` so that a seed gives the same networks on any device
        and a checkpointed generator state resumes the exact sequence.
        """
        weights = []
        c_in = self.in_shape[0]
        m, w = self.n_models, self.width
        for layer in range(self.depth):
            fan_in = (c_in if layer == 0 else w) * 9
            shape = (m * w, c_in if layer == 0 else w, 3, 3)
            weight = torch.randn(shape, generator=generator, dtype=torch.float32) * math.sqrt(2.0 / fan_in)
            weights.append(weight.to(device=device, dtype=dtype))
        return weights

    def features(self, x: torch.Tensor, weights: list[torch.Tensor]) -> torch.Tensor:
        """Concatenated penultimate activations, (N, M * d), scaled by 1 / sqrt(M * d).

        The scaling makes ``phi(x) @ phi(x').T`` an average over networks and units, i.e. a
        Monte-Carlo estimate of the NNGP kernel whose size does not depend on M or width.
        """
        h = x
        for layer, weight in enumerate(weights):
            h = F.conv2d(h, weight, padding=1, groups=1 if layer == 0 else self.n_models)
            h = F.relu(h)
            kh, kw = (2 if h.shape[2] >= 2 else 1), (2 if h.shape[3] >= 2 else 1)
            h = F.avg_pool2d(h, (kh, kw))
        # (N, M*w, h, w) -> (N, M, w*h*w): channel blocks are networks, so flatten keeps them apart
        return h.flatten(1) / math.sqrt(self.dim)
