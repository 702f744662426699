"""A saved ``.kit`` model behind the edge runtime's ``Classifier`` protocol (``deploy/runtime/classifier.py``).

Why: ``kit classify`` should work on a freshly trained model before it is exported, through the
very same ``KeywordClassifier`` front-end code as the ONNX path, so the two can be compared.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from deploy.runtime.classifier import MetadataClassifier
from deploy.runtime.errors import KitError
from deploy.runtime.features import FeatureConfig
from deploy.runtime.inference import ModelMetadata

from .artifact import load_model


class TorchPredictor(MetadataClassifier):
    """Load a model artifact; ``logits(x)`` / ``predict(x)`` -> logits, ``embed(x)`` -> embeddings (numpy).

    Classes, front-end and normaliser come from the artifact's meta, like an exported file's."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.model, meta = load_model(self.path)
        if "classes" not in meta or "feature_config" not in meta:
            raise KitError(f"{self.path}: model does not record its classes and feature configuration")
        self.metadata = ModelMetadata(
            classes=list(meta["classes"]),
            feature_config=FeatureConfig.from_dict(meta["feature_config"]),
            normalizer=meta["normalizer"],
            arch=meta["arch"],
            in_shape=tuple(meta["in_shape"]),  # type: ignore[arg-type]
        )

    def _tensor(self, x: np.ndarray) -> torch.Tensor:
        x = np.asarray(x, dtype=np.float32)
        return torch.from_numpy(x[None] if x.ndim == 3 else x)

    @torch.no_grad()
    def logits(self, x: np.ndarray) -> np.ndarray:
        return self.model(self._tensor(x)).numpy()

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Logits, under the name the runtime models also offer."""
        return self.logits(x)

    @torch.no_grad()
    def embed(self, x: np.ndarray) -> np.ndarray:
        return self.model.embed(self._tensor(x)).numpy()
