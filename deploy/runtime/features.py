"""Audio features in plain numpy: MFCC, FD-MFCC, log-mel and LPCC.

Why numpy and not librosa: the same code runs in training (``kit.features``) and on the device,
where librosa and scipy are not installed, so the model sees identical features in both places.
The DSP follows librosa's conventions (Slaney mel scale and filter normalisation, orthonormal
DCT-II of dB mel power) and is tested against librosa on real recordings.

Framing is streaming-friendly: the signal is left-padded by half a window and frame ``t`` starts
at ``t * hop``, so a clip of ``n`` samples has exactly ``n // hop`` frames and a live stream can
compute frames incrementally.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, fields, replace
from functools import lru_cache

import numpy as np

from .errors import KitError

FEATURE_KINDS = ("fd_mfcc", "mfcc", "log_mel", "lpcc")
_LOG_FLOOR = 1e-10


@dataclass(frozen=True)
class FeatureConfig:
    """Every parameter that shapes a feature map; written into every artifact the kit makes.

    The defaults reproduce the configuration measured on this project's machines: 13 MFCC plus
    delta and delta-delta over 1-s clips, 32-ms windows, 15.625-ms hop (64 frames per second).
    """

    kind: str = "fd_mfcc"
    sample_rate: int = 16000
    duration_s: float = 1.0
    window_ms: float = 32.0
    hop_ms: float = 15.625
    n_mels: int = 40
    n_mfcc: int = 13
    fmin: float = 20.0
    fmax: float | None = None
    lpc_order: int = 16
    delta_width: int = 9

    def __post_init__(self) -> None:
        if self.kind not in FEATURE_KINDS:
            raise KitError(f"unknown feature kind '{self.kind}' (choose from {', '.join(FEATURE_KINDS)})")
        if self.sample_rate <= 0 or self.duration_s <= 0 or self.hop_ms <= 0 or self.window_ms <= 0:
            raise KitError(f"feature config has a non-positive rate, duration, window or hop: {self}")
        if self.hop_length > self.win_length:
            raise KitError("feature config: hop must not exceed the window")
        if self.n_mfcc > self.n_mels:
            raise KitError(f"feature config: n_mfcc ({self.n_mfcc}) exceeds n_mels ({self.n_mels})")
        if self.delta_width < 3 or self.delta_width % 2 == 0:
            raise KitError("feature config: delta_width must be odd and >= 3")

    # Derived sizes -------------------------------------------------------------------------
    @property
    def n_samples(self) -> int:
        return int(round(self.sample_rate * self.duration_s))

    @property
    def win_length(self) -> int:
        return int(round(self.sample_rate * self.window_ms / 1000.0))

    @property
    def hop_length(self) -> int:
        return int(round(self.sample_rate * self.hop_ms / 1000.0))

    @property
    def n_fft(self) -> int:
        return 1 << (self.win_length - 1).bit_length()

    @property
    def n_frames(self) -> int:
        return self.n_samples // self.hop_length

    @property
    def upper_hz(self) -> float:
        return float(self.fmax) if self.fmax else self.sample_rate / 2.0

    @property
    def shape(self) -> tuple[int, int, int]:
        """(channels, coefficients, frames) of one clip's feature map."""
        channels = 3 if self.kind == "fd_mfcc" else 1
        height = self.n_mels if self.kind == "log_mel" else self.n_mfcc
        return channels, height, self.n_frames

    # Serialisation ---------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "FeatureConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise KitError(f"feature config has unknown fields {sorted(unknown)} (written by a newer kit?)")
        return cls(**data)

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def with_(self, **changes) -> "FeatureConfig":
        return replace(self, **changes)


# Waveform conditioning --------------------------------------------------------------------------
def fix_length(y: np.ndarray, n_samples: int) -> np.ndarray:
    """Crop to the loudest ``n_samples`` window, or centre-pad with zeros.

    Cropping to the loudest window keeps the word in clips with long leading silence; centring
    short clips keeps time-shift augmentation symmetric.
    """
    y = np.asarray(y, dtype=np.float32)
    if len(y) == n_samples:
        return y
    if len(y) < n_samples:
        left = (n_samples - len(y)) // 2
        return np.pad(y, (left, n_samples - len(y) - left))
    energy = np.concatenate([[0.0], np.cumsum(y.astype(np.float64) ** 2)])
    window_energy = energy[n_samples:] - energy[:-n_samples]
    start = int(np.argmax(window_energy))
    return y[start : start + n_samples]


def resample(y: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Band-limited resampling by FFT; numpy-only so the device can read files at any rate."""
    if orig_rate == target_rate:
        return np.asarray(y, dtype=np.float32)
    n_out = int(round(len(y) * target_rate / orig_rate))
    spectrum = np.fft.rfft(np.asarray(y, dtype=np.float64))
    n_keep = n_out // 2 + 1
    if n_keep <= len(spectrum):
        spectrum = spectrum[:n_keep]
    else:
        spectrum = np.pad(spectrum, (0, n_keep - len(spectrum)))
    out = np.fft.irfft(spectrum, n=n_out) * (n_out / len(y))
    return out.astype(np.float32)


# Spectral building blocks (cached per configuration) ----------------------------------------------
def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above (librosa's default)."""
    hz = np.asarray(hz, dtype=np.float64)
    f_sp = 200.0 / 3
    mel = hz / f_sp
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, math.log(6.4) / 27.0
    return np.where(hz >= min_log_hz, min_log_mel + np.log(np.maximum(hz, 1e-12) / min_log_hz) / logstep, mel)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, math.log(6.4) / 27.0
    return np.where(mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)), f_sp * mel)


