"""The coreset: the kit's central artifact (a few synthetic or selected feature maps per class).

It lives in the numpy-only runtime because the device needs it too, as replay memory for
on-device fine-tuning. Features are stored normalised (the model's input space) together with
the statistics that normalise raw features, so a model trained on it can be used on raw audio.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .artifact import Artifact, read_artifact, write_artifact
from .errors import KitError
from .features import FeatureConfig

CORESET_KIND = "coreset"


@dataclass
class Normalizer:
    """Per (channel, coefficient) standardisation, fitted on the training split only."""

    mean: np.ndarray  # (C, F)
    std: np.ndarray  # (C, F)

    @classmethod
    def fit(cls, features: np.ndarray) -> "Normalizer":
        """Statistics over clips and frames of ``features`` shaped (N, C, F, T)."""
        x = np.asarray(features, dtype=np.float64)
        mean = x.mean(axis=(0, 3))
        std = x.std(axis=(0, 3))
        return cls(mean.astype(np.float32), np.maximum(std, 1e-5).astype(np.float32))

    def transform(self, features: np.ndarray) -> np.ndarray:
        return ((features - self.mean[..., None]) / self.std[..., None]).astype(np.float32)

    def inverse(self, features: np.ndarray) -> np.ndarray:
        return (features * self.std[..., None] + self.mean[..., None]).astype(np.float32)


@dataclass
class Coreset:
    """N feature maps per class with their labels and everything needed to reproduce or use them.

    ``labels`` are class indices (N,) or soft label vectors (N, K).
    """

    features: np.ndarray  # (N, C, F, T), normalised, float32 in memory
    labels: np.ndarray
    classes: list[str]
    feature_config: FeatureConfig
    normalizer: Normalizer
    method: str
    params: dict = field(default_factory=dict)
    seed: int = 0
    source: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    created: str = ""

    def __post_init__(self) -> None:
        self.features = np.asarray(self.features, dtype=np.float32)
        self.labels = np.asarray(self.labels)
        if self.features.ndim != 4:
            raise KitError(f"coreset features must be (N, C, F, T), got shape {self.features.shape}")
        if len(self.labels) != len(self.features):
            raise KitError(f"coreset has {len(self.features)} samples but {len(self.labels)} labels")
        if tuple(self.features.shape[1:3]) != tuple(self.feature_config.shape[:2]):
            raise KitError(
                f"coreset feature shape {self.features.shape[1:]} does not match its feature config "
                f"{self.feature_config.shape}"
            )

    @property
    def hard_labels(self) -> np.ndarray:
        return self.labels.argmax(axis=1) if self.labels.ndim == 2 else self.labels.astype(np.int64)

    @property
    def ipc(self) -> int:
        counts = np.bincount(self.hard_labels, minlength=len(self.classes))
        return int(counts.max()) if len(counts) else 0

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.hard_labels, minlength=len(self.classes))
        return {name: int(n) for name, n in zip(self.classes, counts)}

    # Serialisation ------------------------------------------------------------------------------
    def to_artifact(self, dtype: str = "float16") -> Artifact:
        if dtype not in ("float16", "float32"):
            raise KitError(f"coreset storage dtype must be float16 or float32, not {dtype}")
        arrays = {
            "features": self.features.astype(dtype),
            "labels": self.labels.astype(np.float32 if self.labels.ndim == 2 else np.int64),
            "norm_mean": self.normalizer.mean.astype(np.float32),
            "norm_std": self.normalizer.std.astype(np.float32),
        }
        meta = {
            "classes": list(self.classes),
            "feature_config": self.feature_config.to_dict(),
            "method": self.method,
            "params": self.params,
            "seed": int(self.seed),
            "source": self.source,
            "extra": self.extra,
            "storage_dtype": dtype,
            "n_samples": int(len(self.features)),
            "ipc": self.ipc,
        }
        return Artifact(kind=CORESET_KIND, meta=meta, arrays=arrays, created=self.created)

    def save(self, path: str | os.PathLike, dtype: str = "float16") -> Path:
        return write_artifact(path, self.to_artifact(dtype))

    @classmethod
    def from_artifact(cls, artifact: Artifact, path: str | os.PathLike = "<memory>") -> "Coreset":
        try:
            meta, arrays = artifact.meta, artifact.arrays
            coreset = cls(
                features=arrays["features"],
                labels=arrays["labels"],
                classes=list(meta["classes"]),
                feature_config=FeatureConfig.from_dict(meta["feature_config"]),
                normalizer=Normalizer(arrays["norm_mean"], arrays["norm_std"]),
                method=meta["method"],
                params=meta.get("params", {}),
                seed=meta.get("seed", 0),
                source=meta.get("source", {}),
                extra=meta.get("extra", {}),
                created=artifact.created,
            )
        except KeyError as exc:
            raise KitError(f"{path}: coreset is missing {exc}") from None
        except KitError as exc:
            raise KitError(f"{path}: {exc}") from None
        if coreset.hard_labels.min(initial=0) < 0 or coreset.hard_labels.max(initial=0) >= len(coreset.classes):
            raise KitError(f"{path}: coreset labels fall outside its {len(coreset.classes)} classes")
        return coreset

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Coreset":
        """Load and verify (checksums, version, shapes) a coreset file."""
        return cls.from_artifact(read_artifact(path, kind=CORESET_KIND), path)
