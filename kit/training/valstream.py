"""A validation stream from training material only: where detection thresholds are chosen.

Why a stream and not clips: a keyword detector's operating point is a false-accept *rate* (per
hour of listening), which only a long stream with words at known times can measure, and the
smoothed, windowed scores of a stream differ from clip scores. Why training material only: the
benchmark's held-out streams (``bench/stream_builder.py``) use the test speakers, the last 20 % of
each noise file, FSDD takes 0-4 and ESC-10 fold 5; thresholds tuned on any of those would make the
benchmark's false-reject figures optimistic. This stream uses the training split of the model's
dataset (keywords and ``_unknown_`` words), the first 80 % of the background-noise recordings and
the recipe's hard negatives (FSDD training takes, ESC-10 training folds); of those, only the
calibration hold-out (``holdout.py``) when the model's recipe kept one, since thresholds chosen on
clips the model trained on come out too low (it is surer of them than of anything new).

Layout: a noise bed (random training-noise pieces at random levels) with events placed one
after another after random gaps, as in the benchmark's keyword and negatives-only streams.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from deploy.runtime.errors import KitError

from ..audio import load_audio
from ..data.noise import background_noise
from .holdout import calibration_mask
from .negatives import hard_negative_clips, loudest_cuts
from .source import load_model_dataset
from .waveaug import at_level, db_to_gain, noise_window

UNKNOWN, SILENCE = "_unknown_", "_silence_"


@dataclass(frozen=True)
class Event:
    """One placed sound: ``kind`` keyword | negative; ``label`` its class (negatives: their source)."""

    kind: str
    label: str
    start_s: float
    end_s: float


@dataclass
class ValidationStream:
    audio: np.ndarray
    rate: int
    events: list[Event]
    #: where its words came from: "calibration hold-out (N % of speakers)" or "training clips (seen in training)"
    material: str = ""

    @property
    def duration_s(self) -> float:
        return len(self.audio) / float(self.rate)


def _sources(
    meta: dict[str, Any],
    data_dir: str | os.PathLike | None,
    keywords: list[str],
    per_keyword: int,
    n_negatives: int,
    rate: int,
    rng: np.random.Generator,
) -> tuple[list[tuple[str, np.ndarray]], list[np.ndarray]]:
    """(keyword label, waveform) pairs and negative waveforms, all from training material."""
    audio, train = stream_clips(meta, data_dir)
    percent = calibration_percent(meta)
    name = audio.name
    words: list[tuple[str, np.ndarray]] = []
    negatives: list[np.ndarray] = []
    for label in keywords:
        clips = [c for c in train if c.label == label]
        for i in rng.permutation(len(clips))[:per_keyword]:
            clip = clips[int(i)]
            words.append((label, load_audio(clip.path, rate, clip.offset_s, clip.duration_s)))
    unknown = [c for c in train if c.label == UNKNOWN]
    for i in rng.permutation(len(unknown))[:n_negatives]:
        negatives.append(load_audio(unknown[int(i)].path, rate, unknown[int(i)].offset_s, unknown[int(i)].duration_s))
    part = "calibration" if percent else "train"
    digits, sounds, _ = hard_negative_clips(data_dir, n_negatives, True, rng, audio.name, percent, part)
    negatives += [load_audio(c.path, rate) for c in digits]
    for i in rng.permutation(len(sounds))[: n_negatives // 2]:  # one loudest second of each picked training sound
        negatives += loudest_cuts(load_audio(sounds[int(i)].path, rate), rate, 1)
    if not words:
        where = f"calibration hold-out ({percent} % of the training speakers)" if percent else "training clips"
        raise KitError(f"validation stream: dataset '{name}' has no {where} of the keywords {keywords}")
    return words, negatives


def stream_clips(meta: dict[str, Any], data_dir: str | os.PathLike | None) -> tuple[Any, list[Any]]:
    """The model's dataset and the training clips a validation stream may use: the calibration
    hold-out when the model's recipe kept one, else every training clip."""
    audio = load_model_dataset(meta, data_dir, "validation stream")
    train = audio.clips_in("train")
    percent = calibration_percent(meta)
    if percent:
        train = [c for c, held in zip(train, calibration_mask(train, percent)) if held]
    return audio, train


