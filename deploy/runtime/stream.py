"""Streaming keyword spotting: a ring buffer of the last second of audio, classified every hop.

Why classify whole windows instead of computing frames incrementally: the model was trained on
``extract_features`` of a ``window_s``-long clip (deltas over 9 frames, normalisation), so the
window the device classifies must go through exactly that function to match training. At a
0.1-s hop that is ten 1-s feature maps a second, a few milliseconds each in numpy, well within a
Raspberry Pi's budget. The ring buffer keeps samples at the source's own rate and each window is
resampled as a whole (``features.resample``, as for a clip), so a source at another rate gets
the same features as the offline path, without chunk-edge artefacts.

Results start once a full window has been heard (the first at the first hop boundary at or after
``window_s``), and their time stamps are stream time in seconds at the end of the window. The
same code serves live input (``StreamRecognizer.feed`` with chunks of any size) and offline
long arrays (``score_stream`` / ``detect_stream``, which batch the model calls); both produce the
same windows, hence the same scores.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from .classifier import WaveformClassifier, softmax
from .errors import KitError
from .recognizer import Detection, DetectorSettings, RecognizeCommands


class AudioRing:
    """The last ``capacity`` samples of a stream (float32), written in chunks of any size."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise KitError(f"ring buffer capacity must be >= 1 sample, got {capacity}")
        self.capacity = int(capacity)
        self._buffer = np.zeros(self.capacity, dtype=np.float32)
        self._pos = 0  # where the next sample goes
        self.total = 0  # samples written since creation

    def write(self, chunk: np.ndarray) -> None:
        chunk = np.asarray(chunk, dtype=np.float32).reshape(-1)
        n = len(chunk)
        if n >= self.capacity:
            self._buffer[:] = chunk[-self.capacity :]
            self._pos = 0
        else:
            first = min(n, self.capacity - self._pos)
            self._buffer[self._pos : self._pos + first] = chunk[:first]
            self._buffer[: n - first] = chunk[first:]
            self._pos = (self._pos + n) % self.capacity
        self.total += n

    def latest(self) -> np.ndarray:
        """A copy of the buffer in time order (oldest first); zeros where nothing was written yet."""
        return np.concatenate([self._buffer[self._pos :], self._buffer[: self._pos]])


@dataclass
class StreamResult:
    """One hop: the window ending at ``time_s``, its class probabilities, and a detection if any."""

    time_s: float
    probabilities: np.ndarray
    detection: Detection | None = None
    features: np.ndarray | None = None  # the normalised window features (kept on request)


def _probabilities(classifier: WaveformClassifier, x: np.ndarray) -> np.ndarray:
    """(N, K) probabilities of a batch of windows: softmax of the classifier's float32 logits."""
    return softmax(np.asarray(classifier.logits(x), dtype=np.float32))


def _window_samples(settings: DetectorSettings, rate: int, classifier: WaveformClassifier) -> tuple[int, int]:
    """(window, hop) in samples; the window must be the model's clip length."""
    config = classifier.feature_config
    if abs(settings.window_s - config.duration_s) > 1e-6:
        raise KitError(
            f"detector window_s ({settings.window_s:g} s) must equal the model's clip length "
            f"({config.duration_s:g} s): the model only knows clips of that length"
        )
    if rate <= 0:
        raise KitError(f"sample rate must be positive, got {rate}")
    window = int(round(settings.window_s * rate))
    hop = int(round(settings.hop_s * rate))
    if hop < 1:
        raise KitError(f"hop_s {settings.hop_s} is shorter than one sample at {rate} Hz")
    return window, hop


