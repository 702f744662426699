"""The ``Classifier`` protocol: what every model kind offers the stream, the CLI and fine-tuning.

Why a protocol: the same window of normalised features is scored by an ONNX file, a TFLite file,
a bundle (a model file's embedding plus the bundle's linear head) and, on the training machine, a
PyTorch model. Code that only needs "scores and embeddings for a batch of windows, plus the
front-end that makes those windows" (``stream.py``, ``live.py``, ``classify.py``) is typed
against this protocol instead of testing attributes with ``hasattr``.

Implementations:

- ``inference.OnnxModel`` and ``tflite_model.TfliteModel`` (via ``KitOutputs``, which mixes in
  ``MetadataClassifier``: classes, front-end and normaliser from the file's kit metadata);
- ``kit.models.TorchPredictor`` (a saved ``.kit`` model, also through ``MetadataClassifier``);
- ``HeadClassifier``: any of those used for its embedding, with a separate linear head (bundles);
- ``classify.KeywordClassifier`` wraps one of the above and adds the waveform front-end
  (``features(y, rate)``), which makes it a ``WaveformClassifier``.

Numpy only, like the rest of ``deploy/runtime``.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from .coreset import Normalizer
from .errors import KitError
from .features import FeatureConfig, extract_features, resample


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (stable for large logits)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class Classifier(Protocol):
    """Scores and embeddings for a batch of normalised feature windows (C, F, T) or (N, C, F, T)."""

    @property
    def classes(self) -> list[str]: ...

    @property
    def feature_config(self) -> FeatureConfig: ...

    @property
    def normalizer(self) -> Normalizer | None: ...

    def logits(self, x: np.ndarray) -> np.ndarray:
        """(N, K) class logits."""
        ...

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """(N, K) class probabilities."""
        ...

    def embed(self, x: np.ndarray) -> np.ndarray:
        """(N, D) penultimate embeddings (what a fine-tuned head is fitted on)."""
        ...


class WaveformClassifier(Classifier, Protocol):
    """A ``Classifier`` that also turns raw audio into its normalised feature windows."""

    def features(self, y: np.ndarray, rate: int) -> np.ndarray:
        """Normalised feature map (C, F, T) of a mono waveform at ``rate`` Hz."""
        ...


def window_features(y: np.ndarray, rate: int, config: FeatureConfig, normalizer: Normalizer | None) -> np.ndarray:
    """The training front-end on a mono waveform: resample to ``config``'s rate, extract, normalise."""
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1 or y.size == 0:
        raise KitError(f"expected a non-empty mono waveform, got shape {y.shape}")
    if int(rate) != config.sample_rate:
        y = resample(y, int(rate), config.sample_rate)
    x = extract_features(y, config)
    return normalizer.transform(x[None])[0] if normalizer is not None else x


class MetadataClassifier:
    """``Classifier`` members for a model that carries kit metadata (``ModelMetadata``) and has ``logits``.

    Why a mixin: ONNX, TFLite and PyTorch models differ only in how they compute a batch; their
    class names, front-end and normaliser all come from the same metadata record. A model file
    without that record (exported elsewhere) is refused when a classifier member is first needed.
    """

    metadata: Any  # ModelMetadata
    path: Any

    def _required(self) -> Any:
        meta = self.metadata
        if not meta.classes or meta.feature_config is None:
            raise KitError(
                f"{getattr(self, 'path', 'model')}: model lacks kit metadata (classes, feature config); "
                "export it with `kit export`"
            )
        return meta

    @property
    def classes(self) -> list[str]:
        return list(self._required().classes)

    @property
    def feature_config(self) -> FeatureConfig:
        return self._required().feature_config

    @property
    def normalizer(self) -> Normalizer | None:
        return self.metadata.normalizer

    def logits(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - provided by the model class
        raise NotImplementedError

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return softmax(self.logits(x))


class HeadClassifier:
    """A model's embedding followed by a separate linear head: ``logits = embed(x) @ W.T + b``.

    Why separate: a bundle stores its head outside the model files so an on-device fine-tune only
    replaces ``W`` and ``b``. ``model`` is any ``Classifier`` (only its ``embed`` is used); the
    class names, front-end and normaliser are the bundle's, passed in explicitly.
    """

    def __init__(
        self,
        model: Classifier,
        weight: np.ndarray,
        bias: np.ndarray,
        classes: list[str],
        feature_config: FeatureConfig,
        normalizer: Normalizer | None,
        name: str = "model",
    ) -> None:
        self.model = model
        self.name = name
        self.classes = [str(c) for c in classes]
        self.feature_config = feature_config
        self.normalizer = normalizer
        self._weight_t = np.ascontiguousarray(np.asarray(weight, dtype=np.float32).T)
        self._bias = np.asarray(bias, dtype=np.float32)

    def embed(self, x: np.ndarray) -> np.ndarray:
        z = np.asarray(self.model.embed(x), dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self._weight_t.shape[0]:
            raise KitError(
                f"bundle model '{self.name}' outputs embeddings of shape {z.shape}, "
                f"the head expects {self._weight_t.shape[0]} dimensions"
            )
        return z

    def logits(self, x: np.ndarray) -> np.ndarray:
        return self.embed(x) @ self._weight_t + self._bias

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return softmax(self.logits(x))
