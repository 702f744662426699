"""Is this the same feature space? One rule, one tolerance, for every pairing in the kit.

Why one module: a coreset, a model, a bundle and a data set each carry a front-end
(``FeatureConfig``) and a normaliser fitted on a training split. Pairing two of them (training a
model on a coreset, calibrating an export, building a bundle, scoring a reused coreset) is only
meaningful when they describe the same input space. The kit used to check this in five places
with four tolerances; the device, the exporters and the benchmarks now all ask this module.

Rules:
- classes must match in name and order (when both sides record them);
- front-ends must have the same ``fingerprint()`` (every field that changes a feature value);
- normalisers are "the same" when mean and std agree within ``NORMALIZER_ATOL`` (float32 round
  trips through JSON/npy stay far inside it; a normaliser fitted on another split does not).
  Callers choose what a different normaliser means: ``renormalize`` maps features between the
  two (a coreset re-used with a subset of its split), or ``require_same_space`` refuses.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from .coreset import Normalizer
from .errors import KitError
from .features import FeatureConfig

#: |mean_a - mean_b| and |std_a - std_b| allowed for two normalisers to count as one.
NORMALIZER_ATOL = 1e-5


@dataclass(frozen=True)
class FeatureSpace:
    """What an input tensor means: class order, front-end and normaliser (None: already normalised)."""

    classes: tuple[str, ...] | None
    feature_config: FeatureConfig | None
    normalizer: Normalizer | None

    @classmethod
    def of(cls, thing: Any) -> "FeatureSpace":
        """The space of a Coreset, FeatureSet, model meta dict, bundle or runtime classifier."""
        if isinstance(thing, FeatureSpace):
            return thing
        if isinstance(thing, dict):
            classes, config, norm = thing.get("classes"), thing.get("feature_config"), thing.get("normalizer")
        else:
            classes = getattr(thing, "classes", None)
            config = getattr(thing, "feature_config", None) or getattr(thing, "config", None)
            norm = getattr(thing, "normalizer", None)
        if isinstance(config, dict):
            config = FeatureConfig.from_dict(config)
        if isinstance(norm, dict):
            norm = Normalizer(np.asarray(norm["mean"], np.float32), np.asarray(norm["std"], np.float32))
        return cls(tuple(classes) if classes is not None else None, config, norm)


def same_normalizer(a: Normalizer | None, b: Normalizer | None) -> bool:
    """Both absent, or mean and std equal within ``NORMALIZER_ATOL``."""
    if a is None or b is None:
        return a is None and b is None
    return bool(
        np.shape(a.mean) == np.shape(b.mean)
        and np.allclose(a.mean, b.mean, rtol=0.0, atol=NORMALIZER_ATOL)
        and np.allclose(a.std, b.std, rtol=0.0, atol=NORMALIZER_ATOL)
    )


def same_front_end(a: FeatureConfig | None, b: FeatureConfig | None) -> bool:
    return a is not None and b is not None and a.fingerprint() == b.fingerprint()


def require_same_space(
    expected: Any,
    got: Any,
    where: str | os.PathLike,
    *,
    expected_name: str = "the model's",
    what: str = "coreset",
    normalizer: bool = True,
    classes: bool = True,
) -> None:
    """Raise a one-line ``KitError`` led by ``where`` unless ``got`` lives in ``expected``'s space.

    ``what`` names ``got`` in the message ("coreset", "bundle", ...). ``normalizer=False`` checks classes
    and front-end only (for callers that ``renormalize``).
    """
    what = f"{what} " if what else ""
    want, have = FeatureSpace.of(expected), FeatureSpace.of(got)
    if classes and want.classes is not None and have.classes is not None and want.classes != have.classes:
        raise KitError(f"{where}: {what}classes {list(have.classes)} differ from {expected_name} {list(want.classes)}")
    if want.feature_config is None or have.feature_config is None:
        raise KitError(f"{where}: {what}records no front-end, so its features cannot be matched with {expected_name}")
    if not same_front_end(want.feature_config, have.feature_config):
        raise KitError(
            f"{where}: {what}front-end ({have.feature_config.kind}, shape {have.feature_config.shape}) differs from "
            f"{expected_name} ({want.feature_config.kind}, shape {want.feature_config.shape}); "
            "use features of one front-end"
        )
    if normalizer and not same_normalizer(want.normalizer, have.normalizer):
        raise KitError(
            f"{where}: {what}normaliser differs from {expected_name}; its features are not in that input space "
            "(made from another split or data set?)"
        )


def renormalize(x: np.ndarray, source: Normalizer | None, target: Normalizer | None) -> np.ndarray:
    """Features normalised with ``source`` re-expressed under ``target`` (a no-op when they are the same)."""
    x = np.asarray(x, dtype=np.float32)
    if same_normalizer(source, target) or source is None or target is None:
        return np.ascontiguousarray(x)
    return np.ascontiguousarray(target.transform(source.inverse(x)), dtype=np.float32)
