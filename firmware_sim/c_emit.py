"""C source text for a lowered int8 model: const weight arrays, layer parameter structs and the call sequence.

Why a separate lowering step: the interpreter keeps the flatbuffer's view (tensors, operators,
float scales); the firmware needs only integers in the layout its kernels read, with every
multiplier and shift already computed (by the same ``quantize_multiplier`` the interpreter uses,
so both sides requantise identically). ``c_project`` builds the lowered layers from a parsed
model; this module only prints them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: The hand-written C sources (kernels, front-end, detector, main, platforms) the projects copy.
C_SOURCES = Path(__file__).with_name("c_src")


@dataclass
class Buffer:
    """A tensor's place in the static arena."""

    offset: int
    size: int


@dataclass
class Layer:
    """One kernel call. ``kind``: conv, dwconv, fc, avgpool, maxpool, add, copy."""

    kind: str
    inputs: list[Buffer]
    output: Buffer
    params: dict[str, int] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # filter (int8), bias/multiplier/shift (int32)
    comment: str = ""


def c_array(name: str, values: np.ndarray, ctype: str, per_line: int = 24) -> str:
    """``static const ctype name[n] = {...};`` with the values as decimal integers."""
    flat = np.asarray(values).reshape(-1)
    body = ",\n".join(
        "  " + ", ".join(str(int(v)) for v in flat[i : i + per_line]) for i in range(0, len(flat), per_line)
    )
    return f"static const {ctype} {name}[{max(len(flat), 1)}] = {{\n{body or '  0'}\n}};\n"


def c_float_array(name: str, values: Iterable[float], per_line: int = 8, static: bool = True) -> str:
    flat = [float(v) for v in np.asarray(list(values) if not isinstance(values, np.ndarray) else values).reshape(-1)]
    body = ",\n".join(
        "  " + ", ".join(f"{v!r}f" if np.isfinite(v) else "0.0f" for v in flat[i : i + per_line])
        for i in range(0, len(flat), per_line)
    )
    return f"{'static ' if static else ''}const float {name}[{max(len(flat), 1)}] = {{\n{body or '  0.0f'}\n}};\n"


_STRUCT = {
    "conv": "kws_conv_params",
    "dwconv": "kws_conv_params",
    "fc": "kws_fc_params",
    "avgpool": "kws_pool_params",
    "maxpool": "kws_pool_params",
    "add": "kws_add_params",
}
_CALL = {
    "conv": "kws_conv2d",
    "dwconv": "kws_depthwise_conv2d",
    "fc": "kws_fully_connected",
    "avgpool": "kws_average_pool",
    "maxpool": "kws_max_pool",
    "add": "kws_add",
}


def _shape(value: Sequence[int]) -> str:
    return "{" + ", ".join(str(int(v)) for v in value) + "}"


def _struct_fields(layer: Layer, index: int) -> str:
    p = layer.params
    prefix = f"l{index}_"
    if layer.kind in ("conv", "dwconv"):
        items = [
            f".in = {_shape(p['in_shape'])}",
            f".out = {_shape(p['out_shape'])}",
            *(
                f".{k} = {int(p[k])}"
                for k in (
                    "kh",
                    "kw",
                    "stride_h",
                    "stride_w",
                    "dil_h",
                    "dil_w",
                    "pad_top",
                    "pad_left",
                    "depth_multiplier",
                    "input_offset",
                    "output_offset",
                    "act_min",
                    "act_max",
                )
            ),
            f".filter = {prefix}filter",
            f".bias = {prefix + 'bias' if 'bias' in layer.arrays else 'NULL'}",
            f".multiplier = {prefix}multiplier",
            f".shift = {prefix}shift",
            f".offset_bias = {prefix + 'offset_bias' if 'offset_bias' in layer.arrays else 'NULL'}",
        ]
    elif layer.kind == "fc":
        items = [
            *(
                f".{k} = {int(p[k])}"
                for k in (
                    "in_depth",
                    "out_depth",
                    "input_offset",
                    "filter_offset",
                    "output_offset",
                    "act_min",
                    "act_max",
                )
            ),
            f".filter = {prefix}filter",
            f".bias = {prefix + 'bias' if 'bias' in layer.arrays else 'NULL'}",
            f".multiplier = {prefix}multiplier",
            f".shift = {prefix}shift",
            f".offset_bias = {prefix + 'offset_bias' if 'offset_bias' in layer.arrays else 'NULL'}",
        ]
    elif layer.kind in ("avgpool", "maxpool"):
        items = [
            f".in = {_shape(p['in_shape'])}",
            f".out = {_shape(p['out_shape'])}",
            *(
                f".{k} = {int(p[k])}"
                for k in ("kh", "kw", "stride_h", "stride_w", "pad_top", "pad_left", "act_min", "act_max")
            ),
        ]
    elif layer.kind == "add":
        items = [
            f".{k} = {int(p[k])}"
            for k in (
                "size",
                "input1_offset",
                "input2_offset",
                "output_offset",
                "left_shift",
                "input1_multiplier",
                "input1_shift",
                "input2_multiplier",
                "input2_shift",
                "output_multiplier",
                "output_shift",
                "act_min",
                "act_max",
            )
        ]
    else:
        raise ValueError(f"no parameter struct for layer kind {layer.kind}")
    return ",\n    ".join(items)


def model_source(
    layers: list[Layer],
    arena_bytes: int,
    input_buffer: Buffer,
    logits_buffer: Buffer,
    embedding_buffer: Buffer,
    scratch_offset: int,
) -> str:
    """kws_model.c: the arena, the constants of every layer and ``kws_model_invoke``.

    ``scratch_offset``: where the front-end's float scratch lives in the arena; while the front-end
    runs only the model input is alive, so the scratch shares the arena instead of adding to RAM.
    """
    out = [
        "/* Generated by firmware_sim.c_project: the int8 model as constants and kernel calls. Do not edit. */",
        "#include <string.h>",
        "",
        '#include "kws_kernels.h"',
        '#include "kws_model.h"',
        "",
        f"static int8_t arena[{max(arena_bytes, 16)}] __attribute__((aligned(16)));",
        "",
    ]
    calls = []
    for i, layer in enumerate(layers):
        if layer.comment:
            out.append(f"/* layer {i}: {layer.comment} */")
        for name, values in layer.arrays.items():
            ctype = "int8_t" if name == "filter" else "int32_t"
            out.append(c_array(f"l{i}_{name}", values, ctype))
        ins = [f"arena + {b.offset}" for b in layer.inputs]
        dst = f"arena + {layer.output.offset}"
        if layer.kind == "copy":
            calls.append(f"  memmove({dst}, {ins[0]}, {layer.output.size});")
            continue
        out.append(f"static const {_STRUCT[layer.kind]} l{i} = {{\n    {_struct_fields(layer, i)}\n}};\n")
        calls.append(f"  {_CALL[layer.kind]}(&l{i}, {', '.join(ins)}, {dst});")
    out += [
        f"int8_t *kws_model_input(void) {{ return arena + {input_buffer.offset}; }}",
        f"const int8_t *kws_model_logits(void) {{ return arena + {logits_buffer.offset}; }}",
        f"const int8_t *kws_model_embedding(void) {{ return arena + {embedding_buffer.offset}; }}",
        f"float *kws_model_scratch(void) {{ return (float *)(void *)(arena + {scratch_offset}); }}",
        "",
        "void kws_model_invoke(void) {",
        *calls,
        "}",
        "",
    ]
    return "\n".join(out)
