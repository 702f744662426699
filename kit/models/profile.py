"""Model size and compute: parameter count and multiply-accumulates (MACs) per clip.

Why hooks rather than a formula per architecture: any registered arch is profiled the same way,
from one real forward pass. Counted: Conv2d (output elements x kernel volume x in/groups) and
Linear (in x out per output row). Norms, activations and pooling are left out, as in the
usual KWS literature (they are < 2 % of the work for these networks).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter scalars (buffers such as BatchNorm running stats are not counted)."""
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only))


def count_macs(model: nn.Module, in_shape: Sequence[int] | None = None) -> int:
    """MACs for one input of shape ``in_shape`` (defaults to ``model.in_shape``)."""
    shape = tuple(in_shape) if in_shape is not None else tuple(model.in_shape)  # type: ignore[attr-defined]
    total = 0

    def conv_hook(module: nn.Conv2d, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        kh, kw = module.kernel_size
        total += output[0].numel() * (module.in_channels // module.groups) * kh * kw

    def linear_hook(module: nn.Linear, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        rows = output[0].numel() // module.out_features
        total += rows * module.in_features * module.out_features

    handles = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(linear_hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, *shape)))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return int(total)
