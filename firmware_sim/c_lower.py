"""Lower a parsed int8 model to the firmware's layers: integer parameters and arena places only.

Why reuse the interpreter's helpers: the firmware must requantise exactly as firmware_sim does,
so the per-channel multipliers and shifts, the SAME padding and the activation clamps come from
the very functions the interpreter's kernels call; the C kernels then do plain integer loops. The
arena offsets come from firmware_sim's planner, so the firmware's static arena is the planner's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deploy.runtime.bundle import Bundle, model_format, model_precision
from deploy.runtime.errors import KitError

from .c_emit import Buffer, Layer
from .kernels import channel_multipliers, same_padding
from .memory import plan_arena
from .model import Model, Operator, model_layout, parse_model
from .quant import activation_range, quantize_multiplier

#: The operators the C kernels implement (RESHAPE is a copy or nothing).
C_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "AVERAGE_POOL_2D", "MAX_POOL_2D", "ADD", "RESHAPE")


@dataclass
class LoweredModel:
    """Everything ``c_emit`` prints, plus the I/O quantisation the front-end and head need."""

    name: str
    layers: list[Layer]
    arena_bytes: int
    input: Buffer
    logits: Buffer
    embedding: Buffer
    input_scale: float
    input_zero_point: int
    embedding_scale: float
    embedding_zero_point: int
    input_axes: tuple[int, int, int]  # features (C, F, T).transpose(axes) is the model input (batch dropped)


def _buffer(model: Model, plan: dict[int, int], index: int) -> Buffer:
    if index not in plan:
        raise KitError(f"{model.name}: tensor {index} ('{model.tensors[index].name}') has no place in the arena")
    return Buffer(plan[index], model.tensors[index].size)


def _offset_bias(arrays: dict, input_offset: int, tap_axes: tuple[int, ...]) -> None:
    """Add ``offset_bias`` = bias + input_offset * (sum of each output channel's filter taps).

    Why: the kernels' interior fast paths then accumulate sum(x * f) and start from this constant
    instead of adding the input offset to every input value (the CMSIS-NN/TFLM trick); the integers
    are the same. Left out when a channel's value would not fit in int32 (the kernels then keep the
    reference loop).
    """
    sums = np.asarray(arrays["filter"], np.int64).sum(axis=tap_axes).reshape(-1)
    bias = np.asarray(arrays["bias"], np.int64).reshape(-1) if "bias" in arrays else np.zeros_like(sums)
    folded = bias + np.int64(input_offset) * sums
    if np.all((folded >= np.iinfo(np.int32).min) & (folded <= np.iinfo(np.int32).max)):
        arrays["offset_bias"] = folded.astype(np.int32)


def _conv(model: Model, op: Operator, depthwise: bool) -> tuple[dict, dict]:
    inp, filt, out = (model.tensors[i] for i in (op.inputs[0], op.inputs[1], op.outputs[0]))
    o = op.options
    w = filt.data
    if depthwise:
        _, kh, kw, oc = w.shape
    else:
        oc, kh, kw, _ = w.shape
    _, ih, iw, ic = inp.shape
    _, oh, ow, _ = out.shape
    multiplier, shift = channel_multipliers(inp, filt, out, oc)
    lo, hi = activation_range(o["activation"], out.scale, out.zero_point)
    params = {
        "in_shape": (ih, iw, ic),
        "out_shape": (oh, ow, oc),
        "kh": kh,
        "kw": kw,
        "stride_h": o["stride_h"],
        "stride_w": o["stride_w"],
        "dil_h": o["dilation_h"],
        "dil_w": o["dilation_w"],
        "pad_top": same_padding(o["padding"], ih, kh, o["stride_h"], o["dilation_h"], oh),
        "pad_left": same_padding(o["padding"], iw, kw, o["stride_w"], o["dilation_w"], ow),
        "depth_multiplier": oc // ic if depthwise else 1,
        "input_offset": -inp.zero_point,
        "output_offset": out.zero_point,
        "act_min": lo,
        "act_max": hi,
    }
    arrays = {
        "filter": np.asarray(w, np.int8),
        "multiplier": multiplier.astype(np.int32),
        "shift": shift.astype(np.int32),
    }
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        arrays["bias"] = np.asarray(model.tensors[op.inputs[2]].data, np.int32)
    _offset_bias(arrays, params["input_offset"], (0, 1, 2) if depthwise else (1, 2, 3))
    return params, arrays


def _fully_connected(model: Model, op: Operator) -> tuple[dict, dict]:
    inp, filt, out = (model.tensors[i] for i in (op.inputs[0], op.inputs[1], op.outputs[0]))
    units, depth = filt.shape
    if inp.size != depth:
        raise KitError(
            f"{model.name}: FULLY_CONNECTED (op {op.index}) over {inp.size // depth} rows; "
            "the firmware supports one row per inference"
        )
    multiplier, shift = channel_multipliers(inp, filt, out, units)
    lo, hi = activation_range(op.options["activation"], out.scale, out.zero_point)
    params = {
        "in_depth": depth,
        "out_depth": units,
        "input_offset": -inp.zero_point,
        "filter_offset": -filt.zero_point,
        "output_offset": out.zero_point,
        "act_min": lo,
        "act_max": hi,
    }
    arrays = {
        "filter": np.asarray(filt.data, np.int8),
        "multiplier": multiplier.astype(np.int32),
        "shift": shift.astype(np.int32),
    }
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        arrays["bias"] = np.asarray(model.tensors[op.inputs[2]].data, np.int32)
    if params["filter_offset"] == 0:
        _offset_bias(arrays, params["input_offset"], (1,))
    return params, arrays


def _pool(model: Model, op: Operator) -> dict:
    inp, out = model.tensors[op.inputs[0]], model.tensors[op.outputs[0]]
    o = op.options
    _, ih, iw, c = inp.shape
    _, oh, ow, _ = out.shape
    lo, hi = activation_range(o["activation"], out.scale, out.zero_point)
    return {
        "in_shape": (ih, iw, c),
        "out_shape": (oh, ow, c),
        "kh": o["filter_h"],
        "kw": o["filter_w"],
        "stride_h": o["stride_h"],
        "stride_w": o["stride_w"],
        "pad_top": same_padding(o["padding"], ih, o["filter_h"], o["stride_h"], 1, oh),
        "pad_left": same_padding(o["padding"], iw, o["filter_w"], o["stride_w"], 1, ow),
        "act_min": lo,
        "act_max": hi,
    }


def _add(model: Model, op: Operator) -> dict:
    a, b, out = (model.tensors[i] for i in (op.inputs[0], op.inputs[1], op.outputs[0]))
    if a.data is not None or b.data is not None or a.shape != b.shape:
        raise KitError(
            f"{model.name}: ADD (op {op.index}) with a constant or broadcast operand; the firmware adds "
            "two activations of one shape"
        )
    left_shift = 20
    twice_max = 2 * np.float64(max(np.float32(a.scale), np.float32(b.scale)))
    m1, s1 = quantize_multiplier(float(np.float64(np.float32(a.scale)) / twice_max))
    m2, s2 = quantize_multiplier(float(np.float64(np.float32(b.scale)) / twice_max))
    mo, so = quantize_multiplier(float(twice_max / ((1 << left_shift) * np.float64(np.float32(out.scale)))))
    lo, hi = activation_range(op.options.get("activation", "NONE"), out.scale, out.zero_point)
    return {
        "size": out.size,
        "input1_offset": -a.zero_point,
        "input2_offset": -b.zero_point,
        "output_offset": out.zero_point,
        "left_shift": left_shift,
        "input1_multiplier": m1,
        "input1_shift": s1,
        "input2_multiplier": m2,
        "input2_shift": s2,
        "output_multiplier": mo,
        "output_shift": so,
        "act_min": lo,
        "act_max": hi,
    }


def _input_axes(model: Model) -> tuple[int, int, int]:
    """Where the features' (C, F, T) axes sit in the model input: the export records its layout."""
    return (1, 2, 0) if model_layout(model) == "NHWC" else (0, 1, 2)


