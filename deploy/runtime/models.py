"""``open_model``: one entry point for every model file the device may be given.

Why one function: applications (the classifier, the live listener, bundles) should not care
whether a model is ONNX or TFLite, fp32 or int8; both runtime classes share one interface
(the ``Classifier`` protocol plus ``predict``, ``run``, ``input_shape``, ``metadata``) and take float32 features.
The format comes from the file suffix, or, for bytes and unknown suffixes, from ``fmt`` or the
TFLite flatbuffer identifier.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .classifier import Classifier
from .errors import KitError
from .inference import OnnxModel
from .safeio import open_regular, require_regular_file
from .tflite_metadata import is_tflite
from .tflite_model import TfliteModel, kit_props

FORMATS = ("onnx", "tflite")
SUFFIXES = {".onnx": "onnx", ".tflite": "tflite"}


class RuntimeModel(Classifier, Protocol):
    """What ``OnnxModel`` and ``TfliteModel`` both provide: a ``Classifier`` plus the raw outputs."""

    metadata: Any

    @property
    def input_shape(self) -> tuple[int, int, int] | None: ...

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]: ...

    def predict(self, x: np.ndarray) -> np.ndarray: ...

    def embed(self, x: np.ndarray) -> np.ndarray: ...


def model_format(source: str | os.PathLike | bytes, fmt: str | None = None) -> str:
    """ "onnx" or "tflite" for ``source``: ``fmt`` if given, else the suffix, else the file's magic."""
    if fmt is not None:
        fmt = fmt.lower().lstrip(".")
        if fmt not in FORMATS:
            raise KitError(f"unknown model format '{fmt}' (choose from {', '.join(FORMATS)})")
        return fmt
    if isinstance(source, (bytes, bytearray, memoryview)):
        if is_tflite(bytes(source[:8])):
            return "tflite"
        raise KitError("model bytes: pass fmt='onnx' or fmt='tflite' (the format cannot be told from bytes alone)")
    path = Path(source)
    if path.suffix.lower() in SUFFIXES:
        return SUFFIXES[path.suffix.lower()]
    if path.is_file():
        with open_regular(path, "model") as handle:
            if is_tflite(handle.read(8)):
                return "tflite"
    raise KitError(f"{path}: cannot tell the model format from the suffix '{path.suffix}' (use .onnx or .tflite)")


#: the packages that can run each format (any one suffices)
RUNTIME_PACKAGES = {"onnx": ("onnxruntime",), "tflite": ("ai_edge_litert", "tflite_runtime")}


def runtime_installed(fmt: str) -> bool:
    """Whether this machine can run ``fmt`` models (a device may carry onnxruntime only)."""
    return any(importlib.util.find_spec(name) is not None for name in RUNTIME_PACKAGES[fmt])


def verify_model_bytes(data: bytes, fmt: str, label: str) -> None:
    """Check a model file as far as this machine can: open it in its runtime when one is installed,
    else check its structure (a TFLite flatbuffer and its kit metadata; an ONNX file is non-empty)."""
    if runtime_installed(fmt):
        open_model(data, fmt=fmt, label=label)
    elif fmt == "tflite":
        if not kit_props(data, label):  # parses the flatbuffer's metadata (numpy only)
            raise KitError(f"{label}: TFLite model carries no kit metadata")
    elif not data:
        raise KitError(f"{label}: empty model, not an ONNX file")


def open_model(
    source: str | os.PathLike | bytes, fmt: str | None = None, threads: int = 1, label: str | None = None
) -> RuntimeModel:
    """An ``OnnxModel`` or ``TfliteModel`` for a path or the file's bytes (``label`` names bytes in errors,
    e.g. "b.kit member blobs/models/m.onnx")."""
    if not isinstance(source, (bytes, bytearray, memoryview)):
        require_regular_file(source, "model")
    kind = model_format(source, fmt)
    if kind == "tflite":
        return TfliteModel(source, threads=threads, label=label)

    return OnnxModel(source, threads=threads, label=label)
