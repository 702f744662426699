"""The device runtime's streaming detector with firmware_sim computing the model: what the MCU would report.

Why reuse the runtime's stream and head: the firmware runs the same loop (a window every hop, the
bundle's linear head on the model's embedding, RecognizeCommands), so the only part that differs
on a microcontroller is the int8 arithmetic. ``SimModel`` puts firmware_sim behind the runtime's
``Classifier`` protocol; everything else (front-end, head, smoothing) is the runtime's own code.
"""

from __future__ import annotations

import os

import numpy as np

from deploy.runtime.bundle import Bundle
from deploy.runtime.classifier import HeadClassifier, softmax
from deploy.runtime.classify import KeywordClassifier
from deploy.runtime.coreset import Normalizer
from deploy.runtime.features import FeatureConfig
from deploy.runtime.recognizer import Detection, DetectorSettings
from deploy.runtime.stream import StreamScores, detect_stream

from .c_lower import int8_tflite_member
from .interpreter import Interpreter
from .model import Model, features_to_input, parse_model


class SimModel:
    """A ``Classifier`` whose logits and embeddings come from firmware_sim's integer interpreter."""

    def __init__(
        self, model: Model, classes: list[str], feature_config: FeatureConfig, normalizer: Normalizer | None
    ) -> None:
        self.interpreter = Interpreter(model)
        self.classes = list(classes)
        self.feature_config = feature_config
        self.normalizer = normalizer

    def _run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 3:
            x = x[None]
        return self.interpreter.run_float(features_to_input(self.interpreter.model, x))

    def embed(self, x: np.ndarray) -> np.ndarray:
        out = self._run(x)["embedding"]
        return out.reshape(out.shape[0], -1)

    def logits(self, x: np.ndarray) -> np.ndarray:
        out = self._run(x)["logits"]
        return out.reshape(out.shape[0], -1)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return softmax(self.logits(x))


class SimBundleClassifier(KeywordClassifier):
    """A bundle's front-end and head around firmware_sim running its int8 TFLite model."""

    def __init__(self, bundle: Bundle, where: str | os.PathLike = "bundle", model_name: str | None = None) -> None:
        self.bundle = bundle
        self.model_name = int8_tflite_member(bundle, str(where), model_name)
        model = parse_model(bundle.models[self.model_name], f"{where}:{self.model_name}")
        self.model = SimModel(model, bundle.classes, bundle.feature_config, bundle.normalizer)
        self.classifier = HeadClassifier(
            self.model,
            bundle.head_weight,
            bundle.head_bias,
            bundle.classes,
            bundle.feature_config,
            bundle.normalizer,
            name=self.model_name,
        )
        self._bind()


def simulate_stream(
    bundle_path: str | os.PathLike, waveform: np.ndarray, rate: int, settings: DetectorSettings | None = None
) -> tuple[list[Detection], StreamScores]:
    """Detections (and per-hop scores) of ``waveform`` as the bundle's int8 model on an MCU reports them."""
    bundle = Bundle.load(bundle_path)
    classifier = SimBundleClassifier(bundle, bundle_path)
    result = detect_stream(classifier, waveform, rate, settings or bundle.detector, return_scores=True)
    return result  # type: ignore[return-value]
