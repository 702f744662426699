"""Keyword classification of raw audio on the device: WAV -> features -> model -> top-k.

Why one class for the whole path: the device-side steps (resample to the model's rate, crop/pad,
``extract_features``, normalise, run, softmax) must happen in exactly this order with exactly the
training front-end; bundling them keeps applications from re-implementing any of it. This is the
only place a waveform becomes top-k labels: a bare ``.onnx`` / ``.tflite`` model, a bundle
(``bundle.BundleClassifier``, its head on the model's embedding) and a PyTorch-backed model on
the training machine all come through here, as a ``Classifier`` (``classifier.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .classifier import Classifier, softmax, window_features
from .errors import KitError
from .models import open_model
from .wavio import read_wav

__all__ = ["KeywordClassifier", "softmax"]


class KeywordClassifier:
    """Top-k keywords for a waveform or a WAV file, with the model's own front-end.

    ``model``: an ``.onnx`` / ``.tflite`` path, or any ``Classifier``. The result is itself a
    ``WaveformClassifier`` (scores, embeddings, and ``features(y, rate)``), which is what the
    stream recogniser takes.
    """

    def __init__(self, model: str | os.PathLike | Classifier, threads: int = 1) -> None:
        self.model = open_model(model, threads=threads) if isinstance(model, (str, os.PathLike)) else model
        self.classifier: Classifier = self.model
        self._bind()

    def _bind(self) -> None:
        """Take the class names and front-end from ``self.classifier`` (refused if it lacks them)."""
        self.classes: list[str] = list(self.classifier.classes)
        self.feature_config = self.classifier.feature_config
        self.normalizer = self.classifier.normalizer

    def features(self, y: np.ndarray, rate: int) -> np.ndarray:
        """Normalised feature map (C, F, T) of a mono waveform at ``rate`` Hz (resampled if needed)."""
        return window_features(y, rate, self.feature_config, self.normalizer)

    def embed(self, x: np.ndarray) -> np.ndarray:
        """Embeddings (N, D) of normalised features (C, F, T) or (N, C, F, T)."""
        return self.classifier.embed(x)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Logits (N, K) of normalised features."""
        return self.classifier.logits(x)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities (N, K) of normalised features."""
        return self.classifier.predict_proba(x)

    def probabilities(self, y: np.ndarray, rate: int) -> np.ndarray:
        """Class probabilities (K,) for one clip."""
        return self.predict_proba(self.features(y, rate)[None])[0]

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
