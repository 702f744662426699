"""TFLite inference on the device, with the same interface as ``OnnxModel``.

Why two runtimes: ``ai-edge-litert`` is the maintained TFLite interpreter (numpy 2, current
op versions), but many Raspberry Pi images and older phones' Python environments still carry
the abandoned ``tflite-runtime`` package (numpy < 2). The model files the kit exports run on
both (checked by ``bench/tflite_runtime_compat.py``), so this class uses whichever is installed,
ai-edge-litert first, and turns "neither" into a one-line ``KitError``.

Why quantisation happens here: a full-integer model (``export_tflite(..., int8=True)``) has
int8 input and output tensors. Callers always pass normalised float32 features and get float32
logits and embeddings back, so an application never needs to know which file it was given; the
scale / zero-point come from the interpreter's tensor details (the file's own parameters).

Why a layout: PyTorch is NCHW, TFLite kernels are NHWC. MCU-ready exports take (1, F, T, C) so
their graph has no TRANSPOSE op (metadata ``kit.layout`` = ``NHWC``); callers still pass (C, F, T)
features and this class transposes them on the host. Files without the key are NCHW.

Why a loop over the batch: the kit's TFLite exports have a fixed batch of 1 (the converter
cannot trace the instance-norm ConvNet with a dynamic batch, and one clip at a time is what a
keyword spotter runs); ``run`` on (N, C, F, T) invokes the interpreter N times.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .errors import KitError
from .inference import KitOutputs, ModelMetadata
from .safeio import read_regular_bytes
from .tflite_metadata import KIT_METADATA_NAME, is_tflite, read_metadata

RUNTIMES = ("ai_edge_litert", "tflite_runtime")
INPUT_NAME = "features"
OUTPUT_NAMES = ("logits", "embedding")
LAYOUTS = ("NCHW", "NHWC")


def tflite_interpreter_class(runtime: str | None = None) -> tuple[Any, str]:
    """(Interpreter class, runtime name): ai-edge-litert if importable, else tflite-runtime.

    ``runtime`` forces one of ``RUNTIMES`` (used to compare the two on one machine).
    """
    wanted = RUNTIMES if runtime is None else (runtime,)
    if runtime is not None and runtime not in RUNTIMES:
        raise KitError(f"unknown TFLite runtime '{runtime}' (choose from {', '.join(RUNTIMES)})")
    for name in wanted:
        try:
            if name == "ai_edge_litert":
                from ai_edge_litert.interpreter import Interpreter  # lazy: optional, guarded by try
            else:
                from tflite_runtime.interpreter import Interpreter  # lazy: optional, guarded by try
        except ImportError:
            continue
        return Interpreter, name
    if runtime is not None:
        package = runtime.replace("_", "-")
        raise KitError(f"the TFLite runtime '{runtime}' is not installed (pip install {package})")
    raise KitError(
        "no TFLite runtime is installed; install ai-edge-litert (pip install ai-edge-litert), "
        "or tflite-runtime with numpy<2 on devices that lack it, to run .tflite models"
    )


def kit_props(data: bytes, name: str) -> dict[str, str]:
    """The ``kit.*`` properties stored in the file's ``kit_metadata`` entry ({} when absent)."""
    raw = read_metadata(data, name).get(KIT_METADATA_NAME)
    if raw is None:
        return {}
    try:
        props = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise KitError(
            f"{name}: the kit metadata in this TFLite file is not valid JSON (edited or corrupted)"
        ) from None
    if not isinstance(props, dict) or not all(isinstance(v, str) for v in props.values()):
        raise KitError(f"{name}: the kit metadata in this TFLite file must map names to strings")
    return props


def _quantize(x: np.ndarray, detail: dict[str, Any], name: str) -> np.ndarray:
    """float32 -> the input tensor's integer type with its own scale / zero point."""
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return x.astype(dtype, copy=False)
    scale, zero_point = detail["quantization"]
    if not scale:
        raise KitError(f"{name}: integer input tensor without quantisation parameters; cannot feed float features")
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zero_point, info.min, info.max).astype(dtype)