@lru_cache(maxsize=32)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Triangular, area-normalised mel filters, shape (n_mels, n_fft // 2 + 1)."""
    fft_freqs = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    mel_points = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(mel_points)
    ramps = mel_points[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_points[2:] - mel_points[:-2]))[:, None]
    weights.setflags(write=False)
    return weights


@lru_cache(maxsize=32)
def dct_matrix(n_out: int, n_in: int) -> np.ndarray:
    """Orthonormal DCT-II as a matrix, shape (n_out, n_in)."""
    k = np.arange(n_out)[:, None]
    n = np.arange(n_in)[None, :]
    basis = np.cos(np.pi * k * (2 * n + 1) / (2 * n_in)) * math.sqrt(2.0 / n_in)
    basis[0] /= math.sqrt(2.0)
    basis.setflags(write=False)
    return basis


@lru_cache(maxsize=32)
def hann_window(win_length: int, n_fft: int) -> np.ndarray:
    """Periodic Hann window centred in an ``n_fft`` frame."""
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win_length) / win_length)
    left = (n_fft - win_length) // 2
    window = np.zeros(n_fft)
    window[left : left + win_length] = hann
    window.setflags(write=False)
    return window


def frames(y: np.ndarray, config: FeatureConfig, n_frames: int | None = None) -> np.ndarray:
    """Windowed frames, shape (n_frames, n_fft); frame t is centred on sample t * hop."""
    n_fft, hop = config.n_fft, config.hop_length
    n_frames = len(y) // hop if n_frames is None else n_frames
    pad_left = n_fft // 2
    needed = (n_frames - 1) * hop + n_fft
    padded = np.zeros(max(needed, pad_left + len(y)), dtype=np.float64)
    padded[pad_left : pad_left + len(y)] = y
    idx = np.arange(n_fft)[None, :] + hop * np.arange(n_frames)[:, None]
    return padded[idx] * hann_window(config.win_length, n_fft)[None, :]


def power_spectrogram(y: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """|STFT|^2, shape (n_fft // 2 + 1, n_frames)."""
    return (np.abs(np.fft.rfft(frames(y, config), axis=1)) ** 2).T


def log_mel_spectrogram(y: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """Mel power in dB (10 log10, floored at -100 dB), shape (n_mels, n_frames)."""
    basis = mel_filterbank(config.sample_rate, config.n_fft, config.n_mels, config.fmin, config.upper_hz)
    mel = basis @ power_spectrogram(y, config)
    return 10.0 * np.log10(np.maximum(mel, _LOG_FLOOR))


def mfcc(y: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """MFCC = orthonormal DCT-II of the dB mel spectrogram, shape (n_mfcc, n_frames)."""
    return dct_matrix(config.n_mfcc, config.n_mels) @ log_mel_spectrogram(y, config)


def delta(x: np.ndarray, width: int = 9) -> np.ndarray:
    """Regression delta along the last axis (the HTK formula), edges replicated."""
    half = width // 2
    padded = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(half, half)], mode="edge")
    n = x.shape[-1]
    out = np.zeros_like(x, dtype=np.float64)
    for k in range(1, half + 1):
        out += k * (padded[..., half + k : half + k + n] - padded[..., half - k : half - k + n])
    return out / (2.0 * sum(k * k for k in range(1, half + 1)))


def lpc(frame_block: np.ndarray, order: int) -> np.ndarray:
    """LPC coefficients a[1..order] per frame by autocorrelation + Levinson-Durbin.

    Returns shape (n_frames, order + 1) with a[0] = 1. Silent frames give an all-zero predictor
    instead of a division by zero.
    """
    n_frames, n = frame_block.shape
    spectrum = np.fft.rfft(frame_block, n=2 * n, axis=1)
    r = np.fft.irfft(np.abs(spectrum) ** 2, axis=1)[:, : order + 1]
    r[:, 0] = r[:, 0] * (1.0 + 1e-9) + 1e-12
    a = np.zeros((n_frames, order + 1))
    a[:, 0] = 1.0
    err = r[:, 0].copy()
    for i in range(1, order + 1):
        acc = r[:, i] + np.sum(a[:, 1:i] * r[:, i - 1 : 0 : -1], axis=1)
        k = -acc / err
        a_prev = a.copy()
        a[:, 1:i] = a_prev[:, 1:i] + k[:, None] * a_prev[:, i - 1 : 0 : -1]
        a[:, i] = k
        err = err * (1.0 - k * k)
        err = np.maximum(err, 1e-12)
    return a


def lpcc(y: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """LPC cepstral coefficients c[1..n_mfcc] per frame, shape (n_mfcc, n_frames)."""
    a = lpc(frames(y, config), config.lpc_order)
    p, n_ceps = config.lpc_order, config.n_mfcc
    c = np.zeros((a.shape[0], n_ceps + 1))
    for m in range(1, n_ceps + 1):
        acc = -a[:, m] if m <= p else np.zeros(a.shape[0])
        for k in range(max(1, m - p), m):
            acc = acc - (k / m) * c[:, k] * a[:, m - k]
        c[:, m] = acc
    return c[:, 1:].T


def extract_features(y: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """Feature map of one clip already at ``config.sample_rate``: float32, shape ``config.shape``.

    The clip is first cropped or padded to ``config.duration_s``.
    """
    y = fix_length(np.asarray(y, dtype=np.float64), config.n_samples)
    if config.kind == "log_mel":
        out = log_mel_spectrogram(y, config)[None]
    elif config.kind == "lpcc":
        out = lpcc(y, config)[None]
    else:
        coeffs = mfcc(y, config)
        if config.kind == "mfcc":
            out = coeffs[None]
        else:
            d1 = delta(coeffs, config.delta_width)
            out = np.stack([coeffs, d1, delta(d1, config.delta_width)])
    return out.astype(np.float32)
