"""Distilled feature maps back to audio: MFCC -> mel power -> STFT magnitude -> Griffin-Lim.

Why: a distilled coreset is a stack of feature maps nobody can listen to. Rendering each map to a
waveform (DDFAD's Algorithm 2) lets a person hear or relabel it, and lets any audio-domain
experiment (re-extraction, additive noise, another front-end) treat the coreset like recordings.

Why every step mirrors ``deploy.runtime.features`` exactly: the inversion is only as good as its
agreement with the forward front-end. The kit's MFCC is the orthonormal DCT-II of
``10 log10(max(mel power, 1e-10))`` (absolute dB, no reference, no lifter, no pre-emphasis); mel
power is Slaney-normalised triangular filters (librosa's default, ``htk=False``) applied to
``|STFT|^2`` of a periodic Hann window of ``win_length`` centred in ``n_fft``; frame ``t`` is
centred on sample ``t * hop`` with zero padding (librosa's ``center=True, pad_mode="constant"``,
minus librosa's extra last frame). So the inversion is ``mfcc_to_mel(dct_type=2, norm="ortho")``
(dB -> power), ``mel_to_stft(power=2.0, htk=False, norm="slaney")`` (non-negative least squares)
and ``griffinlim(window="hann", center=True, pad_mode="constant")`` with the same
``n_fft``/``win_length``/``hop``. Only the first ``n_mfcc`` cepstral coefficients exist, so the
mel envelope comes back smoothed; re-extracting features from the audio still recovers them
closely, because the DCT of the smoothed envelope has exactly those first coefficients.

LPCC cannot be inverted this way (it encodes an all-pole envelope, not mel power): a ``KitError``.

WAVs are written as 32-bit float at the feature rate, without rescaling: the kit's MFCC depend on
the absolute level (c0 is loudness), so a normalised or 16-bit-quantised file would not re-extract
to the distilled features (silence sits at -100 dB, below 16-bit quantisation noise).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

from deploy.runtime.artifact import atomic_write_bytes, atomic_write_text
from deploy.runtime.coreset import Coreset, Normalizer
from deploy.runtime.errors import KitError
from deploy.runtime.features import FeatureConfig, extract_features

DEFAULT_ITERATIONS = 64
MANIFEST_NAME = "manifest.json"
_STATE_NAME = ".render_state.json"
_MEL_POWER_FLOOR = 1e-10  # the front-end's log floor: nothing below it was ever observable


# Functional API ------------------------------------------------------------------------------------
def check_invertible(config: FeatureConfig) -> None:
    """Raise a ``KitError`` for feature kinds that carry no mel power to invert (LPCC)."""
    if config.kind == "lpcc":
        raise KitError(
            "feature kind 'lpcc' cannot be rendered to audio: LPC cepstra encode an all-pole envelope, "
            "not mel power (use an mfcc, fd_mfcc or log_mel coreset)"
        )


def features_to_mel_power(raw: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """Un-normalised feature map (C, F, T) -> mel power (n_mels, T), the front-end's units.

    fd_mfcc/mfcc use channel 0 (the MFCC; deltas are derived from it and add nothing invertible);
    log_mel is already dB mel power.
    """
    import librosa  # lazy: librosa only when used

    check_invertible(config)
    raw = np.asarray(raw, dtype=np.float64)
    if raw.ndim != 3 or tuple(raw.shape[:2]) != tuple(config.shape[:2]):
        raise KitError(f"feature map has shape {raw.shape}, expected (C, F, T) with (C, F) = {config.shape[:2]}")
    if config.kind == "log_mel":
        mel = librosa.db_to_power(raw[0])
    else:
        mel = librosa.feature.inverse.mfcc_to_mel(raw[0], n_mels=config.n_mels, dct_type=2, norm="ortho", ref=1.0)
    return np.maximum(mel, _MEL_POWER_FLOOR)


def mel_power_to_audio(
    mel: np.ndarray, config: FeatureConfig, n_iter: int = DEFAULT_ITERATIONS, seed: int = 0
) -> np.ndarray:
    """Mel power (n_mels, T) -> waveform of ``config.n_samples`` samples by NNLS + Griffin-Lim.

    One extra frame (a copy of the last) is appended: librosa frames a signal of ``T * hop``
    samples into ``T + 1`` centred frames while the kit keeps ``T``, and without it the last hop of
    the waveform would not be covered by any frame.
    """
    import librosa  # lazy: librosa only when used

    if n_iter < 1:
        raise KitError(f"--iterations must be at least 1, got {n_iter}")
    magnitude = librosa.feature.inverse.mel_to_stft(
        np.asarray(mel, dtype=np.float64),
        sr=config.sample_rate,
        n_fft=config.n_fft,
        power=2.0,
        fmin=config.fmin,
        fmax=config.upper_hz,
        htk=False,
        norm="slaney",
    )
    magnitude = np.concatenate([magnitude, magnitude[:, -1:]], axis=1)
    y = librosa.griffinlim(
        magnitude,
        n_iter=int(n_iter),
        hop_length=config.hop_length,
        win_length=config.win_length,
        n_fft=config.n_fft,
        window="hann",
        center=True,
        pad_mode="constant",
        length=config.n_samples,
        momentum=0.99,
        init="random",
        random_state=np.random.default_rng(seed),
    )
    return np.asarray(y, dtype=np.float32)


def features_to_audio(
    features: np.ndarray,
    feature_config: FeatureConfig,
    normalizer: Normalizer | None = None,
    n_iter: int = DEFAULT_ITERATIONS,
    seed: int = 0,
) -> np.ndarray:
    """Feature map(s) -> waveform(s) at ``feature_config.sample_rate``, ``n_samples`` long, float32.

    ``features`` is one map (C, F, T) or a stack (N, C, F, T); ``normalizer`` un-normalises them
    first (pass the coreset's; ``None`` means the maps are raw front-end output). Map ``i`` of a
    stack uses Griffin-Lim seed ``seed + i``, so one sample renders identically alone or in a stack.
    """
    check_invertible(feature_config)
    x = np.asarray(features, dtype=np.float32)
    single = x.ndim == 3
    if single:
        x = x[None]
    if x.ndim != 4:
        raise KitError(f"features must be (C, F, T) or (N, C, F, T), got shape {np.shape(features)}")
    raw = normalizer.inverse(x) if normalizer is not None else x
    audio = (
        np.stack(
            [
                mel_power_to_audio(features_to_mel_power(raw[i], feature_config), feature_config, n_iter, seed + i)
                for i in range(len(raw))
            ]
        )
        if len(raw)
        else np.zeros((0, feature_config.n_samples), np.float32)
    )
    return audio[0] if single else audio


def reextract(audio: np.ndarray, config: FeatureConfig, normalizer: Normalizer | None = None) -> np.ndarray:
    """The kit's own front-end over waveform(s) (n,) or (N, n), normalised when a normaliser is given."""
    y = np.asarray(audio, dtype=np.float32)
    batch = y[None] if y.ndim == 1 else y
    feats = (
        np.stack([extract_features(clip, config) for clip in batch])
        if len(batch)
        else np.zeros((0, *config.shape), np.float32)
    )
    if normalizer is not None:
        feats = normalizer.transform(feats)
    return feats[0] if y.ndim == 1 else feats


def round_trip_metrics(original: np.ndarray, reextracted: np.ndarray) -> dict[str, Any]:
    """Per-channel agreement of (N, C, F, T) maps: Pearson correlation and relative L2 error.

    Correlation is over each sample's (F, T) map (shape agreement, level-free); relative error is
    ``||re - orig|| / ||orig||`` (level included). Both are averaged over samples; per-sample
    values are kept for plots and for picking the worst render.
    """
    a = np.asarray(original, dtype=np.float64)
    b = np.asarray(reextracted, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 4:
        raise KitError(f"round trip: shapes differ or are not (N, C, F, T): {a.shape} vs {b.shape}")
    flat_a = a.reshape(*a.shape[:2], -1)
    flat_b = b.reshape(*b.shape[:2], -1)
    ca = flat_a - flat_a.mean(axis=2, keepdims=True)
    cb = flat_b - flat_b.mean(axis=2, keepdims=True)
    denominator = np.sqrt((ca**2).sum(axis=2) * (cb**2).sum(axis=2))
    correlation = np.where(denominator > 0, (ca * cb).sum(axis=2) / np.maximum(denominator, 1e-30), 0.0)
    relative = np.linalg.norm(flat_b - flat_a, axis=2) / np.maximum(np.linalg.norm(flat_a, axis=2), 1e-12)
    return {
        "correlation": correlation.mean(axis=0).tolist(),  # per channel
        "relative_error": relative.mean(axis=0).tolist(),
        "correlation_per_sample": correlation.tolist(),  # (N, C)
        "relative_error_per_sample": relative.tolist(),
        "n": int(a.shape[0]),
    }


def channel_names(config: FeatureConfig) -> list[str]:
    if config.kind == "fd_mfcc":
        return ["mfcc", "delta", "delta2"]
    return ["log_mel" if config.kind == "log_mel" else config.kind]


# WAV files -------------------------------------------------------------------------------------------
def write_wav_float(path: str | os.PathLike, y: np.ndarray, sample_rate: int) -> None:
    """32-bit float mono WAV, written atomically (see the module docstring for why float)."""
    import soundfile as sf  # lazy: soundfile only when used

    buffer = io.BytesIO()
    sf.write(buffer, np.asarray(y, dtype=np.float32), int(sample_rate), format="WAV", subtype="FLOAT")
    atomic_write_bytes(path, buffer.getvalue())


def _safe_name(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(label)).strip("-.") or "class"


def wav_name(index: int, label: str, n_total: int) -> str:
    return f"{index:0{max(3, len(str(max(n_total - 1, 0))))}d}_{_safe_name(label)}.wav"


# Rendering a coreset ---------------------------------------------------------------------------------
@dataclass
class RenderResult:
    """What ``render_coreset`` produced: audio (N, n_samples), file paths, re-extracted maps, metrics."""

    audio: np.ndarray
    paths: list[Path]
    labels: list[str]
    reextracted: np.ndarray  # (N, C, F, T), normalised with the coreset's normaliser
    metrics: dict[str, Any]
    manifest_path: Path
    reused: int = 0
    settings: dict[str, Any] = field(default_factory=dict)


def _render_fingerprint(coreset: Coreset, n_iter: int, seed: int) -> str:
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(coreset.features, dtype=np.float32).tobytes())
    digest.update(np.ascontiguousarray(coreset.normalizer.mean, dtype=np.float32).tobytes())
    digest.update(np.ascontiguousarray(coreset.normalizer.std, dtype=np.float32).tobytes())
    digest.update(json.dumps([coreset.feature_config.to_dict(), int(n_iter), int(seed)], sort_keys=True).encode())
    return digest.hexdigest()[:16]


def _read_rendered(path: Path, config: FeatureConfig) -> np.ndarray | None:
    """A previously rendered WAV if it is intact and has the expected rate and length."""
    import soundfile as sf  # lazy: soundfile only when used

    try:
        y, rate = sf.read(str(path), dtype="float32", always_2d=False)
    except (sf.LibsndfileError, RuntimeError, OSError):
        return None
    if rate != config.sample_rate or y.ndim != 1 or len(y) != config.n_samples:
        return None
    return y


def render_coreset(
    coreset: Coreset,
    out_dir: str | os.PathLike,
    *,
    n_iter: int = DEFAULT_ITERATIONS,
    seed: int = 0,
    progress: bool = True,
) -> RenderResult:
    """Write one WAV per coreset sample (``<index>_<label>.wav``) plus ``manifest.json`` in ``out_dir``.

    Resumable: a folder already holding WAVs of the same coreset and settings keeps them (each WAV is
    written atomically, so an interrupted run leaves only whole files). The manifest records the
    settings, each file with its label, peak and RMS, and the round-trip metrics of re-extracting
    the kit's features from the files as written.
    """
    check_invertible(coreset.feature_config)
    config = coreset.feature_config
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fingerprint = _render_fingerprint(coreset, n_iter, seed)
    state_path = out / _STATE_NAME
    resume = False
    if state_path.exists():
        try:
            resume = json.loads(state_path.read_text()).get("fingerprint") == fingerprint
        except (OSError, json.JSONDecodeError):
            resume = False
    atomic_write_text(state_path, json.dumps({"fingerprint": fingerprint}) + "\n")

    labels = [coreset.classes[int(i)] for i in coreset.hard_labels]
    n = len(coreset.features)
    paths = [out / wav_name(i, labels[i], n) for i in range(n)]
    audio = np.zeros((n, config.n_samples), dtype=np.float32)
    reused = 0
    with _progress(progress) as bar:
        task = bar.add_task(f"Griffin-Lim ({n_iter} iterations)", total=n)
        for i, path in enumerate(paths):
            previous = _read_rendered(path, config) if resume and path.exists() else None
            if previous is not None:
                audio[i] = previous
                reused += 1
            else:
                audio[i] = features_to_audio(
                    coreset.features[i], config, coreset.normalizer, n_iter=n_iter, seed=seed + i
                )
                write_wav_float(path, audio[i], config.sample_rate)
            bar.advance(task)

    # Round trip from the files as written (what a listener or a later experiment gets).
    written = np.stack([_read_rendered(p, config) for p in paths]) if n else audio
    reextracted = reextract(written, config, coreset.normalizer)
    metrics = round_trip_metrics(coreset.features, reextracted)
    settings = {
        "n_iter": int(n_iter),
        "seed": int(seed),
        "fingerprint": fingerprint,
        "sample_rate": config.sample_rate,
        "n_samples": config.n_samples,
        "subtype": "FLOAT",
    }
    manifest = {
        "settings": settings,
        "feature_config": config.to_dict(),
        "coreset": {
            "method": coreset.method,
            "ipc": coreset.ipc,
            "seed": coreset.seed,
            "n": n,
            "classes": list(coreset.classes),
        },
        "channels": channel_names(config),
        "round_trip": {k: metrics[k] for k in ("correlation", "relative_error", "n")},
        "files": [
            {
                "file": p.name,
                "index": i,
                "label": labels[i],
                "peak": float(np.abs(audio[i]).max(initial=0.0)),
                "rms": float(np.sqrt(np.mean(audio[i].astype(np.float64) ** 2))),
                "correlation": metrics["correlation_per_sample"][i],
                "relative_error": metrics["relative_error_per_sample"][i],
            }
            for i, p in enumerate(paths)
        ],
    }
    manifest_path = out / MANIFEST_NAME
    atomic_write_text(manifest_path, json.dumps(manifest, indent=1) + "\n")
    return RenderResult(
        audio=written.astype(np.float32),
        paths=paths,
        labels=labels,
        reextracted=reextracted,
        metrics=metrics,
        manifest_path=manifest_path,
        reused=reused,
        settings=settings,
    )


def _progress(enabled: bool):
    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
        disable=not enabled,
    )


def noise_baseline(
    coreset_features: np.ndarray, audio: np.ndarray, config: FeatureConfig, normalizer: Normalizer, seed: int = 0
) -> dict[str, Any]:
    """Round-trip metrics of white noise with each render's RMS: the floor a useless render would score.

    Why: a correlation of 0.9 means little on its own; normalised feature maps share a lot of
    structure (e.g. the mean spectral tilt), so noise already correlates somewhat.
    """
    rng = np.random.default_rng(seed)
    rms = np.sqrt(np.mean(np.asarray(audio, dtype=np.float64) ** 2, axis=1, keepdims=True))
    noise = (rng.standard_normal(np.shape(audio)) * rms).astype(np.float32)
    return round_trip_metrics(coreset_features, reextract(noise, config, normalizer))


__all__ = [
    "DEFAULT_ITERATIONS",
    "RenderResult",
    "channel_names",
    "check_invertible",
    "features_to_audio",
    "features_to_mel_power",
    "mel_power_to_audio",
    "noise_baseline",
    "reextract",
    "render_coreset",
    "round_trip_metrics",
    "wav_name",
    "write_wav_float",
]