def lower(model: Model) -> LoweredModel:
    """The firmware's layers for ``model`` (full-integer int8, operators in ``C_OPS``)."""
    model = model.require_int8()
    missing = sorted({op.opcode for op in model.operators if op.opcode not in C_OPS})
    if missing:
        raise KitError(
            f"{model.name}: the firmware has no C kernel for {', '.join(missing)} "
            f"(it runs {', '.join(C_OPS)}); export an MCU-ready model (dscnn-mcu, convnet-mcu)"
        )
    plan = plan_arena(model)
    # the firmware has no interpreter: its arena is the planned head alone (no TFLM bookkeeping tail)
    offsets = {b.tensor: b.offset for b in plan.buffers if b.tensor >= 0}
    arena_bytes = plan.head_bytes
    layers: list[Layer] = []
    for op in model.operators:
        out = _buffer(model, offsets, op.outputs[0])
        ins = [_buffer(model, offsets, op.inputs[0])]
        label = f"{op.opcode} -> {model.tensors[op.outputs[0]].shape}"
        if op.opcode in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            params, arrays = _conv(model, op, op.opcode == "DEPTHWISE_CONV_2D")
            layers.append(
                Layer("dwconv" if op.opcode == "DEPTHWISE_CONV_2D" else "conv", ins, out, params, arrays, label)
            )
        elif op.opcode == "FULLY_CONNECTED":
            params, arrays = _fully_connected(model, op)
            layers.append(Layer("fc", ins, out, params, arrays, label))
        elif op.opcode in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
            layers.append(
                Layer(
                    "avgpool" if op.opcode == "AVERAGE_POOL_2D" else "maxpool",
                    ins,
                    out,
                    _pool(model, op),
                    comment=label,
                )
            )
        elif op.opcode == "ADD":
            ins.append(_buffer(model, offsets, op.inputs[1]))
            layers.append(Layer("add", ins, out, _add(model, op), comment=label))
        elif op.opcode == "RESHAPE" and ins[0].offset != out.offset:
            layers.append(Layer("copy", ins, out, comment=label))
    names = list(model.output_names)
    if "logits" not in names or "embedding" not in names:
        raise KitError(f"{model.name}: the firmware needs the outputs 'logits' and 'embedding', the model has {names}")
    logits_t = model.outputs[names.index("logits")]
    embedding_t = model.outputs[names.index("embedding")]
    inp = model.tensors[model.inputs[0]]
    emb = model.tensors[embedding_t]
    return LoweredModel(
        model.name,
        layers,
        arena_bytes,
        _buffer(model, offsets, model.inputs[0]),
        _buffer(model, offsets, logits_t),
        _buffer(model, offsets, embedding_t),
        inp.scale,
        inp.zero_point,
        emb.scale,
        emb.zero_point,
        _input_axes(model),
    )


def int8_tflite_member(bundle: Bundle, where: str, name: str | None = None) -> str:
    """The bundle's int8 TFLite model (the one a microcontroller runs), or a one-line error."""
    candidates = [n for n in bundle.models if model_format(n) == "tflite" and model_precision(n) == "int8"]
    if name is not None:
        if name not in bundle.models:
            raise KitError(f"{where}: no model '{name}' in the bundle (it has {', '.join(bundle.models)})")
        return name
    if not candidates:
        raise KitError(
            f"{where}: the bundle has no int8 TFLite model (it has {', '.join(bundle.models)}); "
            "build it with kit bundle --format tflite --int8"
        )
    return candidates[0]


def lower_model(bundle: Bundle, where: str, name: str | None = None) -> LoweredModel:
    member = int8_tflite_member(bundle, where, name)
    return lower(parse_model(bundle.models[member], f"{where}:{member}"))
