"""Keyword classification of raw audio on the device: WAV -> features -> model -> top-k.

Why one class for the whole path: the device-side steps (resample to the model's rate, crop/pad,
``extract_features``, normalise, run, softmax) must happen in exactly this order with exactly the
training front-end; bundling them keeps applications from re-implementing any of it.
The model can be an ``.onnx`` or ``.tflite`` path or any object with ``predict(x)`` and a ``metadata``
(``ModelMetadata``), e.g. a PyTorch-backed predictor on the training machine.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .errors import KitError
from .features import extract_features, resample
from .models import open_model
from .wavio import read_wav


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (stable for large logits)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class KeywordClassifier:
    """Top-k keywords for a waveform or a WAV file, with the model's own front-end."""

    def __init__(self, model: str | os.PathLike | Any, threads: int = 1) -> None:
        self.model = open_model(model, threads=threads) if isinstance(model, (str, os.PathLike)) else model
        meta = self.model.metadata
        name = getattr(self.model, "path", "model")
        if not meta.classes or meta.feature_config is None:
            raise KitError(f"{name}: model lacks kit metadata (classes, feature config); export it with `kit export`")
        self.classes: list[str] = list(meta.classes)
        self.feature_config = meta.feature_config
        self.normalizer = meta.normalizer

    def features(self, y: np.ndarray, rate: int) -> np.ndarray:
        """Normalised feature map (C, F, T) of a mono waveform at ``rate`` Hz."""
        y = np.asarray(y, dtype=np.float32)
        if y.ndim != 1 or y.size == 0:
            raise KitError(f"expected a non-empty mono waveform, got shape {y.shape}")
        if rate != self.feature_config.sample_rate:
            y = resample(y, rate, self.feature_config.sample_rate)
        x = extract_features(y, self.feature_config)
        return self.normalizer.transform(x[None])[0] if self.normalizer is not None else x

    def probabilities(self, y: np.ndarray, rate: int) -> np.ndarray:
        """Class probabilities (K,) for one clip."""
        return softmax(self.model.predict(self.features(y, rate)[None])[0])

    def classify_waveform(self, y: np.ndarray, rate: int, top_k: int = 3) -> list[tuple[str, float]]:
        """The ``top_k`` (label, probability) pairs, most probable first."""
        if top_k < 1:
            raise KitError(f"top-k must be at least 1, got {top_k}")
        probs = self.probabilities(y, rate)
        order = np.argsort(-probs, kind="stable")[:top_k]
        return [(self.classes[i], float(probs[i])) for i in order]

    def classify_file(self, path: str | os.PathLike, top_k: int = 3) -> list[tuple[str, float]]:
        """Read a WAV file (any rate, channels averaged) and classify it."""
        y, rate = read_wav(Path(path))
        return self.classify_waveform(y, rate, top_k)