def _dequantize(y: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """An output tensor back to float32 (identity for float outputs)."""
    if np.dtype(detail["dtype"]).kind == "f":
        return np.asarray(y, dtype=np.float32)
    scale, zero_point = detail["quantization"]
    return ((np.asarray(y, dtype=np.float32) - zero_point) * scale).astype(np.float32)


class TfliteModel(KitOutputs):
    """A kit ``.tflite`` model: ``predict`` -> logits, ``embed`` -> embeddings, ``run`` -> both.

    ``source`` is a path or the file's bytes (e.g. from a bundle). ``threads`` sets the
    interpreter's threads (1 by default: predictable latency, no contention with audio capture).
    ``runtime`` forces "ai_edge_litert" or "tflite_runtime". ``xnnpack=False`` uses the
    interpreter's built-in kernels only: ai-edge-litert 2.3 hands int8 ops to XNNPACK by default
    while tflite-runtime 2.14 does not, and the two int8 kernel sets round differently (measured
    up to 4 output steps apart, same accuracy); with the built-in kernels both runtimes give
    bit-identical outputs. ``reference=True`` uses the reference kernels (``BUILTIN_REF``), the closest
    match to TensorFlow Lite Micro (bit-identical except FULLY_CONNECTED rounding ties, 1 LSB).
    """

    def __init__(
        self,
        source: str | os.PathLike | bytes,
        threads: int = 1,
        runtime: str | None = None,
        xnnpack: bool = True,
        reference: bool = False,
        label: str | None = None,
    ) -> None:
        if isinstance(source, (bytes, bytearray, memoryview)):
            self.path: Path | str = label or "<tflite bytes>"  # label: "bundle.kit member models/x.tflite"
            data = bytes(source)
        else:
            self.path = Path(source)
            data = read_regular_bytes(self.path, "model")
        name = str(self.path)
        if not data:
            raise KitError(f"{name}: empty file, not a TFLite model")
        if not is_tflite(data):
            raise KitError(f"{name}: not a TFLite model (no 'TFL3' flatbuffer identifier)")
        self.metadata = ModelMetadata.from_props(kit_props(data, name), name)
        self.layout = self.metadata.props.get("kit.layout", "NCHW")
        if self.layout not in LAYOUTS:
            raise KitError(f"{name}: metadata 'kit.layout' is '{self.layout}' (expected {' or '.join(LAYOUTS)})")
        interpreter_class, self.runtime = tflite_interpreter_class(runtime)
        self._data = data  # the interpreter reads the buffer in place: keep it alive
        options: dict[str, Any] = {}
        if not xnnpack or reference:
            resolver = __import__(interpreter_class.__module__, fromlist=["OpResolverType"]).OpResolverType
            options["experimental_op_resolver_type"] = (
                resolver.BUILTIN_REF if reference else resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
            )
        self.xnnpack = xnnpack and not reference
        self.reference = reference
        try:
            self.interpreter = interpreter_class(model_content=data, num_threads=max(1, int(threads)), **options)
            self.interpreter.allocate_tensors()
        except Exception as exc:  # the runtimes raise ValueError / RuntimeError for bad flatbuffers
            reason = " ".join(str(exc).split())[:160]
            raise KitError(f"{name}: not a valid TFLite model ({reason})") from None
        try:
            self._bind(name)
        except KitError:
            raise
        except Exception as exc:  # malformed signature tables and the like
            raise KitError(f"{name}: not a valid TFLite model ({' '.join(str(exc).split())[:160]})") from None

    # Graph interface ------------------------------------------------------------------------
    def _bind(self, name: str) -> None:
        """Find the input and the named outputs: by signature names, else by the recorded order."""
        interp = self.interpreter
        signatures = interp.get_signature_list() or {}
        key = "serving_default" if "serving_default" in signatures else next(iter(signatures), None)
        self._runner = None
        if key is not None and len(signatures[key].get("inputs", [])) == 1:
            self._runner = interp.get_signature_runner(key)
            self.input_name = signatures[key]["inputs"][0]
            self._input = self._runner.get_input_details()[self.input_name]
            self._outputs = dict(self._runner.get_output_details())
        else:
            inputs = interp.get_input_details()
            if len(inputs) != 1:
                raise KitError(f"{name}: expected one input (features), the model has {len(inputs)}")
            self.input_name, self._input = inputs[0]["name"], inputs[0]
            details = interp.get_output_details()
            order = self._recorded_order(len(details), name)
            self._outputs = dict(zip(order, details))
        self.output_names = [n for n in OUTPUT_NAMES if n in self._outputs] + sorted(
            n for n in self._outputs if n not in OUTPUT_NAMES
        )
        shape = [int(v) for v in self._input["shape"]]
        if len(shape) != 4:
            raise KitError(f"{name}: input must be 4-D ({self.layout}), the model's is {shape}")
        self._batch = shape[0]

    def _recorded_order(self, n: int, name: str) -> list[str]:
        raw = self.metadata.props.get("kit.outputs")
        if raw is None:
            return [f"output_{i}" for i in range(n)] if n != 2 else list(OUTPUT_NAMES)
        try:
            order = [str(v) for v in json.loads(raw)]
        except (json.JSONDecodeError, TypeError):
            raise KitError(f"{name}: metadata 'kit.outputs' is not a JSON list") from None
        if len(order) != n:
            raise KitError(f"{name}: metadata names {len(order)} outputs but the graph has {n}")
        return order

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, F, T) the model expects (from the kit metadata, else from the graph)."""
        if self.metadata.in_shape is not None:
            return tuple(self.metadata.in_shape)  # type: ignore[return-value]
        shape = [int(v) for v in self._input["shape"][1:]]
        return tuple(shape if self.layout == "NCHW" else shape[2:] + shape[:2])  # type: ignore[return-value]

    @property
    def quantized(self) -> bool:
        """True for a full-integer model (integer input tensor)."""
        return np.dtype(self._input["dtype"]).kind in "iu"

    # Inference ------------------------------------------------------------------------------
    def _as_batch(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or tuple(x.shape[1:]) != tuple(self.input_shape):
            raise KitError(f"{self.path}: input of shape {x.shape} does not fit the model's (N, {self.input_shape})")
        return np.ascontiguousarray(x)

    def _invoke(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """One interpreter call on a batch of exactly the model's batch size."""
        if self.layout == "NHWC":
            x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        feed = _quantize(x, self._input, str(self.path))
        if self._runner is not None:
            raw = self._runner(**{self.input_name: feed})
        else:
            self.interpreter.set_tensor(self._input["index"], feed)
            self.interpreter.invoke()
            raw = {n: self.interpreter.get_tensor(d["index"]) for n, d in self._outputs.items()}
        return {n: _dequantize(raw[n], self._outputs[n]) for n in self.output_names}

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """All outputs by name ("logits", "embedding") for features (C, F, T) or (N, C, F, T)."""
        x = self._as_batch(x)
        if len(x) == self._batch:
            return self._invoke(x)
        if self._batch != 1:
            raise KitError(f"{self.path}: the model takes batches of exactly {self._batch}, got {len(x)}")
        parts = [self._invoke(x[i : i + 1]) for i in range(len(x))]
        if not parts:
            raise KitError(f"{self.path}: empty batch")
        return {n: np.concatenate([p[n] for p in parts]) for n in self.output_names}
