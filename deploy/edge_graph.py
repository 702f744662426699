"""The network as a TFLite converter should see it: batch norm folded, global pooling as a pool,
and optionally the NHWC input layout. Also the op set a microcontroller build can accelerate.

Why rewrite before converting: litert-torch lowers ``AdaptiveAvgPool2d(1)`` to MEAN (no CMSIS-NN
kernel) but a fixed-size ``AvgPool2d`` to AVERAGE_POOL_2D; folding Conv2d + BatchNorm2d (eval
statistics) into one convolution leaves no MUL/ADD pair per norm and gives the quantiser one
weight tensor per layer. And PyTorch is NCHW while TFLite kernels are NHWC: a graph fed (N, C, F, T)
gets TRANSPOSE ops around the convolutions, while one fed (N, F, T, C) that permutes to NCHW first
lets the converter cancel every transpose (measured: none left for the DS-CNN and the small
ConvNet of ``kit.models.mcu``). The runtime transposes the features on the host instead
(``deploy.runtime.tflite_model``, metadata ``kit.layout``). Nothing here changes what the model
computes (fp32 outputs agree with PyTorch to float rounding; the export verifies it).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import nn

#: TFLM builtins with CMSIS-NN kernels that the MCU models may use (QUANTIZE/DEQUANTIZE are not:
#: the kit's int8 files take and give int8, the host (de)quantises)
MCU_OPS = frozenset(
    {"CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MAX_POOL_2D", "FULLY_CONNECTED", "RESHAPE", "ADD", "SOFTMAX"}
)
LAYOUTS = ("NCHW", "NHWC")


def mcu_op_violations(ops: dict[str, int]) -> list[str]:
    """Ops of a TFLite op histogram that a CMSIS-NN microcontroller build does not accelerate."""
    return sorted(op for op in ops if op not in MCU_OPS)


def _fold_sequence(seq: nn.Sequential) -> nn.Sequential:
    """``seq`` with every Conv2d directly followed by BatchNorm2d replaced by one folded Conv2d."""
    out: list[nn.Module] = []
    modules = list(seq)
    i = 0
    while i < len(modules):
        module = modules[i]
        following = modules[i + 1] if i + 1 < len(modules) else None
        if isinstance(module, nn.Conv2d) and isinstance(following, nn.BatchNorm2d) and following.track_running_stats:
            out.append(torch.nn.utils.fusion.fuse_conv_bn_eval(module, following))
            i += 2
            continue
        out.append(module)
        i += 1
    return nn.Sequential(*out)


def fold_batch_norm(model: nn.Module) -> nn.Module:
    """Fold Conv2d -> BatchNorm2d pairs inside every ``nn.Sequential`` of ``model`` (in place, eval mode)."""
    for name, child in list(model.named_children()):
        if isinstance(child, nn.Sequential):
            setattr(model, name, _fold_sequence(child))
        fold_batch_norm(getattr(model, name))
    return model


def fix_global_pools(model: nn.Module, in_shape: tuple[int, ...]) -> nn.Module:
    """Replace ``AdaptiveAvgPool2d(1)`` by an ``AvgPool2d`` over the map size seen for ``in_shape``."""
    seen: dict[str, tuple[int, int]] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, nn.AdaptiveAvgPool2d) and module.output_size in (1, (1, 1)):

            def hook(_m: nn.Module, inputs: tuple, _out: Any, name: str = name) -> None:
                seen[name] = tuple(int(v) for v in inputs[0].shape[-2:])  # type: ignore[assignment]

            handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(torch.zeros((1, *in_shape)))
    finally:
        for handle in handles:
            handle.remove()
    for name, size in seen.items():
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        pool = nn.AvgPool2d(size, stride=size)
        if isinstance(parent, nn.Sequential):
            parent[int(attr)] = pool
        else:
            setattr(parent, attr, pool)
    return model


class EdgeGraph(nn.Module):
    """What the converter traces: input ``features`` in ``layout``, outputs ``logits`` and ``embedding``."""

    def __init__(self, inner: nn.Module, layout: str) -> None:
        super().__init__()
        self.inner = inner
        self.layout = layout

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.layout == "NHWC":
            features = features.permute(0, 3, 1, 2)
        logits, embedding = self.inner.forward_with_embedding(features)
        return {"logits": logits, "embedding": embedding}


def edge_graph(model: nn.Module, layout: str = "NCHW") -> EdgeGraph:
    """A converter-ready copy of a kit model (the model itself is not modified)."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout '{layout}' (choose {', '.join(LAYOUTS)})")
    net = copy.deepcopy(model).cpu().eval()
    fold_batch_norm(net)
    fix_global_pools(net, tuple(model.in_shape))  # type: ignore[attr-defined]
    return EdgeGraph(net, layout).eval()


def to_layout(x: np.ndarray, layout: str) -> np.ndarray:
    """(N, C, F, T) features in the file's layout, contiguous."""
    return np.ascontiguousarray(x if layout == "NCHW" else np.asarray(x).transpose(0, 2, 3, 1))
