"""int8 kernels with TensorFlow Lite Micro's reference arithmetic, vectorised with numpy.

Each kernel follows the TFLM reference implementation named in its docstring
(tensorflow/lite/kernels/internal/reference/..., tensorflow/lite/micro/kernels/...): the same
integer offsets, the same int32 accumulation, the same fixed-point requantisation
(``quant.multiply_by_quantized_multiplier``) and the same clamps, so the outputs are bit-identical.
Accumulation runs in float64 matmuls where that is exact (every partial sum of int8 x int9
products of these layer sizes is far below 2**53) and in int64 elsewhere. Activations carry a
leading batch axis (the model's batch of 1 becomes N clips); kernels never mix that axis.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from deploy.runtime.errors import KitError

from .model import Model, Operator, Tensor
from .quant import (
    activation_range,
    dequantize,
    multiply_by_quantized_multiplier,
    quantize_float,
    quantize_multiplier,
    quantize_multipliers,
)

Kernel = Callable[[Model, Operator, list[np.ndarray | None]], np.ndarray]


def _const(model: Model, index: int) -> np.ndarray:
    tensor = model.tensors[index]
    if tensor.data is None:
        raise KitError(f"{model.name}: operator input tensor {index} ('{tensor.name}') must be a constant")
    return tensor.data


def _ratio(a: float, b: float) -> float:
    """float(a) / float(b) in double, as TFLM's Prepare computes scale ratios."""
    return float(np.float64(np.float32(a)) / np.float64(np.float32(b)))


def same_padding(padding: str, in_size: int, filter_size: int, stride: int, dilation: int, out_size: int) -> int:
    """ComputePaddingWithOffset (tensorflow/lite/kernels/padding.h): the top/left padding."""
    if padding != "SAME":
        return 0
    effective = (filter_size - 1) * dilation + 1
    total = max(0, (out_size - 1) * stride + effective - in_size)
    return total // 2


def _requantize(acc: np.ndarray, out: Tensor, multiplier: np.ndarray, shift: np.ndarray, activation: str) -> np.ndarray:
    lo, hi = activation_range(activation, out.scale, out.zero_point)
    y = multiply_by_quantized_multiplier(acc, multiplier, shift) + out.zero_point
    return np.clip(y, lo, hi).astype(np.int8)


