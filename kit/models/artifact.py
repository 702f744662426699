"""Trained models on disk: a kit artifact of kind ``model`` (weights as numpy arrays, no pickles).

Why not ``torch.save``: a pickle executes code when loaded, and a model file is something users
download and share. Here the network is rebuilt from the registry using the recorded
``arch``/``arch_kwargs``/``in_shape`` and the weights are copied in from ``param/<name>`` arrays;
the container's checksums refuse a truncated or edited file. Everything needed to use the model
on raw audio travels with it: class names, the feature configuration and the normaliser.

Stored meta (JSON): ``arch``, ``arch_kwargs``, ``in_shape``, ``n_classes``, ``classes``,
``feature_config`` (dict), ``train_config``, ``seed``, ``metrics``, ``source`` and any extra keys
the caller passes; arrays: ``param/<state-dict key>``, ``norm_mean``, ``norm_std``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deploy.runtime.artifact import Artifact, read_artifact, write_artifact
from deploy.runtime.coreset import Normalizer
from deploy.runtime.errors import KitError
from deploy.runtime.features import FeatureConfig

from .base import KitModel
from .registry import rebuild_model

MODEL_KIND = "model"
PARAM_PREFIX = "param/"
_RESERVED = ("arch", "arch_kwargs", "in_shape", "n_classes", "state_keys")


def _jsonable(value: Any) -> Any:
    """Turn numpy scalars/arrays and tuples into plain JSON types (meta is hashed as JSON)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _normalizer_arrays(normalizer: Any) -> dict[str, np.ndarray]:
    if normalizer is None:
        return {}
    if isinstance(normalizer, Normalizer):
        mean, std = normalizer.mean, normalizer.std
    elif isinstance(normalizer, dict):
        mean, std = normalizer["mean"], normalizer["std"]
    else:
        raise TypeError(f"normalizer must be a Normalizer or a dict with mean/std, not {type(normalizer).__name__}")
    return {"norm_mean": np.asarray(mean, dtype=np.float32), "norm_std": np.asarray(std, dtype=np.float32)}


def saveable_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """``load_model``'s meta without the keys ``save_model`` takes from the model itself (architecture,
    shapes, weight names), so a loaded model changed in place (QAT, a fine-tune) can be saved again."""
    return {key: value for key, value in meta.items() if key not in _RESERVED}


def save_model(path: str | os.PathLike, model: KitModel, meta: dict[str, Any]) -> Path:
    """Write ``model`` and its ``meta`` (classes, feature_config, normalizer, train_config, seed,
    metrics, source, ...) as a model artifact, atomically.

    ``meta["feature_config"]`` may be a FeatureConfig or its dict; ``meta["normalizer"]`` a
    Normalizer, a {"mean", "std"} dict or None (then the model expects already-normalised input).
    """
    meta = dict(meta)
    clash = [key for key in _RESERVED if key in meta]
    if clash:
        raise ValueError(f"meta keys {clash} are taken from the model itself")
    arrays = _normalizer_arrays(meta.pop("normalizer", None))
    config = meta.get("feature_config")
    if isinstance(config, FeatureConfig):
        meta["feature_config"] = config.to_dict()
    classes = meta.get("classes")
    if classes is not None and len(classes) != model.n_classes:
        raise ValueError(f"meta has {len(classes)} classes but the model has {model.n_classes} outputs")
    state = model.state_dict()
    for name, tensor in state.items():
        arrays[PARAM_PREFIX + name] = tensor.detach().cpu().numpy()
    full_meta = {
        **_jsonable(meta),
        **_jsonable(model.spec),
        "state_keys": list(state),
        "has_normalizer": bool(arrays),
    }  # so a removed normaliser is refused, not silently skipped
    return write_artifact(path, Artifact(kind=MODEL_KIND, meta=full_meta, arrays=arrays))


def _stored_normalizer(
    path: str | os.PathLike, arrays: dict[str, np.ndarray], meta: dict[str, Any]
) -> Normalizer | None:
    """The model's normaliser: both arrays or neither (and both when the model says it has one), shaped (C, F)."""
    present = [name for name in ("norm_mean", "norm_std") if name in arrays]
    wanted = meta.get("has_normalizer")  # absent in files written before it was recorded
    if (len(present) == 1) or (wanted is True and not present) or (wanted is False and present):
        raise KitError(
            f"{path}: model normaliser is incomplete (arrays {present or 'none'}, "
            f"has_normalizer={wanted}); the file was edited"
        )
    if not present:
        return None
    mean, std = arrays["norm_mean"].astype(np.float32), arrays["norm_std"].astype(np.float32)
    config = meta.get("feature_config")
    want = tuple(FeatureConfig.from_dict(config).shape[:2]) if isinstance(config, dict) else mean.shape
    if mean.shape != want or std.shape != want:
        raise KitError(f"{path}: model normaliser has shape {mean.shape}/{std.shape}, the feature config needs {want}")
    return Normalizer(mean, std)


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[KitModel, dict[str, Any]]:
    """Read, verify and rebuild a model (in eval mode).

    Returns ``(model, meta)``: ``meta`` is the stored JSON meta plus ``normalizer`` (a Normalizer,
    or None) and ``feature_config`` kept as a dict (``FeatureConfig.from_dict`` it to use it).
    """
    artifact = read_artifact(path, kind=MODEL_KIND)
    meta = dict(artifact.meta)
    try:
        model = rebuild_model(meta)
    except KitError as exc:
        raise KitError(f"{path}: {exc}") from None
    state_keys = meta.get("state_keys", [])
    expected = model.state_dict()
    if set(state_keys) != set(expected):
        missing, extra = sorted(set(expected) - set(state_keys)), sorted(set(state_keys) - set(expected))
        raise KitError(
            f"{path}: weights do not fit architecture '{meta['arch']}' (missing {missing[:3]}, extra {extra[:3]})"
        )
    state = {}
    for name, reference in expected.items():
        array = artifact.arrays.get(PARAM_PREFIX + name)
        if array is None:
            raise KitError(f"{path}: weight '{name}' is missing")
        if reference.dim() == 0 and array.shape == (1,):
            array = array.reshape(())  # the container stores 0-d arrays (BatchNorm step counters) as (1,)
        if tuple(array.shape) != tuple(reference.shape):
            raise KitError(
                f"{path}: weight '{name}' has shape {array.shape}, architecture expects {tuple(reference.shape)}"
            )
        state[name] = torch.from_numpy(np.array(array, copy=True)).to(reference.dtype)
    model.load_state_dict(state)
    model.to(device).eval()
    meta["normalizer"] = _stored_normalizer(path, artifact.arrays, meta)
    return model, meta
