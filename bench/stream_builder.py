"""Long test streams for the keyword-spotting benchmark, built only from held-out recordings.

Why build streams at all: clip accuracy says nothing about how often a device that listens all
day fires by mistake, nor whether it catches a word that is not centred in a 1-s window. A stream
with keywords pasted at *known* times over real background noise, mixed with confusable
negatives, lets the edge runtime's own streaming path (ring buffer, hops, smoothing, suppression)
be scored in false accepts per hour and false-reject rate.

Why only held-out material: every model in the benchmark was trained (or its coreset distilled)
on the training split. The streams use the test split only:

* keywords and ``_unknown_`` words of the Speech Commands test speakers (the kit's speaker split,
  ``kit.data.load_dataset("speech_commands", task="kws12")``, so no test speaker was heard in
  training);
* the last 20 % of each ``_background_noise_`` recording (the kit's loader gives the first 80 %
  to training as ``_silence_`` cuts; the test cuts it lists are used to find that part);
* FSDD digits of the official test split (takes 0-4, resampled from 8 kHz to 16 kHz);
* ESC-10 sounds of fold 5 (the kit's test fold).

A stream is a noise bed (random test-noise segments at random levels, cross-faded) plus events
placed one after another with random gaps and random gains. ``Event`` records what was placed
where; ``Stream.events`` is the ground truth the scorer uses.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deploy.runtime.errors import KitError

KINDS_NEGATIVE = ("unknown", "fsdd", "esc")
#: Cross-fade between noise segments (s): no clicks, which would be unlike any real background.
CROSSFADE_S = 0.02


@dataclass(frozen=True)
class Sound:
    """One piece of held-out audio: ``kind`` is keyword | unknown | fsdd | esc | noise."""

    audio: np.ndarray
    kind: str
    label: str
    source: str  # path relative to the data folder (what a reader needs to find it)


@dataclass
class Material:
    """Held-out sounds at ``rate``: keywords, negatives (unknown words, digits, sounds), noise."""

    rate: int
    keywords: list[Sound]
    negatives: list[Sound]
    noise: list[Sound]
    description: dict[str, Any] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for sound in self.keywords + self.negatives + self.noise:
            counts[sound.kind] += 1
        return dict(counts)


@dataclass(frozen=True)
class StreamSpec:
    """How one stream is laid out. Levels are dB: ``*_gain_db`` scale a clip relative to its own
    recording level; ``noise_dbfs`` is the RMS of the noise bed relative to full scale."""

    minutes: float = 30.0
    with_keywords: bool = True
    #: in a keyword stream, the chance that a slot holds a negative instead of the next keyword;
    #: in a negatives-only stream, the chance that a slot holds a negative instead of noise alone
    negative_rate: float = 0.3
    gap_s: tuple[float, float] = (1.5, 4.0)
    keyword_gain_db: tuple[float, float] = (-6.0, 0.0)
    negative_gain_db: tuple[float, float] = (-6.0, 0.0)
    noise_dbfs: tuple[float, float] = (-50.0, -35.0)
    noise_segment_s: tuple[float, float] = (3.0, 12.0)
    lead_in_s: float = 1.0

    def __post_init__(self) -> None:
        if self.minutes <= 0:
            raise KitError(f"stream length must be positive, got {self.minutes} minutes")
        if not 0.0 <= self.negative_rate <= 1.0:
            raise KitError(f"negative_rate must lie in [0, 1], got {self.negative_rate}")
        for name in ("gap_s", "keyword_gain_db", "negative_gain_db", "noise_dbfs", "noise_segment_s"):
            low, high = getattr(self, name)
            if low > high:
                raise KitError(f"stream spec {name}: low {low} exceeds high {high}")
        if self.gap_s[0] < 0 or self.noise_segment_s[0] <= 0:
            raise KitError("stream spec: gaps must be >= 0 s and noise segments > 0 s")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Event:
    """A pasted sound: where (seconds of stream time), what, and at which gain."""

    kind: str
    label: str
    start_s: float
    end_s: float
    source: str
    gain_db: float
    snr_db: float  # event RMS over the noise bed's RMS under it

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


@dataclass
class Stream:
    """A mono float32 stream at ``rate`` and its ground truth."""

    audio: np.ndarray
    rate: int
    events: list[Event]
    spec: StreamSpec
    seed: int
    clipped_samples: int = 0
    noise_bed: np.ndarray | None = None  # kept on request (tests)

    @property
    def duration_s(self) -> float:
        return len(self.audio) / self.rate

    @property
    def keywords(self) -> list[Event]:
        return [e for e in self.events if e.kind == "keyword"]

    def summary(self) -> dict[str, Any]:
        kinds: dict[str, int] = defaultdict(int)
        for event in self.events:
            kinds[event.kind] += 1
        snr = [e.snr_db for e in self.keywords if np.isfinite(e.snr_db)]
        return {
            "duration_s": round(self.duration_s, 2),
            "events": dict(kinds),
            "keyword_snr_db": {
                "median": round(float(np.median(snr)), 1),
                "p10": round(float(np.percentile(snr, 10)), 1),
                "p90": round(float(np.percentile(snr, 90)), 1),
            }
            if snr
            else None,
            "clipped_samples": int(self.clipped_samples),
            "seed": self.seed,
            "spec": self.spec.to_dict(),
        }


# Building ------------------------------------------------------------------------------------------
def db_gain(value: float) -> float:
    """The amplitude factor of a level in dB (20 log10 convention: -6 dB halves the amplitude)."""
    return float(10.0 ** (value / 20.0))


def rms(y: np.ndarray) -> float:
    """Root mean square in float64 (0 for an empty piece, so a level check never divides by NaN)."""
    return float(np.sqrt(np.mean(np.square(y, dtype=np.float64)))) if len(y) else 0.0


def _active_rms(y: np.ndarray, rate: int) -> float:
    """RMS over the loudest 30 % of 20-ms frames: the level of the word, not of its silence."""
    frame = max(1, int(0.02 * rate))
    n = len(y) // frame
    if n == 0:
        return rms(y)
    energy = np.mean(np.square(y[: n * frame].reshape(n, frame), dtype=np.float64), axis=1)
    top = np.sort(energy)[-max(1, int(np.ceil(0.3 * n))) :]
    return float(np.sqrt(top.mean()))


class _Cycle:
    """Draw items without replacement, reshuffling when the pool runs out (every item is used
    once before any is used twice: the stream covers the held-out material evenly)."""

    def __init__(self, items: list[Sound], rng: np.random.Generator) -> None:
        if not items:
            raise KitError("stream builder: an empty pool of sounds was given")
        self.items, self.rng, self.order, self.passes = items, rng, [], 0

    def next(self) -> Sound:
        if not self.order:
            self.order = list(self.rng.permutation(len(self.items)))
            self.passes += 1
        return self.items[self.order.pop()]


def _noise_bed(noise: list[Sound], n: int, rate: int, spec: StreamSpec, rng: np.random.Generator) -> np.ndarray:
    """Random noise segments at random RMS levels, cross-faded, covering ``n`` samples."""
    if not noise:
        raise KitError("stream builder: no background-noise material was given")
    bed = np.zeros(n, dtype=np.float32)
    fade = max(1, int(CROSSFADE_S * rate))
    pos = 0
    while pos < n:
        sound = noise[int(rng.integers(len(noise)))]
        want = int(rng.uniform(*spec.noise_segment_s) * rate)
        length = min(want, len(sound.audio), n - pos + fade)
        start = int(rng.integers(0, len(sound.audio) - length + 1))
        piece = sound.audio[start : start + length].astype(np.float32)
        level = rms(piece)
        piece = piece * (db_gain(rng.uniform(*spec.noise_dbfs)) / level if level > 0 else 0.0)
        ramp = np.ones(length, dtype=np.float32)
        k = min(fade, length // 2)
        if k:
            ramp[:k] = np.linspace(0.0, 1.0, k, endpoint=False)
            ramp[-k:] = np.linspace(1.0, 0.0, k, endpoint=False)
        begin = max(0, pos - k) if pos else 0
        end = min(n, begin + length)
        bed[begin:end] += (piece * ramp)[: end - begin]
        pos = end
    return bed


def build_stream(material: Material, spec: StreamSpec, seed: int = 0, keep_noise_bed: bool = False) -> Stream:
    """Lay out events until the stream reaches ``spec.minutes``, over a real noise bed.

    Slots follow one another: a gap drawn from ``spec.gap_s``, then the event (a keyword, or with
    probability ``negative_rate`` a negative; in a negatives-only stream a slot without a
    negative is just noise). The result is clipped to [-1, 1] (the count is recorded).
    """
    rate = material.rate
    rng = np.random.default_rng(seed)
    keywords = _Cycle(material.keywords, rng) if spec.with_keywords else None
    negatives = _Cycle(material.negatives, rng) if material.negatives else None
    if spec.with_keywords and keywords is None:
        raise KitError("stream builder: a keyword stream needs keyword material")
    if not spec.with_keywords and negatives is None:
        raise KitError("stream builder: a negatives-only stream needs negative material")
    total = int(round(spec.minutes * 60.0 * rate))
    placed: list[tuple[Sound, int, float]] = []
    t = int(spec.lead_in_s * rate)
    while True:
        gap = int(rng.uniform(*spec.gap_s) * rate)
        use_negative = negatives is not None and rng.random() < spec.negative_rate
        if spec.with_keywords:
            sound = negatives.next() if use_negative else keywords.next()  # type: ignore[union-attr]
        elif use_negative:
            sound = negatives.next()  # type: ignore[union-attr]
        else:
            sound = None
        length = len(sound.audio) if sound is not None else int(rng.uniform(*spec.gap_s) * rate)
        if t + gap + length > total:
            break
        start = t + gap
        if sound is not None:
            gain_range = spec.keyword_gain_db if sound.kind == "keyword" else spec.negative_gain_db
            placed.append((sound, start, float(rng.uniform(*gain_range))))
        t = start + length
    bed = _noise_bed(material.noise, total, rate, spec, rng)
    audio = bed.copy()
    events = []
    for sound, start, gain_db in placed:
        clip = sound.audio.astype(np.float32) * db_gain(gain_db)
        end = start + len(clip)
        audio[start:end] += clip
        noise_rms = rms(bed[start:end])
        snr = 20.0 * np.log10(_active_rms(clip, rate) / noise_rms) if noise_rms > 0 and rms(clip) > 0 else float("inf")
        events.append(
            Event(sound.kind, sound.label, start / rate, end / rate, sound.source, round(gain_db, 3), float(snr))
        )
    clipped = int(np.count_nonzero(np.abs(audio) > 1.0))
    np.clip(audio, -1.0, 1.0, out=audio)
    return Stream(audio, rate, events, spec, seed, clipped, bed if keep_noise_bed else None)


# Held-out material from the real recordings ----------------------------------------------------------
def _relative(path: Path, data_dir: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(data_dir.resolve()))
    except ValueError:
        return str(path)


def _take(items: list, limit: int | None, rng: np.random.Generator) -> list:
    """At most ``limit`` items, a seeded random choice kept in the original order."""
    if limit is None or len(items) <= limit:
        return list(items)
    keep = np.sort(rng.choice(len(items), size=limit, replace=False))
    return [items[i] for i in keep]


def load_material(
    data_dir: str | os.PathLike,
    rate: int = 16000,
    *,
    keywords_per_class: int | None = None,
    unknown: int | None = None,
    fsdd: int | None = None,
    esc: int | None = None,
    seed: int = 0,
) -> Material:
    """Every held-out sound (or a seeded subset, for tests) at ``rate``; see the module docstring.

    Limits: ``keywords_per_class`` clips per keyword, and at most ``unknown`` / ``fsdd`` / ``esc``
    negatives of each kind. The noise is the test part of every ``_background_noise_`` file.
    """
    from kit.audio import load_audio  # lazy: pulls in soundfile
    from kit.data import load_dataset  # lazy: pulls in soundfile

    data_dir = Path(data_dir)
    rng = np.random.default_rng(seed)
    sc = load_dataset("speech_commands", data_dir, task="kws12")
    test = sc.clips_in("test")
    by_label: dict[str, list] = defaultdict(list)
    noise_regions: dict[Path, list[float]] = {}
    for clip in test:
        if clip.label == "_silence_":
            if clip.duration_s is not None and "_background_noise_" in clip.group:
                region = noise_regions.setdefault(clip.path, [np.inf, -np.inf])
                region[0] = min(region[0], clip.offset_s)
                region[1] = max(region[1], clip.offset_s + clip.duration_s)
            continue
        by_label[clip.label].append(clip)
    if not noise_regions:
        raise KitError(
            f"{data_dir / 'speech_commands'}: no _background_noise_ test part found (the noise bed needs it)"
        )
    keywords = []
    for label in sorted(k for k in by_label if k != "_unknown_"):
        for clip in _take(by_label[label], keywords_per_class, rng):
            keywords.append(Sound(load_audio(clip.path, rate), "keyword", label, _relative(clip.path, data_dir)))
    negatives = [
        Sound(load_audio(c.path, rate), "unknown", "_unknown_", _relative(c.path, data_dir))
        for c in _take(by_label.get("_unknown_", []), unknown, rng)
    ]
    fsdd_ds = load_dataset("fsdd", data_dir, split="official")
    for clip in _take(fsdd_ds.clips_in("test"), fsdd, rng):
        negatives.append(
            Sound(load_audio(clip.path, rate), "fsdd", f"digit {clip.label}", _relative(clip.path, data_dir))
        )
    esc_ds = load_dataset("esc10", data_dir, test_fold=5)
    for clip in _take(esc_ds.clips_in("test"), esc, rng):
        negatives.append(
            Sound(
                load_audio(clip.path, rate, clip.offset_s, clip.duration_s),
                "esc",
                clip.label,
                _relative(clip.path, data_dir),
            )
        )
    noise = []
    for path, (begin, end) in sorted(noise_regions.items()):
        audio = load_audio(path, rate, offset_s=float(begin), duration_s=float(end - begin))
        noise.append(Sound(audio, "noise", path.stem, f"{_relative(path, data_dir)}@{begin:.3f}-{end:.3f}s"))
    description = {
        "speech_commands_split": sc.split_rule,
        "fsdd_split": "official (takes 0-4 test)",
        "esc10_test_fold": 5,
        "noise": [n.source for n in noise],
        "noise_seconds": round(sum(len(n.audio) for n in noise) / rate, 1),
        "limits": {
            "keywords_per_class": keywords_per_class,
            "unknown": unknown,
            "fsdd": fsdd,
            "esc": esc,
            "seed": seed,
        },
    }
    material = Material(rate, keywords, negatives, noise, description)
    description["counts"] = material.counts()
    return material


# Stream-like training copies (training material only) ----------------------------------------------
def stream_like_copy(
    y: np.ndarray,
    rate: int,
    noise: list[np.ndarray],
    spec: StreamSpec,
    rng: np.random.Generator,
    max_shift_s: float = 0.25,
) -> np.ndarray:
    """A 1-s training clip as a stream window might hold it: shifted (not circularly) by up to
    ``max_shift_s``, at a random gain of ``spec.keyword_gain_db``, over noise at ``spec.noise_dbfs``.

    Why: a streaming window slides over the word in 0.1-s steps and the recogniser averages
    0.5 s of windows, so the model sees the word off-centre and over background far more often
    than in its centred, clean training clips.
    """
    n = int(rate)
    y = np.asarray(y, dtype=np.float32)[:n]
    y = np.pad(y, (0, n - len(y)))
    shift = int(rng.uniform(-max_shift_s, max_shift_s) * rate)
    out = np.zeros(n, dtype=np.float32)
    if shift >= 0:
        out[shift:] = y[: n - shift]
    else:
        out[:shift] = y[-shift:]
    out *= db_gain(rng.uniform(*spec.keyword_gain_db))
    source = noise[int(rng.integers(len(noise)))]
    if len(source) >= n:
        start = int(rng.integers(0, len(source) - n + 1))
        piece = source[start : start + n].astype(np.float32)
        level = rms(piece)
        if level > 0:
            out += piece * (db_gain(rng.uniform(*spec.noise_dbfs)) / level)
    return np.clip(out, -1.0, 1.0)
