"""Waveform augmentation for keyword clips: place a word in a 1-s window over real noise.

Why on waveforms (and not only on features like ``augment.py``): noise adds in the power
domain, before the log of the front-end, and a word shorter than the window (the unpadded
0.3-1.0 s ``speech_commands_train`` clips) has to sit somewhere in real background, not in
digital silence that no microphone ever hears. Levels are dB; SNR is the word's active RMS
(its loudest 30 % of 20-ms frames) over the noise RMS, so a quiet tail does not count as signal.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from deploy.runtime.errors import KitError

#: fraction of 20-ms frames counted as the word's active part when measuring its level
ACTIVE_FRACTION = 0.3


def db_to_gain(db: float) -> float:
    return float(10.0 ** (db / 20.0))


def rms(y: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(y, dtype=np.float64)))) if len(y) else 0.0


def active_rms(y: np.ndarray, rate: int) -> float:
    """RMS over the loudest 30 % of 20-ms frames: the level of the word, not of its pauses."""
    frame = max(1, int(0.02 * rate))
    n = len(y) // frame
    if n == 0:
        return rms(y)
    energy = np.mean(np.square(y[: n * frame].reshape(n, frame), dtype=np.float64), axis=1)
    top = np.sort(energy)[-max(1, int(np.ceil(ACTIVE_FRACTION * n))) :]
    return float(np.sqrt(top.mean()))


def place_in_window(y: np.ndarray, n: int, shift: int) -> np.ndarray:
    """``y`` centred in ``n`` samples, moved by ``shift`` samples (no wrap-around: what slides
    out of the window is lost, as in a stream); a longer ``y`` is centre-cropped first."""
    y = np.asarray(y, dtype=np.float32)
    if len(y) > n:
        start = (len(y) - n) // 2
        y = y[start : start + n]
    out = np.zeros(n, dtype=np.float32)
    begin = (n - len(y)) // 2 + int(shift)
    lo, hi = max(0, begin), min(n, begin + len(y))
    if hi > lo:
        out[lo:hi] = y[lo - begin : hi - begin]
    return out


def noise_window(noise: Sequence[np.ndarray], n: int, rng: np.random.Generator) -> np.ndarray:
    """A random ``n``-sample piece of a random recording in ``noise`` (each longer than ``n``)."""
    usable = [piece for piece in noise if len(piece) > n]
    if not usable:
        raise KitError(f"recipe: no background-noise recording is longer than {n} samples")
    source = usable[int(rng.integers(len(usable)))]
    start = int(rng.integers(0, len(source) - n))
    return np.asarray(source[start : start + n], dtype=np.float32)


def mix_at_snr(word: np.ndarray, noise: np.ndarray, snr_db: float, rate: int) -> np.ndarray:
    """``word + noise`` with the noise scaled to ``snr_db`` below the word's active level, clipped to [-1, 1]."""
    level, noise_level = active_rms(word, rate), rms(noise)
    if level <= 0 or noise_level <= 0:
        return np.clip(word + noise, -1.0, 1.0).astype(np.float32)
    scaled = noise * (level / db_to_gain(snr_db) / noise_level)
    return np.clip(word + scaled, -1.0, 1.0).astype(np.float32)


def at_level(y: np.ndarray, dbfs: float) -> np.ndarray:
    """``y`` scaled to an RMS of ``dbfs`` dB relative to full scale (silence stays silence)."""
    level = rms(y)
    return (y * (db_to_gain(dbfs) / level)).astype(np.float32) if level > 0 else np.asarray(y, dtype=np.float32)
