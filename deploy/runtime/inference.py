"""ONNX inference on the device: an exported kit model plus the metadata needed to feed it.

Why metadata from the ONNX file itself: a deployed model is one file; its ``kit.*``
metadata_props (written by ``deploy.export_onnx``) carry the class names, the ``FeatureConfig``
and the ``Normalizer``, so audio is turned into the same normalised features as in training.
onnxruntime is imported lazily: the rest of the runtime works without it, and a missing
install is reported as a one-line ``KitError`` instead of an ImportError at import time.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .classifier import MetadataClassifier
from .coreset import Normalizer
from .errors import KitError
from .features import FeatureConfig
from .safeio import read_regular_bytes


@dataclass(frozen=True)
class ModelMetadata:
    """What the device needs besides the graph. Fields are None when the file lacks them."""

    classes: list[str] | None
    feature_config: FeatureConfig | None
    normalizer: Normalizer | None
    arch: str | None = None
    in_shape: tuple[int, int, int] | None = None
    props: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_props(cls, props: dict[str, str], path: str | os.PathLike = "<model>") -> "ModelMetadata":
        """Parse ``kit.*`` metadata_props; malformed JSON is a user error naming the file."""

        def load(key: str) -> Any:
            if key not in props:
                return None
            try:
                return json.loads(props[key])
            except json.JSONDecodeError:
                raise KitError(f"{path}: metadata '{key}' is not valid JSON (file edited or corrupted)") from None

        classes = load("kit.classes")
        config = load("kit.feature_config")
        norm = load("kit.normalizer")
        in_shape = load("kit.in_shape")
        try:
            normalizer = (
                Normalizer(np.asarray(norm["mean"], dtype=np.float32), np.asarray(norm["std"], dtype=np.float32))
                if norm is not None
                else None
            )
        except (KeyError, TypeError, ValueError):
            raise KitError(f"{path}: metadata 'kit.normalizer' must hold 'mean' and 'std' lists") from None
        try:
            feature_config = FeatureConfig.from_dict(config) if config is not None else None
        except (TypeError, KitError) as exc:
            raise KitError(f"{path}: metadata 'kit.feature_config' is invalid ({exc})") from None
        return cls(
            classes=[str(c) for c in classes] if classes is not None else None,
            feature_config=feature_config,
            normalizer=normalizer,
            arch=props.get("kit.arch"),
            in_shape=tuple(int(v) for v in in_shape) if in_shape is not None else None,  # type: ignore[arg-type]
            props=dict(props),
        )


def _onnxruntime() -> Any:
    try:
        import onnxruntime  # lazy: optional, guarded by try
    except ImportError:
        raise KitError(
            "onnxruntime is not installed; install it (pip install onnxruntime) to run ONNX models"
        ) from None
    return onnxruntime


class KitOutputs(MetadataClassifier):
    """The ``Classifier`` protocol for any runtime wrapper whose ``run(x)`` returns outputs by name.

    Why a mixin: ONNX and TFLite wrappers differ only in how they run a batch; what a kit model's
    outputs mean (``logits`` first, ``embedding`` for on-device learning) is the same for both,
    and their classes, front-end and normaliser come from the same kit metadata.
    """

    path: Any

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:  # pragma: no cover - provided by the wrapper
        raise NotImplementedError

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Logits (N, K) float32."""
        outputs = self.run(x)
        return outputs.get("logits", next(iter(outputs.values())))

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Logits (N, K) float32 (the name onnxruntime users expect; same as ``logits``)."""
        return self.logits(x)

    def embed(self, x: np.ndarray) -> np.ndarray:
        """Penultimate embedding (N, D) float32."""
        outputs = self.run(x)
        if "embedding" not in outputs:
            raise KitError(f"{self.path}: model has no 'embedding' output (not exported by the kit)")
        return outputs["embedding"]


class OnnxModel(KitOutputs):
    """An exported kit model in onnxruntime: ``predict`` -> logits, ``embed`` -> embeddings.

    ``threads`` sets intra-op threads (1 by default: predictable latency on small devices and no
    contention with the audio thread).
    """

    def __init__(self, path: str | os.PathLike | bytes, threads: int = 1, label: str | None = None) -> None:
        if isinstance(path, (bytes, bytearray, memoryview)):  # e.g. a model file held in a bundle
            self.path: Path | str = label or "<onnx bytes>"  # label: "bundle.kit member models/x.onnx"
            source: str | bytes = bytes(path)
            if not source:
                raise KitError(f"{self.path}: empty model, not an ONNX file")
        else:
            self.path = Path(path)
            source = read_regular_bytes(self.path, "model")  # never blocks on a FIFO; refuses folders
            if not source:
                raise KitError(f"{self.path}: empty model, not an ONNX file")
        ort = _onnxruntime()
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, int(threads))
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            reason = " ".join(str(exc).split())[:160]
            raise KitError(f"{self.path}: not a valid ONNX model ({reason})") from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise KitError(f"{self.path}: expected one input (features), the model has {len(inputs)}")
        self.input_name = inputs[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.metadata = ModelMetadata.from_props(self.session.get_modelmeta().custom_metadata_map, self.path)

    @property
    def input_shape(self) -> tuple[int, int, int] | None:
        """(C, F, T) the model expects: from the kit metadata, else from the graph's static dims."""
        if self.metadata.in_shape is not None:
            return self.metadata.in_shape
        dims = self.session.get_inputs()[0].shape[1:]
        return tuple(dims) if len(dims) == 3 and all(isinstance(d, int) for d in dims) else None  # type: ignore[return-value]

    def _batch(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 3:
            x = x[None]
        expected = self.metadata.in_shape
        if x.ndim != 4 or (expected is not None and tuple(x.shape[1:]) != expected):
            raise KitError(f"{self.path}: input of shape {x.shape} does not fit the model's (N, {expected})")
        return np.ascontiguousarray(x)

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """All outputs by name for features (C, F, T) or (N, C, F, T)."""
        return dict(zip(self.output_names, self.session.run(None, {self.input_name: self._batch(x)})))
