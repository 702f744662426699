"""librosa-style functions (``mfcc(y, sr, n_mfcc=13)``) over the kit's numpy front-end.

Why wrappers and not librosa itself: models are trained on exactly what the device computes, and
the device runs ``deploy.runtime.features``. These helpers only build a ``FeatureConfig`` from
keyword arguments (its field names: ``window_ms``, ``hop_ms``, ``n_mels``, ``n_mfcc``, ``fmin``,
``fmax``, ``lpc_order``, ``delta_width``) and run the shared DSP over the whole signal, without
the crop/pad to ``duration_s`` that ``extract_features`` applies.
"""

from __future__ import annotations

import numpy as np

from deploy.runtime import features as _dsp
from deploy.runtime.errors import KitError
from deploy.runtime.features import FeatureConfig


def feature_config(kind: str, sr: int, n_samples: int | None = None, **cfg) -> FeatureConfig:
    """A ``FeatureConfig`` for ``kind`` at rate ``sr``; duration defaults to the signal length."""
    if "sample_rate" in cfg or "kind" in cfg:
        raise KitError("pass the rate as sr= and the feature kind by choosing the function")
    if "duration_s" not in cfg:
        cfg["duration_s"] = max(n_samples or sr, 1) / sr
    return FeatureConfig(kind=kind, sample_rate=int(sr), **cfg)


def _signal(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 1:
        raise KitError(f"expected a mono signal (1-D array), got shape {y.shape}")
    return y


def mfcc(y: np.ndarray, sr: int = 16000, **cfg) -> np.ndarray:
    """MFCC, shape (n_mfcc, len(y) // hop), float32."""
    y = _signal(y)
    return _dsp.mfcc(y, feature_config("mfcc", sr, len(y), **cfg)).astype(np.float32)


def fd_mfcc(y: np.ndarray, sr: int = 16000, **cfg) -> np.ndarray:
    """MFCC with delta and delta-delta, shape (3, n_mfcc, len(y) // hop), float32."""
    y = _signal(y)
    config = feature_config("fd_mfcc", sr, len(y), **cfg)
    coeffs = _dsp.mfcc(y, config)
    d1 = _dsp.delta(coeffs, config.delta_width)
    return np.stack([coeffs, d1, _dsp.delta(d1, config.delta_width)]).astype(np.float32)


def log_mel(y: np.ndarray, sr: int = 16000, **cfg) -> np.ndarray:
    """Mel power in dB, shape (n_mels, len(y) // hop), float32."""
    y = _signal(y)
    return _dsp.log_mel_spectrogram(y, feature_config("log_mel", sr, len(y), **cfg)).astype(np.float32)


def lpcc(y: np.ndarray, sr: int = 16000, **cfg) -> np.ndarray:
    """LPC cepstral coefficients, shape (n_mfcc, len(y) // hop), float32."""
    y = _signal(y)
    return _dsp.lpcc(y, feature_config("lpcc", sr, len(y), **cfg)).astype(np.float32)
