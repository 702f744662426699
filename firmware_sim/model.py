"""The TFLite graph as plain data: tensors (shape, type, quantisation, constant data) and operators.

Why a parsed copy and not the flatbuffer itself: the interpreter, the arena planner and the cost
model all need the same facts (which tensors are constants, which are activations, each
operator's options); parsing once into small dataclasses keeps each of those modules short and
keeps every schema field number in this one file (tensorflow/lite/schema/schema.fbs).
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deploy.runtime.bundle import Bundle
from deploy.runtime.errors import KitError

from .flatbuf import FlatReader

#: BuiltinOperator enum of schema.fbs, by code (0 .. 125)
OP_NAMES: tuple[str, ...] = (
    "ADD",
    "AVERAGE_POOL_2D",
    "CONCATENATION",
    "CONV_2D",
    "DEPTHWISE_CONV_2D",
    "DEPTH_TO_SPACE",
    "DEQUANTIZE",
    "EMBEDDING_LOOKUP",
    "FLOOR",
    "FULLY_CONNECTED",
    "HASHTABLE_LOOKUP",
    "L2_NORMALIZATION",
    "L2_POOL_2D",
    "LOCAL_RESPONSE_NORMALIZATION",
    "LOGISTIC",
    "LSH_PROJECTION",
    "LSTM",
    "MAX_POOL_2D",
    "MUL",
    "RELU",
    "RELU_N1_TO_1",
    "RELU6",
    "RESHAPE",
    "RESIZE_BILINEAR",
    "RNN",
    "SOFTMAX",
    "SPACE_TO_DEPTH",
    "SVDF",
    "TANH",
    "CONCAT_EMBEDDINGS",
    "SKIP_GRAM",
    "CALL",
    "CUSTOM",
    "EMBEDDING_LOOKUP_SPARSE",
    "PAD",
    "UNIDIRECTIONAL_SEQUENCE_RNN",
    "GATHER",
    "BATCH_TO_SPACE_ND",
    "SPACE_TO_BATCH_ND",
    "TRANSPOSE",
    "MEAN",
    "SUB",
    "DIV",
    "SQUEEZE",
    "UNIDIRECTIONAL_SEQUENCE_LSTM",
    "STRIDED_SLICE",
    "BIDIRECTIONAL_SEQUENCE_RNN",
    "EXP",
    "TOPK_V2",
    "SPLIT",
    "LOG_SOFTMAX",
    "DELEGATE",
    "BIDIRECTIONAL_SEQUENCE_LSTM",
    "CAST",
    "PRELU",
    "MAXIMUM",
    "ARG_MAX",
    "MINIMUM",
    "LESS",
    "NEG",
    "PADV2",
    "GREATER",
    "GREATER_EQUAL",
    "LESS_EQUAL",
    "SELECT",
    "SLICE",
    "SIN",
    "TRANSPOSE_CONV",
    "SPARSE_TO_DENSE",
    "TILE",
    "EXPAND_DIMS",
    "EQUAL",
    "NOT_EQUAL",
    "LOG",
    "SUM",
    "SQRT",
    "RSQRT",
    "SHAPE",
    "POW",
    "ARG_MIN",
    "FAKE_QUANT",
    "REDUCE_PROD",
    "REDUCE_MAX",
    "PACK",
    "LOGICAL_OR",
    "ONE_HOT",
    "LOGICAL_AND",
    "LOGICAL_NOT",
    "UNPACK",
    "REDUCE_MIN",
    "FLOOR_DIV",
    "REDUCE_ANY",
    "SQUARE",
    "ZEROS_LIKE",
    "FILL",
    "FLOOR_MOD",
    "RANGE",
    "RESIZE_NEAREST_NEIGHBOR",
    "LEAKY_RELU",
    "SQUARED_DIFFERENCE",
    "MIRROR_PAD",
    "ABS",
    "SPLIT_V",
    "UNIQUE",
    "CEIL",
    "REVERSE_V2",
    "ADD_N",
    "GATHER_ND",
    "COS",
    "WHERE",
    "RANK",
    "ELU",
    "REVERSE_SEQUENCE",
    "MATRIX_DIAG",
    "QUANTIZE",
    "MATRIX_SET_DIAG",
    "ROUND",
    "HARD_SWISH",
    "IF",
    "WHILE",
    "NON_MAX_SUPPRESSION_V4",
    "NON_MAX_SUPPRESSION_V5",
    "SCATTER_ND",
    "SELECT_V2",
    "DENSIFY",
    "SEGMENT_SUM",
    "BATCH_MATMUL",
)
#: TensorType enum of schema.fbs -> numpy dtype name
TENSOR_TYPES: dict[int, str] = {
    0: "float32",
    1: "float16",
    2: "int32",
    3: "uint8",
    4: "int64",
    5: "string",
    6: "bool",
    7: "int16",
    8: "complex64",
    9: "int8",
    10: "float64",
    15: "uint32",
    16: "uint16",
}
PADDING = {0: "SAME", 1: "VALID"}
ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}
KIT_METADATA_NAME = "kit_metadata"

# Field numbers (schema.fbs): Model, SubGraph, Tensor, QuantizationParameters, Operator, Buffer, ...
_M_OPCODES, _M_SUBGRAPHS, _M_DESCRIPTION, _M_BUFFERS, _M_METADATA, _M_SIGNATURES = 1, 2, 3, 4, 6, 7
_SG_TENSORS, _SG_INPUTS, _SG_OUTPUTS, _SG_OPERATORS = 0, 1, 2, 3
_T_SHAPE, _T_TYPE, _T_BUFFER, _T_NAME, _T_QUANT, _T_VARIABLE = 0, 1, 2, 3, 4, 5
_Q_SCALE, _Q_ZERO_POINT, _Q_DIMENSION = 2, 3, 6
_OP_OPCODE, _OP_INPUTS, _OP_OUTPUTS, _OP_OPTIONS = 0, 1, 2, 4


@dataclass(frozen=True)
class Quantization:
    """Affine quantisation: real = scale * (q - zero_point), per tensor or per channel (``axis``)."""

    scale: np.ndarray  # float32, 1 or C values
    zero_point: np.ndarray  # int64, 1 or C values
    axis: int = 0

    @property
    def per_channel(self) -> bool:
        return self.scale.size > 1


@dataclass
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    data: np.ndarray | None  # constant (weights, biases, shapes); None for activations
    quant: Quantization | None
    is_variable: bool = False

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @property
    def nbytes(self) -> int:
        itemsize = np.dtype(self.dtype).itemsize if self.dtype not in ("string",) else 1
        return self.size * itemsize

    @property
    def scale(self) -> float:
        return float(self.quant.scale[0]) if self.quant is not None else 0.0

    @property
    def zero_point(self) -> int:
        return int(self.quant.zero_point[0]) if self.quant is not None else 0


@dataclass
class Operator:
    index: int
    opcode: str
    inputs: tuple[int, ...]  # -1: optional input left out
    outputs: tuple[int, ...]
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Model:
    """One parsed ``.tflite`` (its first subgraph: the kit's exports have one)."""

    name: str
    data: bytes
    tensors: list[Tensor]
    operators: list[Operator]
    inputs: list[int]
    outputs: list[int]
    output_names: list[str]
    metadata: dict[str, bytes]
    description: str = ""

    @property
    def flash_bytes(self) -> int:
        return len(self.data)

    @property
    def kit_metadata(self) -> dict[str, Any]:
        raw = self.metadata.get(KIT_METADATA_NAME)
        try:
            return json.loads(raw) if raw else {}
        except ValueError:
            return {}

    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for op in self.operators:
            counts[op.opcode] = counts.get(op.opcode, 0) + 1
        return counts

    def is_int8(self) -> bool:
        """Full-integer: int8 inputs/outputs and no float tensor anywhere in the graph."""
        io = [self.tensors[i] for i in self.inputs + self.outputs]
        return all(t.dtype == "int8" for t in io) and not any(t.dtype.startswith("float") for t in self.tensors)

    def require_int8(self) -> Model:
        if not self.is_int8():
            floats = sorted({t.dtype for t in self.tensors if t.dtype.startswith("float")})
            held = ", ".join(floats) or "non-int8 I/O"
            raise KitError(f"{self.name}: not a full-integer int8 model (it holds {held} tensors); export with --int8")
        return self


def model_layout(model: "Model") -> str:
    """The input layout the export recorded (``kit.layout``): NHWC for MCU-ready models, else NCHW."""
    return str(model.kit_metadata.get("kit.layout", "NCHW")).upper()


def features_to_input(model: "Model", features: np.ndarray) -> np.ndarray:
    """The kit's feature maps (N, C, F, T) laid out as the model's input ((N, F, T, C) for NHWC models)."""
    x = np.asarray(features)
    if model_layout(model) == "NHWC" and x.ndim == 4:
        return np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    return x


def _op_name(code: int, custom: str) -> str:
    if code == 32 and custom:
        return f"CUSTOM({custom})"
    return OP_NAMES[code] if 0 <= code < len(OP_NAMES) else f"BUILTIN_{code}"


def _options(r: FlatReader, table: int | None, opcode: str) -> dict[str, Any]:
    """The builtin options the kernels use, decoded by operator (defaults as in schema.fbs)."""
    if table is None:
        return {}

    def b(f: int, d: int = 0) -> int:
        return int(r.scalar(table, f, "b", d))

    def i(f: int, d: int = 0) -> int:
        return int(r.scalar(table, f, "i", d))

    if opcode == "CONV_2D":
        return {
            "padding": PADDING.get(b(0), "?"),
            "stride_w": i(1),
            "stride_h": i(2),
            "activation": ACTIVATIONS.get(b(3), "?"),
            "dilation_w": i(4, 1),
            "dilation_h": i(5, 1),
        }
    if opcode == "DEPTHWISE_CONV_2D":
        return {
            "padding": PADDING.get(b(0), "?"),
            "stride_w": i(1),
            "stride_h": i(2),
            "depth_multiplier": i(3),
            "activation": ACTIVATIONS.get(b(4), "?"),
            "dilation_w": i(5, 1),
            "dilation_h": i(6, 1),
        }
    if opcode in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        return {
            "padding": PADDING.get(b(0), "?"),
            "stride_w": i(1),
            "stride_h": i(2),
            "filter_w": i(3),
            "filter_h": i(4),
            "activation": ACTIVATIONS.get(b(5), "?"),
        }
    if opcode == "FULLY_CONNECTED":
        return {"activation": ACTIVATIONS.get(b(0), "?"), "weights_format": b(1), "keep_num_dims": bool(b(2))}
    if opcode in ("ADD", "SUB", "MUL"):
        return {"activation": ACTIVATIONS.get(b(0), "?")}
    if opcode == "SOFTMAX":
        return {"beta": float(r.scalar(table, 0, "f", 0.0))}
    if opcode == "RESHAPE":
        shape = r.array(table, 0, "int32")
        return {"new_shape": None if shape is None else tuple(int(v) for v in shape)}
    if opcode in ("MEAN", "SUM", "REDUCE_MAX"):
        return {"keep_dims": bool(b(0))}
    return {}


def _buffer_data(r: FlatReader, buffer: int | None) -> np.ndarray | None:
    """Bytes of a Buffer table: inline ``data``, or ``offset``/``size`` into the file (models > 2 GB)."""
    if buffer is None:
        return None
    inline = r.array(buffer, 0, "uint8")
    if inline is not None and inline.size:
        return inline
    offset, size = int(r.scalar(buffer, 1, "Q", 0)), int(r.scalar(buffer, 2, "Q", 0))
    if offset > 1 and size:
        if offset + size > len(r.data):
            raise r.fail("a buffer runs past the end of the file")
        return np.frombuffer(r.data, dtype=np.uint8, count=size, offset=offset).copy()
    return None


def _tensor(r: FlatReader, index: int, table: int, buffers: list[int]) -> Tensor:
    shape_arr = r.array(table, _T_SHAPE, "int32")
    shape = tuple(int(v) for v in shape_arr) if shape_arr is not None else ()
    type_code = int(r.scalar(table, _T_TYPE, "b", 0))
    dtype = TENSOR_TYPES.get(type_code, f"type{type_code}")
    buffer_index = int(r.scalar(table, _T_BUFFER, "I", 0))
    if buffer_index >= max(len(buffers), 1) and buffers:
        raise r.fail(f"tensor {index} points at buffer {buffer_index} of {len(buffers)}")
    raw = _buffer_data(r, buffers[buffer_index]) if buffer_index and buffers else None
    data = None
    if raw is not None:
        if dtype not in ("float32", "float16", "int32", "uint8", "int64", "int16", "int8", "float64", "bool"):
            raise KitError(f"{r.name}: constant tensor {index} has unsupported type {dtype}")
        dt = np.dtype(dtype).newbyteorder("<")
        expected = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
        if raw.size != expected:
            raise r.fail(f"tensor {index} has {raw.size} bytes of data for shape {shape} {dtype}")
        data = raw.view(dt).astype(dt.newbyteorder("=")).reshape(shape)
    quant = None
    qtable = r.table(table, _T_QUANT)
    if qtable is not None:
        scale = r.array(qtable, _Q_SCALE, "float32")
        zero = r.array(qtable, _Q_ZERO_POINT, "int64")
        if scale is not None and scale.size:
            zero = zero if zero is not None and zero.size else np.zeros(scale.size, np.int64)
            quant = Quantization(
                scale.astype(np.float32), zero.astype(np.int64), int(r.scalar(qtable, _Q_DIMENSION, "i", 0))
            )
    return Tensor(
        index, r.string(table, _T_NAME), shape, dtype, data, quant, bool(r.scalar(table, _T_VARIABLE, "b", 0))
    )


def _output_names(
    r: FlatReader, root: int, outputs: list[int], metadata: dict[str, bytes], tensors: list[Tensor]
) -> list[str]:
    """Signature output names in subgraph-output order; else the kit metadata's; else tensor names."""
    by_index: dict[int, str] = {}
    for sig in r.tables(root, _M_SIGNATURES)[:1]:
        for entry in r.tables(sig, 1):
            by_index[int(r.scalar(entry, 1, "I", 0))] = r.string(entry, 0)
    if all(i in by_index for i in outputs):
        return [by_index[i] for i in outputs]
    try:
        recorded = json.loads(json.loads(metadata.get(KIT_METADATA_NAME, b"{}")).get("kit.outputs", "[]"))
    except (ValueError, AttributeError):
        recorded = []
    if isinstance(recorded, list) and len(recorded) == len(outputs):
        return [str(n) for n in recorded]
    return [tensors[i].name or f"output_{k}" for k, i in enumerate(outputs)]


def _ints(r: FlatReader, table: int, field_number: int) -> list[int]:
    values = r.array(table, field_number, "int32")
    return [] if values is None else [int(v) for v in values]


def parse_model(data: bytes, name: str = "<model>") -> Model:
    """Parse a ``.tflite`` flatbuffer (first subgraph) into a ``Model``; KitError when it is not one."""
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise KitError(f"{name}: not a TFLite model (no 'TFL3' identifier; truncated, corrupted or another format)")
    r = FlatReader(data, name)
    try:
        root = r.root()
        opcodes = []
        for oc in r.tables(root, _M_OPCODES):
            code = max(int(r.scalar(oc, 0, "b", 0)), int(r.scalar(oc, 3, "i", 0)))
            opcodes.append(_op_name(code, r.string(oc, 1)))
        buffers = r.tables(root, _M_BUFFERS)
        metadata = {}
        for entry in r.tables(root, _M_METADATA):
            index = int(r.scalar(entry, 1, "I", 0))
            if index < len(buffers):
                raw = _buffer_data(r, buffers[index])
                metadata[r.string(entry, 0)] = b"" if raw is None else raw.tobytes()
        subgraphs = r.tables(root, _M_SUBGRAPHS)
        if not subgraphs:
            raise r.fail("no subgraph")
        sg = subgraphs[0]
        tensors = [_tensor(r, i, t, buffers) for i, t in enumerate(r.tables(sg, _SG_TENSORS))]
        operators = []
        for k, op in enumerate(r.tables(sg, _SG_OPERATORS)):
            code_index = int(r.scalar(op, _OP_OPCODE, "I", 0))
            if code_index >= len(opcodes):
                raise r.fail(f"operator {k} uses opcode {code_index} of {len(opcodes)}")
            opcode = opcodes[code_index]
            ins, outs = tuple(_ints(r, op, _OP_INPUTS)), tuple(_ints(r, op, _OP_OUTPUTS))
            if any(not -1 <= t < len(tensors) for t in ins + outs):
                raise r.fail(f"operator {k} ({opcode}) refers to a tensor outside the {len(tensors)} tensors")
            operators.append(Operator(k, opcode, ins, outs, _options(r, r.table(op, _OP_OPTIONS), opcode)))
        inputs, outputs = _ints(r, sg, _SG_INPUTS), _ints(r, sg, _SG_OUTPUTS)
        if any(not 0 <= t < len(tensors) for t in inputs + outputs):
            raise r.fail("subgraph inputs/outputs refer to missing tensors")
        names = _output_names(r, root, outputs, metadata, tensors)
        description = r.string(root, _M_DESCRIPTION)
    except KitError:
        raise
    except (ValueError, UnicodeError, OverflowError, MemoryError) as exc:
        raise r.fail(type(exc).__name__) from None
    return Model(name, bytes(data), tensors, operators, inputs, outputs, names, metadata, description)


def _from_bundle(path: Path, member: str | None) -> tuple[bytes, str]:
    """The int8 TFLite model of a bundle (or ``member``), read through the bundle's own checks."""
    bundle = Bundle.load(path)
    if member is not None:
        if member not in bundle.models:
            raise KitError(f"{path}: bundle has no model '{member}' (it holds {', '.join(sorted(bundle.models))})")
        return bundle.models[member], f"{path}:{member}"
    tflite = [n for n in bundle.models if n.endswith(".tflite")]
    int8 = [n for n in tflite if ".int8." in n]
    chosen = int8 or tflite
    if not chosen:
        raise KitError(
            f"{path}: bundle holds no TFLite model ({', '.join(sorted(bundle.models))}); "
            "build it with an int8 TFLite export"
        )
    name = bundle.default_model if bundle.default_model in chosen else min(chosen)
    return bundle.models[name], f"{path}:{name}"


def load_model(source: str | os.PathLike | bytes | bytearray | Model, *, member: str | None = None) -> Model:
    """A ``Model`` from a ``.tflite`` path, its bytes, or a kit bundle (its int8 TFLite member)."""
    if isinstance(source, Model):
        return source
    if isinstance(source, (bytes, bytearray, memoryview)):
        return parse_model(bytes(source), "<bytes>")
    path = Path(source)
    if not path.is_file():
        raise KitError(f"{path}: no such model file")
    if zipfile.is_zipfile(path):
        data, name = _from_bundle(path, member)
        return parse_model(data, name)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KitError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return parse_model(data, str(path))