def channel_multipliers(inp: Tensor, filt: Tensor, out: Tensor, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """PopulateConvolutionQuantizationParams: per-channel input*filter/output scale, in double."""
    assert filt.quant is not None
    scales = (
        np.broadcast_to(filt.quant.scale.astype(np.float64), (channels,))
        if filt.quant.scale.size == 1
        else filt.quant.scale.astype(np.float64)
    )
    real = np.float64(np.float32(inp.scale)) * scales / np.float64(np.float32(out.scale))
    return quantize_multipliers(real)


def _window_views(x: np.ndarray, kh: int, kw: int, sh: int, sw: int, dh: int, dw: int, oh: int, ow: int):
    """Yield (ky, kx, x[:, oy*sh + ky*dh, ox*sw + kx*dw, :]) for every kernel tap."""
    for ky in range(kh):
        for kx in range(kw):
            y0, x0 = ky * dh, kx * dw
            yield ky, kx, x[:, y0 : y0 + (oh - 1) * sh + 1 : sh, x0 : x0 + (ow - 1) * sw + 1 : sw, :]


def _padded_input(
    x: np.ndarray,
    inp: Tensor,
    pad_h: int,
    pad_w: int,
    kh: int,
    kw: int,
    sh: int,
    sw: int,
    dh: int,
    dw: int,
    oh: int,
    ow: int,
) -> np.ndarray:
    """input + input_offset as float64, zero outside the image (TFLM skips those taps)."""
    shifted = x.astype(np.float64) - inp.zero_point
    need_h = (oh - 1) * sh + (kh - 1) * dh + 1
    need_w = (ow - 1) * sw + (kw - 1) * dw + 1
    bottom = max(0, need_h - pad_h - x.shape[1])
    right = max(0, need_w - pad_w - x.shape[2])
    return np.pad(shifted, ((0, 0), (pad_h, bottom), (pad_w, right), (0, 0)))


def conv_2d(model: Model, op: Operator, args: list[np.ndarray | None]) -> np.ndarray:
    """reference_integer_ops::ConvPerChannel (micro/kernels/conv.cc)."""
    inp, filt, out = (model.tensors[i] for i in (op.inputs[0], op.inputs[1], op.outputs[0]))
    x = args[0]
    w = _const(model, op.inputs[1]).astype(np.float64)  # (OC, KH, KW, IC)
    o = op.options
    oc, kh, kw, ic = w.shape
    _, oh, ow, _ = out.shape
    sh, sw, dh, dw = o["stride_h"], o["stride_w"], o["dilation_h"], o["dilation_w"]
    ph = same_padding(o["padding"], x.shape[1], kh, sh, dh, oh)
    pw = same_padding(o["padding"], x.shape[2], kw, sw, dw, ow)
    xp = _padded_input(x, inp, ph, pw, kh, kw, sh, sw, dh, dw, oh, ow)
    patches = np.stack([view for _, _, view in _window_views(xp, kh, kw, sh, sw, dh, dw, oh, ow)], axis=3)
    acc = patches.reshape(x.shape[0], oh, ow, kh * kw * ic) @ w.reshape(oc, -1).T
    acc = acc.astype(np.int64)
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        acc += _const(model, op.inputs[2]).astype(np.int64)
    multiplier, shift = channel_multipliers(inp, filt, out, oc)
    return _requantize(acc, out, multiplier, shift, o["activation"])


def depthwise_conv_2d(model: Model, op: Operator, args: list[np.ndarray | None]) -> np.ndarray:
    """reference_integer_ops::DepthwiseConvPerChannel (micro/kernels/depthwise_conv.cc)."""
    inp, filt, out = (model.tensors[i] for i in (op.inputs[0], op.inputs[1], op.outputs[0]))
    x = args[0]
    w = _const(model, op.inputs[1]).astype(np.float64)  # (1, KH, KW, OC)
    o = op.options
    _, kh, kw, oc = w.shape
    _, oh, ow, _ = out.shape
    ic = x.shape[3]
    mult = oc // ic
    sh, sw, dh, dw = o["stride_h"], o["stride_w"], o["dilation_h"], o["dilation_w"]
    ph = same_padding(o["padding"], x.shape[1], kh, sh, dh, oh)
    pw = same_padding(o["padding"], x.shape[2], kw, sw, dw, ow)
    xp = _padded_input(x, inp, ph, pw, kh, kw, sh, sw, dh, dw, oh, ow)
    if mult > 1:  # output channel c * mult + m reads input channel c
        xp = np.repeat(xp, mult, axis=3)
    acc = np.zeros((x.shape[0], oh, ow, oc), np.float64)
    for ky, kx, view in _window_views(xp, kh, kw, sh, sw, dh, dw, oh, ow):
        acc += view * w[0, ky, kx]
    acc = acc.astype(np.int64)
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        acc += _const(model, op.inputs[2]).astype(np.int64)
    multiplier, shift = channel_multipliers(inp, filt, out, oc)
    return _requantize(acc, out, multiplier, shift, o["activation"])


def fully_connected(model: Model, op: Operator, args: list[np.ndarray | None]) -> np.ndarray:
    """reference_integer_ops::FullyConnected (per-tensor or per-channel; micro/kernels/fully_connected.cc)."""
    inp, filt, out = (model.tensors[i] for i in (op.inputs[0], op.inputs[1], op.outputs[0]))
    w = _const(model, op.inputs[1]).astype(np.float64)  # (units, depth)
    units, depth = w.shape
    x = args[0].reshape(args[0].shape[0], -1, depth).astype(np.float64) - inp.zero_point
    acc = (x @ (w - filt.zero_point).T).astype(np.int64)  # (N, rows, units)
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        acc += _const(model, op.inputs[2]).astype(np.int64)
    multiplier, shift = channel_multipliers(inp, filt, out, units)
    y = _requantize(acc, out, multiplier, shift, op.options["activation"])
    return y.reshape((args[0].shape[0],) + tuple(out.shape[1:]))


def _pool_windows(model: Model, op: Operator, x: np.ndarray):
    out = model.tensors[op.outputs[0]]
    o = op.options
    _, oh, ow, _ = out.shape
    kh, kw, sh, sw = o["filter_h"], o["filter_w"], o["stride_h"], o["stride_w"]
    ph = same_padding(o["padding"], x.shape[1], kh, sh, 1, oh)
    pw = same_padding(o["padding"], x.shape[2], kw, sw, 1, ow)
    inside = np.pad(np.ones(x.shape[1:3], bool), ((ph, kh), (pw, kw)))[None, :, :, None]
    xp = np.pad(x.astype(np.int64), ((0, 0), (ph, kh), (pw, kw), (0, 0)))
    return out, [
        (view, mask)
        for (_, _, view), (_, _, mask) in zip(
            _window_views(xp, kh, kw, sh, sw, 1, 1, oh, ow), _window_views(inside, kh, kw, sh, sw, 1, 1, oh, ow)
        )
    ]


def average_pool_2d(model: Model, op: Operator, args: list[np.ndarray | None]) -> np.ndarray:
    """reference_integer_ops::AveragePool: integer sum over the in-image taps, rounded division."""
    out, windows = _pool_windows(model, op, args[0])
    total = sum(np.where(mask, view, 0) for view, mask in windows)
    count = sum(mask.astype(np.int64) for _, mask in windows)
    half = count // 2
    num = np.where(total > 0, total + half, total - half)
    avg = np.sign(num) * (np.abs(num) // count)  # C division truncates toward zero
    lo, hi = activation_range(op.options["activation"], out.scale, out.zero_point)
    return np.clip(avg, lo, hi).astype(np.int8)


def max_pool_2d(model: Model, op: Operator, args: list[np.ndarray | None]) -> np.ndarray:
    """reference_integer_ops::MaxPool over the in-image taps."""
    out, windows = _pool_windows(model, op, args[0])
    best = np.full(windows[0][0].shape, -(2**31), np.int64)
    for view, mask in windows:
        best = np.maximum(best, np.where(mask, view, -(2**31)))
    lo, hi = activation_range(op.options["activation"], out.scale, out.zero_point)
    return np.clip(best, lo, hi).astype(np.int8)


def _batched(shape: tuple[int, ...], n: int) -> tuple[int, ...]:
    return (n,) + tuple(shape[1:])


def reshape(model: Model, op: Operator, args: list[np.ndarray | None]) -> np.ndarray:
    """RESHAPE: the bytes stay, the shape is the output tensor's."""
    return args[0].reshape(_batched(model.tensors[op.outputs[0]].shape, args[0].shape[0]))


def transpose(model: Model, op: Operator, args: list[np.ndarray | None]) -> np.ndarray:
    """reference_ops::Transpose (batch axis must stay first, as in the kit's graphs)."""
    perm = [int(p) for p in _const(model, op.inputs[1])]
    if perm[0] != 0:
        raise KitError(f"{model.name}: TRANSPOSE (op {op.index}) moves the batch axis; not supported")
    return np.ascontiguousarray(np.transpose(args[0], perm))


def pad(model: Model, op: Operator, args: list[np.ndarray | None]) -> np.ndarray:
    """PAD / PADV2: constant padding with the output zero point (or the given int8 value)."""
    paddings = _const(model, op.inputs[1]).astype(np.int64).reshape(-1, 2)
    value = model.tensors[op.outputs[0]].zero_point
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        value = int(_const(model, op.inputs[2]).ravel()[0])
    return np.pad(args[0], [tuple(p) for p in paddings], constant_values=value).astype(np.int8)


def mean(model: Model, op: Operator, args: list[np.ndarray | None]) -> np.ndarray:
    """reference_ops::QuantizedMeanOrSum (micro/kernels/reduce_common.cc, int8 MEAN)."""
    inp, out = model.tensors[op.inputs[0]], model.tensors[op.outputs[0]]
    x = args[0]
    axes = sorted({int(a) % x.ndim for a in np.ravel(_const(model, op.inputs[1]))})
    if 0 in axes:
        raise KitError(f"{model.name}: MEAN (op {op.index}) reduces the batch axis; not supported")
    count = int(np.prod([x.shape[a] for a in axes]))
    multiplier, shift = quantize_multiplier(_ratio(inp.scale, out.scale))
    s = min(count.bit_length() - 1, 32)  # 63 - CountLeadingZeros(count), clamped as TFLM does
    s = min(s, 31 + shift)
    multiplier = (multiplier << s) // count
    shift -= s
    total = x.astype(np.int64).sum(axis=tuple(axes)) - inp.zero_point * count
    y = multiply_by_quantized_multiplier(total, multiplier, shift) + out.zero_point
    return np.clip(y, -128, 127).astype(np.int8).reshape(_batched(out.shape, x.shape[0]))


def add(model: Model, op: Operator, args: list[np.ndarray | None]) -> np.ndarray:
    """reference_integer_ops::Add with broadcasting (micro/kernels/add_common.cc, left_shift 20)."""
    a, b, out = (model.tensors[i] for i in (op.inputs[0], op.inputs[1], op.outputs[0]))
    xa, xb = (args[k] if args[k] is not None else _const(model, op.inputs[k]) for k in (0, 1))
    left_shift = 20
    twice_max = 2 * np.float64(max(np.float32(a.scale), np.float32(b.scale)))
    m1, s1 = quantize_multiplier(float(np.float64(np.float32(a.scale)) / twice_max))
    m2, s2 = quantize_multiplier(float(np.float64(np.float32(b.scale)) / twice_max))
    mo, so = quantize_multiplier(float(twice_max / ((1 << left_shift) * np.float64(np.float32(out.scale)))))
    va = multiply_by_quantized_multiplier((xa.astype(np.int64) - a.zero_point) << left_shift, m1, s1)
    vb = multiply_by_quantized_multiplier((xb.astype(np.int64) - b.zero_point) << left_shift, m2, s2)
    va, vb = _align_batch(va, vb, a, b)
    y = multiply_by_quantized_multiplier(va + vb, mo, so) + out.zero_point
    lo, hi = activation_range(op.options.get("activation", "NONE"), out.scale, out.zero_point)
    return np.clip(y, lo, hi).astype(np.int8)


def _align_batch(va: np.ndarray, vb: np.ndarray, a: Tensor, b: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Constants have no batch axis added: give them one so numpy broadcasts like TFLite."""
    if a.data is not None and va.ndim == len(a.shape):
        va = va.reshape((1,) * max(0, vb.ndim - va.ndim) + va.shape)
    if b.data is not None and vb.ndim == len(b.shape):
        vb = vb.reshape((1,) * max(0, va.ndim - vb.ndim) + vb.shape)
    return va, vb


def quantize(model: Model, op: Operator, args: list[np.ndarray | None]) -> np.ndarray:
    """QUANTIZE: float -> int8 (AffineQuantize) or int8 -> int8 (Requantize)."""
    inp, out = model.tensors[op.inputs[0]], model.tensors[op.outputs[0]]
    x = args[0]
    if inp.dtype.startswith("float"):
        return quantize_float(x, out.scale, out.zero_point, out.dtype)
    multiplier, shift = quantize_multiplier(_ratio(inp.scale, out.scale))
    y = multiply_by_quantized_multiplier(x.astype(np.int64) - inp.zero_point, multiplier, shift) + out.zero_point
    info = np.iinfo(out.dtype)
    return np.clip(y, info.min, info.max).astype(out.dtype)


def dequantize_op(model: Model, op: Operator, args: list[np.ndarray | None]) -> np.ndarray:
    """DEQUANTIZE: float32(double(scale) * (q - zero_point))."""
    inp = model.tensors[op.inputs[0]]
    return dequantize(args[0], inp.scale, inp.zero_point)


KERNELS: dict[str, Kernel] = {
    "CONV_2D": conv_2d,
    "DEPTHWISE_CONV_2D": depthwise_conv_2d,
    "FULLY_CONNECTED": fully_connected,
    "AVERAGE_POOL_2D": average_pool_2d,
    "MAX_POOL_2D": max_pool_2d,
    "RESHAPE": reshape,
    "TRANSPOSE": transpose,
    "PAD": pad,
    "PADV2": pad,
    "MEAN": mean,
    "ADD": add,
    "QUANTIZE": quantize,
    "DEQUANTIZE": dequantize_op,
}
