"""What is inside an exported model: size, op histogram, tensor types, inputs and outputs.

Why: an edge deployment is judged by its file size and by which operators the target runtime
must provide (a TFLite Micro or NNAPI build only has some; a stray float op in an "int8" model
means a slow or failing path on an integer-only accelerator). ``kit export`` prints this, the
export tests assert on it, and benchmarks record it beside latency figures.

Usage: ``python -m deploy.model_report MODEL.tflite MODEL.onnx ... [--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from deploy.runtime.errors import KitError
from deploy.runtime.models import model_format
from deploy.runtime.safeio import read_regular_bytes
from deploy.runtime.tflite_metadata import is_tflite, read_metadata


@dataclass
class ModelReport:
    """Static facts about one model file (nothing is executed)."""

    name: str
    format: str  # "onnx" | "tflite"
    size_bytes: int
    ops: dict[str, int]  # operator -> count, most frequent first
    tensor_types: dict[str, int]  # element type -> number of tensors (tflite: all; onnx: initializers)
    inputs: list[dict[str, Any]] = field(default_factory=list)  # name, shape, dtype[, quantization]
    outputs: list[dict[str, Any]] = field(default_factory=list)
    metadata_keys: list[str] = field(default_factory=list)

    @property
    def n_ops(self) -> int:
        return sum(self.ops.values())

    @property
    def integer_only(self) -> bool:
        """True when no tensor of the graph is floating point (TFLite full-integer models)."""
        return not any(t.upper().startswith(("FLOAT", "BFLOAT", "DOUBLE")) for t in self.tensor_types)

    def ops_line(self) -> str:
        """``CONV_2D x3, MEAN x6, ...`` (most frequent first)."""
        return ", ".join(f"{op} x{count}" for op, count in self.ops.items())

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "n_ops": self.n_ops, "integer_only": self.integer_only}

    def text(self) -> str:
        """A few human-readable lines (what ``kit export`` prints)."""

        def io(entries: list[dict[str, Any]]) -> str:
            return ", ".join(f"{e['name']} {e['dtype']}{list(e['shape'])}" for e in entries)

        types = ", ".join(f"{t} x{n}" for t, n in self.tensor_types.items())
        return "\n".join(
            [
                f"{self.name}: {self.format}, {self.size_bytes} bytes, {self.n_ops} ops",
                f"  ops:     {self.ops_line()}",
                f"  tensors: {types}",
                f"  inputs:  {io(self.inputs)}",
                f"  outputs: {io(self.outputs)}",
            ]
        )


def _histogram(names: list[str]) -> dict[str, int]:
    return dict(sorted(Counter(names).items(), key=lambda kv: (-kv[1], kv[0])))


def tflite_report(data: bytes, name: str = "<tflite>") -> ModelReport:
    """Report on a TFLite flatbuffer (parsed with the schema shipped in ai-edge-litert)."""
    if not is_tflite(data):
        raise KitError(f"{name}: not a TFLite model (no 'TFL3' flatbuffer identifier)")
    metadata = read_metadata(data, name)  # bounds-checked walk: refuses truncated files first
    from ai_edge_litert import schema_py_generated as schema  # lazy: ai_edge_litert only when used

    op_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    type_names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    try:
        model = schema.Model.GetRootAs(data, 0)
        codes = []
        for i in range(model.OperatorCodesLength()):
            code = model.OperatorCodes(i)
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            custom = code.CustomCode()
            codes.append(
                custom.decode()
                if builtin == schema.BuiltinOperator.CUSTOM and custom
                else op_names.get(builtin, str(builtin))
            )
        ops, types = [], []
        inputs, outputs = [], []
        for s in range(model.SubgraphsLength()):
            graph = model.Subgraphs(s)
            ops += [codes[graph.Operators(i).OpcodeIndex()] for i in range(graph.OperatorsLength())]
            types += [type_names.get(graph.Tensors(i).Type(), "?") for i in range(graph.TensorsLength())]
            if s == 0:

                def describe(index: int) -> dict[str, Any]:
                    tensor = graph.Tensors(index)  # noqa: B023 (used within this iteration only)
                    entry: dict[str, Any] = {
                        "name": (tensor.Name() or b"").decode(),
                        "shape": [int(v) for v in tensor.ShapeAsNumpy()] if tensor.ShapeLength() else [],
                        "dtype": type_names.get(tensor.Type(), "?").lower(),
                    }
                    q = tensor.Quantization()
                    if q is not None and q.ScaleLength():
                        entry["quantization"] = {
                            "scale": [float(v) for v in q.ScaleAsNumpy()],
                            "zero_point": [int(v) for v in q.ZeroPointAsNumpy()],
                        }
                    return entry

                inputs = [describe(int(graph.Inputs(i))) for i in range(graph.InputsLength())]
                outputs = [describe(int(graph.Outputs(i))) for i in range(graph.OutputsLength())]
    except (IndexError, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise KitError(f"{name}: not a valid TFLite model ({exc})") from None
    return ModelReport(name, "tflite", len(data), _histogram(ops), _histogram(types), inputs, outputs, sorted(metadata))


def onnx_report(data: bytes, name: str = "<onnx>") -> ModelReport:
    """Report on an ONNX model: node types (domain-qualified outside ai.onnx), initializer types."""
    import onnx  # lazy: onnx only when used
    from onnx import TensorProto  # lazy: onnx only when used

    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf DecodeError and friends
        raise KitError(f"{name}: not a valid ONNX model ({' '.join(str(exc).split())[:120]})") from None
    graph = model.graph
    ops = [f"{n.domain}.{n.op_type}" if n.domain not in ("", "ai.onnx") else n.op_type for n in graph.node]
    types = [TensorProto.DataType.Name(t.data_type) for t in graph.initializer]

    def describe(value: Any) -> dict[str, Any]:
        tensor = value.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tensor.shape.dim]
        return {"name": value.name, "shape": shape, "dtype": TensorProto.DataType.Name(tensor.elem_type).lower()}

    return ModelReport(
        name,
        "onnx",
        len(data),
        _histogram(ops),
        _histogram(types),
        [describe(v) for v in graph.input],
        [describe(v) for v in graph.output],
        sorted(p.key for p in model.metadata_props),
    )


def model_report(source: str | os.PathLike | bytes, fmt: str | None = None) -> ModelReport:
    """Report on a model path or bytes (``fmt`` needed for ONNX bytes)."""
    if isinstance(source, (bytes, bytearray)):
        data, name = bytes(source), f"<{fmt or 'model'} bytes>"
    else:
        path = Path(source)
        data, name = read_regular_bytes(path, "model"), str(path)
    kind = model_format(source, fmt)
    if not data:
        raise KitError(f"{name}: empty file")
    return tflite_report(data, name) if kind == "tflite" else onnx_report(data, name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.model_report", description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help=".tflite or .onnx files")
    parser.add_argument("--json", action="store_true", help="print one JSON list instead of text")
    args = parser.parse_args(argv)
    try:
        reports = [model_report(path) for path in args.models]
    except KitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([r.to_dict() for r in reports], indent=1))
    else:
        print("\n".join(r.text() for r in reports))
    return 0


if __name__ == "__main__":
    sys.exit(main())