def calibration_percent(meta: dict[str, Any]) -> int:
    """The share of training speakers the model's recipe held out for calibration (0: none, or no recipe)."""
    recipe = (meta.get("train_config") or {}).get("recipe") or {}
    return int(recipe.get("calibration_percent", 0) or 0)


def build_validation_stream(
    meta: dict[str, Any],
    keywords: list[str],
    data_dir: str | os.PathLike | None = None,
    *,
    minutes: float = 20.0,
    per_keyword: int = 40,
    n_negatives: int = 200,
    negative_rate: float = 0.2,
    negatives_only_share: float = 0.45,
    negatives_only_rate: float = 0.6,
    gap_s: tuple[float, float] = (1.2, 3.0),
    gain_db: tuple[float, float] = (-6.0, 0.0),
    noise_dbfs: tuple[float, float] = (-50.0, -35.0),
    seed: int = 0,
) -> ValidationStream:
    """``minutes`` of stream at the model's sample rate (see the module docstring); deterministic in ``seed``.

    The layout follows the benchmark's held-out streams (``bench.streaming.build_streams``), with
    training material: the first part holds keywords with ``negative_rate`` negatives among them, the
    last ``negatives_only_share`` only negatives (a slot holds one with ``negatives_only_rate``, else
    noise alone), because a detector's false accepts come mostly from what is not a keyword.
    """
    if minutes <= 0:
        raise KitError(f"--validation-minutes must be > 0, got {minutes}")
    rate = int((meta.get("feature_config") or {}).get("sample_rate", 16000))
    rng = np.random.default_rng(seed)
    words, negatives = _sources(meta, data_dir, keywords, per_keyword, n_negatives, rate, rng)
    try:
        noise = [rec.audio for rec in background_noise(data_dir, rate, "train")]
    except KitError:
        noise = []
    total = int(minutes * 60 * rate)
    piece = rate * 5
    bed = np.zeros(total, dtype=np.float32)
    for start in range(0, total, piece):
        n = min(piece, total - start)
        chunk = noise_window(noise, n, rng) if noise else rng.standard_normal(n).astype(np.float32)
        bed[start : start + n] = at_level(chunk, float(rng.uniform(*noise_dbfs)))
    events: list[Event] = []
    t = int(rng.uniform(*gap_s) * rate)
    order = rng.permutation(len(words))
    k = 0
    negatives_from = int(total * (1.0 - negatives_only_share))
    while True:
        if t >= negatives_from:  # the negatives-only part
            if not negatives or rng.random() >= negatives_only_rate:
                t += int(rng.uniform(*gap_s) * rate)  # noise alone in this slot
                if t >= total:
                    break
                continue
            kind, label, y = "negative", "negative", negatives[int(rng.integers(len(negatives)))]
        elif negatives and rng.random() < negative_rate:
            kind, label, y = "negative", "negative", negatives[int(rng.integers(len(negatives)))]
        else:
            label, y = words[int(order[k % len(order)])]
            kind, k = "keyword", k + 1
        y = np.asarray(y, dtype=np.float32) * db_to_gain(float(rng.uniform(*gain_db)))
        if t + len(y) > total:
            break
        bed[t : t + len(y)] += y
        events.append(Event(kind, label, t / rate, (t + len(y)) / rate))
        t += len(y) + int(rng.uniform(*gap_s) * rate)
    percent = calibration_percent(meta)
    material = (
        f"calibration hold-out ({percent} % of the training speakers and hard-negative files, never trained on)"
        if percent
        else "training clips the model trained on (its recipe held none out): thresholds will be optimistic"
    )
    return ValidationStream(np.clip(bed, -1.0, 1.0), rate, events, material)
