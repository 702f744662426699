"""One rule for "same feature space": classes, front-end fingerprint, normaliser within one tolerance."""

from __future__ import annotations

import numpy as np
import pytest

from deploy.runtime.compat import NORMALIZER_ATOL, FeatureSpace, renormalize, require_same_space, same_normalizer
from deploy.runtime.coreset import Normalizer
from deploy.runtime.errors import KitError
from deploy.runtime.features import FeatureConfig


def _norm(shift: float = 0.0) -> Normalizer:
    return Normalizer(np.full((1, 40), 1.0 + shift, np.float32), np.full((1, 40), 2.0, np.float32))


def test_normalisers_within_the_tolerance_are_one_and_beyond_it_are_not() -> None:
    assert same_normalizer(_norm(), _norm(NORMALIZER_ATOL / 2))
    assert not same_normalizer(_norm(), _norm(NORMALIZER_ATOL * 10))
    assert same_normalizer(None, None) and not same_normalizer(_norm(), None)


def test_renormalize_maps_between_spaces_and_leaves_one_space_alone() -> None:
    raw = np.random.default_rng(0).normal(size=(3, 1, 40, 5)).astype(np.float32)
    a, b = _norm(0.0), _norm(3.0)
    x = renormalize(a.transform(raw), a, b)
    np.testing.assert_allclose(b.inverse(x), raw, atol=1e-5)
    same = a.transform(raw)
    assert np.array_equal(renormalize(same, a, _norm(NORMALIZER_ATOL / 4)), same)


def test_a_mismatch_is_one_line_naming_the_file_and_what_differs() -> None:
    config = FeatureConfig(kind="log_mel", sample_rate=16000)
    model = {"classes": ["a", "b"], "feature_config": config.to_dict(), "normalizer": _norm()}
    require_same_space(model, FeatureSpace(("a", "b"), config, _norm(NORMALIZER_ATOL / 2)), "c.kit")
    cases = [
        (FeatureSpace(("b", "a"), config, _norm()), "classes"),
        (FeatureSpace(("a", "b"), FeatureConfig(kind="mfcc", sample_rate=16000), _norm()), "front-end (mfcc"),
        (FeatureSpace(("a", "b"), config, _norm(0.5)), "normaliser differs"),
    ]
    for got, needle in cases:
        with pytest.raises(KitError) as info:
            require_same_space(model, got, "c.kit")
        message = str(info.value)
        assert message.startswith("c.kit: coreset ") and needle in message and "\n" not in message