class StreamRecognizer:
    """Feed audio chunks of any size; every ``hop_s`` the last ``window_s`` are classified.

    ``classifier``: a ``WaveformClassifier`` (``BundleClassifier``, ``KeywordClassifier``).
    ``rate``: the rate of the fed audio (default the model's own). ``keep_features`` stores each
    window's feature map in its result (for tests and debugging).
    """

    def __init__(
        self,
        classifier: WaveformClassifier,
        settings: DetectorSettings | None = None,
        rate: int | None = None,
        keep_features: bool = False,
    ) -> None:
        self.classifier = classifier
        self.settings = settings or DetectorSettings()
        self.rate = int(rate or classifier.feature_config.sample_rate)
        self.window, self.hop = _window_samples(self.settings, self.rate, classifier)
        self.keep_features = keep_features
        self.recognizer = RecognizeCommands(classifier.classes, self.settings)
        self.ring = AudioRing(self.window)
        self._to_next_hop = self.hop

    @property
    def time_s(self) -> float:
        """Stream time: seconds of audio fed so far."""
        return self.ring.total / self.rate

    def feed(self, chunk: np.ndarray) -> list[StreamResult]:
        """Add samples (float32 mono at ``self.rate``); returns the results of the hops completed."""
        chunk = np.asarray(chunk, dtype=np.float32).reshape(-1)
        results = []
        start = 0
        while start < len(chunk):
            take = min(len(chunk) - start, self._to_next_hop)
            self.ring.write(chunk[start : start + take])
            start += take
            self._to_next_hop -= take
            if self._to_next_hop == 0:
                self._to_next_hop = self.hop
                if self.ring.total >= self.window:
                    results.append(self._classify())
        return results

    def _classify(self) -> StreamResult:
        x = self.classifier.features(self.ring.latest(), self.rate)
        probabilities = _probabilities(self.classifier, x[None])[0]
        time_s = self.ring.total / self.rate
        detection = self.recognizer.process(probabilities, time_s)
        return StreamResult(time_s, probabilities, detection, x if self.keep_features else None)

    def run(self, chunks: Iterable[np.ndarray]) -> Iterator[StreamResult]:
        """Results for a whole source of chunks, as they complete."""
        for chunk in chunks:
            yield from self.feed(chunk)


# Offline: long arrays -------------------------------------------------------------------------------
@dataclass
class StreamScores:
    """Per-hop scores of a whole waveform: ``times`` (H,) window end times, ``probabilities`` (H, K)."""

    times: np.ndarray
    probabilities: np.ndarray
    classes: list[str]


def window_ends(n_samples: int, rate: int, settings: DetectorSettings, classifier: WaveformClassifier) -> np.ndarray:
    """Sample indices where the classified windows end (the same hops as ``StreamRecognizer``)."""
    window, hop = _window_samples(settings, rate, classifier)
    first = -(-window // hop) * hop  # first hop boundary at or after a full window
    return np.arange(first, n_samples + 1, hop, dtype=np.int64)


def score_stream(
    classifier: WaveformClassifier,
    waveform: np.ndarray,
    rate: int,
    settings: DetectorSettings | None = None,
    batch: int = 64,
) -> StreamScores:
    """Class probabilities of every hop of ``waveform`` (float mono at ``rate``), model calls batched."""
    settings = settings or DetectorSettings()
    y = np.asarray(waveform, dtype=np.float32).reshape(-1)
    window, _ = _window_samples(settings, rate, classifier)
    ends = window_ends(len(y), rate, settings, classifier)
    probs = np.zeros((len(ends), len(classifier.classes)), dtype=np.float64)
    for start in range(0, len(ends), batch):
        part = ends[start : start + batch]
        x = np.stack([classifier.features(y[e - window : e], rate) for e in part])
        probs[start : start + len(part)] = _probabilities(classifier, x)
    return StreamScores(ends / float(rate), probs, list(classifier.classes))


def detections_from_scores(scores: StreamScores, settings: DetectorSettings | None = None) -> list[Detection]:
    """Run the recogniser over precomputed per-hop scores (e.g. to try detector settings cheaply)."""
    recognizer = RecognizeCommands(scores.classes, settings or DetectorSettings())
    found = (recognizer.process(p, t) for t, p in zip(scores.times, scores.probabilities))
    return [d for d in found if d is not None]


def detect_stream(
    classifier: WaveformClassifier,
    waveform: np.ndarray,
    rate: int,
    settings: DetectorSettings | None = None,
    return_scores: bool = False,
) -> list[Detection] | tuple[list[Detection], StreamScores]:
    """Keyword detections in a long waveform, exactly as the live stream would report them.

    With ``return_scores`` the per-hop ``StreamScores`` come back too: ``(detections, scores)``.
    """
    settings = settings or DetectorSettings()
    scores = score_stream(classifier, waveform, rate, settings)
    detections = detections_from_scores(scores, settings)
    return (detections, scores) if return_scores else detections
