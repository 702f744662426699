"""``kit.pipeline.coreset_features_for``: a coreset file brought into a dataset's feature space, or refused."""

from __future__ import annotations

import numpy as np
import pytest

from deploy.runtime.coreset import Coreset, Normalizer
from deploy.runtime.errors import KitError
from deploy.runtime.features import FeatureConfig
from kit.features import FeatureSet
from kit.pipeline import coreset_features_for


def _feature_set(config: FeatureConfig, mean: float, std: float) -> FeatureSet:
    shape = config.shape
    norm = Normalizer(np.full(shape[:2], mean, np.float32), np.full(shape[:2], std, np.float32))
    empty = np.zeros((0, *shape), np.float32)
    return FeatureSet(
        ["a", "b"], config, norm, empty, np.zeros(0, np.int64), np.zeros(0, str), empty, np.zeros(0, np.int64)
    )


def _coreset(config: FeatureConfig, classes: list[str], mean: float, std: float, raw: np.ndarray) -> Coreset:
    norm = Normalizer(np.full(config.shape[:2], mean, np.float32), np.full(config.shape[:2], std, np.float32))
    return Coreset(norm.transform(raw).astype(np.float32), np.array([0, 1]), classes, config, norm, "herding")


def test_features_are_renormalised_to_the_datasets_statistics() -> None:
    config = FeatureConfig(kind="fd_mfcc", sample_rate=8000)
    raw = np.random.default_rng(0).normal(3.0, 2.0, (2, *config.shape)).astype(np.float32)
    fs = _feature_set(config, mean=1.0, std=4.0)
    x, y = coreset_features_for(_coreset(config, ["a", "b"], 3.0, 2.0, raw), fs, "c.kit")
    np.testing.assert_allclose(x, (raw - 1.0) / 4.0, rtol=1e-5, atol=1e-5)  # the dataset's normalisation
    assert x.dtype == np.float32 and list(y) == [0, 1]


def test_other_classes_or_front_end_are_refused_naming_the_file() -> None:
    config = FeatureConfig(kind="fd_mfcc", sample_rate=8000)
    raw = np.zeros((2, *config.shape), np.float32)
    fs = _feature_set(config, 0.0, 1.0)
    with pytest.raises(KitError, match=r"^c\.kit: coreset classes"):
        coreset_features_for(_coreset(config, ["b", "a"], 0.0, 1.0, raw), fs, "c.kit")
    other = FeatureConfig(kind="mfcc", sample_rate=8000)
    with pytest.raises(KitError, match=r"^d\.kit: coreset front-end \(mfcc"):
        coreset_features_for(
            _coreset(other, ["a", "b"], 0.0, 1.0, np.zeros((2, *other.shape), np.float32)), fs, "d.kit"
        )
