"""Turning a stream of per-window class probabilities into keyword detections.

Why not simply report the arg-max of each window: a live recogniser classifies an overlapping
window every ``hop_s``, so one spoken word yields several consecutive high-scoring windows, and a
single noisy window can spike. Following TensorFlow Lite Micro's micro_speech
``RecognizeCommands``, the scores are averaged over the last ``average_window_s`` seconds, a
keyword is reported only when the averaged top score reaches its threshold (``threshold``, or the
label's own in ``thresholds``) with at least
``minimum_count`` results in the averaging window, and no further keyword is reported during
``suppression_s`` after a detection (one word, one event). Labels in ``ignore`` (silence, unknown
words) may win the average, which suppresses keywords, but are never reported themselves.

Unlike micro_speech, the suppression period here applies to every label, not only to a repeat
of the same one: as a word slides through the window its averaged scores can briefly favour a
similar keyword ("no" -> "go"), and two events for one utterance are worse on a device than a
missed back-to-back command. Numpy only; times are seconds of stream time, not wall-clock time.
"""

from __future__ import annotations

import argparse
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

import numpy as np

from .errors import KitError

DEFAULT_IGNORE = ("_silence_", "_unknown_")


@dataclass(frozen=True)
class DetectorOption:
    """One user-settable detector setting, declared once for every command line that offers it.

    Why one declaration: the device's ``listen`` (argparse), ``kit live`` and ``kit bundle``
    (typer) all expose these settings; each reads this table (``DETECTOR_OPTIONS``) for the flag,
    type, help and bounds, and ``check`` is the single bounds check, used by ``DetectorSettings``
    itself (naming the field) and by the command lines (naming the flag).
    """

    field: str  # the DetectorSettings field
    flag: str  # the command-line option
    type: type  # int or float
    help: str
    minimum: float
    maximum: float | None = None
    #: the minimum itself is allowed (False for hop_s: a zero hop would never advance the stream)
    minimum_allowed: bool = True

    @property
    def default(self) -> Any:
        """The value a new bundle gets (``DetectorSettings``' field default)."""
        value = next(f.default for f in fields(DetectorSettings) if f.name == self.field)
        return None if value is MISSING else value

    @property
    def bounds(self) -> str:
        """The accepted range in words, e.g. "in [0, 1]" or "> 0" or ">= 1"."""
        if self.maximum is not None:
            return f"in [{self.minimum:g}, {self.maximum:g}]"
        return f"{'>=' if self.minimum_allowed else '>'} {self.minimum:g}"

    def check(self, value: Any, name: str | None = None) -> Any:
        """``value`` if it has this option's type and lies within its bounds, else a one-line ``KitError``
        naming ``name`` (the flag or field; the field by default)."""
        name = name or f"detector setting {self.field}"
        if self.type is int:
            if not isinstance(value, int) or isinstance(value, bool):
                raise KitError(f"{name} must be an integer {self.bounds}, got {value!r}")
        elif not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise KitError(f"{name} must be a finite number {self.bounds}, got {value!r}")
        low_ok = value >= self.minimum if self.minimum_allowed else value > self.minimum
        if not low_ok or (self.maximum is not None and value > self.maximum):
            raise KitError(f"{name} must be {self.bounds}, got {value!r}")
        return value


DETECTOR_OPTIONS: tuple[DetectorOption, ...] = (
    DetectorOption("threshold", "--threshold", float, "smoothed score needed for a detection", 0.0, 1.0),
    DetectorOption("average_window_s", "--average-window", float, "score smoothing window in seconds", 0.0),
    DetectorOption("suppression_s", "--suppression", float, "seconds without detections after one", 0.0),
    DetectorOption("minimum_count", "--minimum-count", int, "results needed in the smoothing window", 1),
    DetectorOption(
        "hop_s", "--hop", float, "seconds between classifications of the stream", 0.0, minimum_allowed=False
    ),
)
_THRESHOLD = DETECTOR_OPTIONS[0]
_WINDOW = DetectorOption(
    "window_s", "--window", float, "audio per classification (the model's clip length)", 0.0, minimum_allowed=False
)


@dataclass(frozen=True)
class DetectorSettings:
    """How the stream is windowed and how detections are decided (stored in every bundle).

    ``window_s`` is the audio the model sees per classification (its training clip length);
    ``hop_s`` the stride between classifications. The smoothing defaults were measured with a
    small Speech Commands model (stop/yes/silence/unknown) on real held-out keywords pasted into
    the six real background recordings: a word keeps a 1-s window's score high for only about
    0.4 s of hops, so averaging over 0.3 s (4 results at a 0.1-s hop) kept the smallest
    keyword peak at 0.64 while keyword scores away from the words stayed below 0.36; the 0.5
    threshold sits between the two. micro_speech's 1-s average suits its 30-ms hops and
    longer-lived scores, not these. The suppression period is micro_speech's 1.5 s: on the
    streaming benchmark (``bench/streaming.py``, 558 held-out keywords) a 1.0-s period let a
    width-32 stream-trained ConvNet fire 38 second events as words slid out of the window (at
    threshold 0.5); with 1.5 s no model in the benchmark fired one at any threshold, and the period
    still leaves room for the next command (the benchmark's keywords come 1.2-3 s apart).
    """

    window_s: float = 1.0
    hop_s: float = 0.1
    average_window_s: float = 0.3
    threshold: float = 0.5
    suppression_s: float = 1.5
    minimum_count: int = 3
    ignore: tuple[str, ...] = DEFAULT_IGNORE
    #: per-label thresholds (label -> smoothed score needed), e.g. chosen by ``kit bundle
    #: --max-fa-per-hour`` on a validation stream; a label not listed uses ``threshold``. Bundles
    #: written before this field load with none.
    thresholds: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ignore", tuple(str(label) for label in self.ignore))
        for option in (_WINDOW, *DETECTOR_OPTIONS):
            option.check(getattr(self, option.field))
        if not isinstance(self.thresholds, Mapping):
            raise KitError("detector setting thresholds must be a JSON object {label: threshold}")
        by_label = {
            str(label): _THRESHOLD.check(value, f"detector threshold of '{label}'")
            for label, value in self.thresholds.items()
        }
        object.__setattr__(self, "thresholds", dict(sorted(by_label.items())))
        if self.hop_s > self.window_s:
            raise KitError(f"detector settings: hop_s ({self.hop_s}) must not exceed window_s ({self.window_s})")

    def threshold_for(self, label: str) -> float:
        """The smoothed score ``label`` needs: its own threshold, else the common one."""
        return float(self.thresholds.get(label, self.threshold))

    def to_dict(self) -> dict:
        data = asdict(self)
        data["ignore"] = list(self.ignore)
        data["thresholds"] = dict(self.thresholds)
        if not data["thresholds"]:
            del data["thresholds"]  # bundles without per-label thresholds stay readable by older runtimes
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "DetectorSettings":
        if not isinstance(data, dict):
            raise KitError(f"detector settings must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise KitError(f"detector settings have unknown fields {unknown} (written by a newer kit?)")
        values = dict(data)
        if "ignore" in values:
            if not isinstance(values["ignore"], (list, tuple)):
                raise KitError("detector setting ignore must be a list of labels")
            values["ignore"] = tuple(values["ignore"])
        return cls(**values)

    def with_(self, **changes) -> "DetectorSettings":
        """A copy with some settings changed (None values are ignored: CLI options left unset)."""
        return DetectorSettings.from_dict({**self.to_dict(), **{k: v for k, v in changes.items() if v is not None}})

    def with_options(self, values: Mapping[str, Any]) -> "DetectorSettings":
        """A copy with the command-line detector options applied: ``values`` maps ``DETECTOR_OPTIONS``
        fields to a value or None (unset). A bad value is a one-line error naming its flag."""
        by_field = {option.field: option for option in DETECTOR_OPTIONS}
        unknown = sorted(set(values) - set(by_field))
        if unknown:
            raise KitError(f"unknown detector options {unknown} (known: {', '.join(sorted(by_field))})")
        checked = {k: by_field[k].check(v, by_field[k].flag) for k, v in values.items() if v is not None}
        return self.with_(**checked)


def add_detector_options(parser: argparse.ArgumentParser, title: str = "detector") -> None:
    """One argparse option per ``DETECTOR_OPTIONS`` entry (default None: keep the base settings)."""
    group = parser.add_argument_group(title)
    for option in DETECTOR_OPTIONS:
        group.add_argument(
            option.flag, type=option.type, default=None, dest=option.field, help=f"{option.help} ({option.bounds})"
        )


def detector_options(args: argparse.Namespace) -> dict[str, Any]:
    """The detector option values parsed by ``add_detector_options`` ({field: value or None})."""
    return {option.field: getattr(args, option.field) for option in DETECTOR_OPTIONS}


@dataclass(frozen=True)
class Detection:
    """A reported keyword: its label, the averaged score that triggered it, and the stream time
    (seconds, end of the audio window of the result that triggered it)."""

    label: str
    score: float
    time_s: float

    def to_dict(self) -> dict:
        return {"label": self.label, "score": round(float(self.score), 6), "time_s": round(float(self.time_s), 6)}


class RecognizeCommands:
    """Stateful smoother + decision rule; feed it one probability vector per hop, in time order.

    ``process`` returns a ``Detection`` when a new keyword is recognised, else None. The last
    averaged scores stay available as ``smoothed`` (for displays).
    """

    def __init__(self, classes: list[str], settings: DetectorSettings | None = None) -> None:
        self.classes = [str(c) for c in classes]
        if len(self.classes) < 2:
            raise KitError(f"a recogniser needs at least 2 classes, got {len(self.classes)}")
        self.settings = settings or DetectorSettings()
        self._reportable = np.array([c not in self.settings.ignore for c in self.classes])
        self._thresholds = np.array([self.settings.threshold_for(c) for c in self.classes])
        self.reset()

    def reset(self) -> None:
        """Forget the history (e.g. when the audio source restarts)."""
        self._queue: deque[tuple[float, np.ndarray]] = deque()
        self._last_detection_time = -math.inf
        self._last_time = -math.inf
        self.smoothed: np.ndarray | None = None

    def process(self, probabilities: np.ndarray, time_s: float) -> Detection | None:
        """Add the result for the window ending at ``time_s``; return a new detection or None."""
        scores = np.asarray(probabilities, dtype=np.float64).reshape(-1)
        if scores.shape != (len(self.classes),):
            raise KitError(f"recogniser: got {scores.size} scores for {len(self.classes)} classes")
        time_s = float(time_s)
        if time_s < self._last_time:
            raise KitError(
                f"recogniser: results must arrive in time order (got {time_s:.3f} s after {self._last_time:.3f} s)"
            )
        self._last_time = time_s
        self._queue.append((time_s, scores))
        # Keep the results of the last average_window_s seconds (the newest always stays); a small
        # tolerance keeps exactly-on-the-edge results despite float hop arithmetic.
        while len(self._queue) > 1 and time_s - self._queue[0][0] > self.settings.average_window_s + 1e-9:
            self._queue.popleft()
        self.smoothed = np.mean([s for _, s in self._queue], axis=0)
        if len(self._queue) < self.settings.minimum_count:
            return None
        top = int(np.argmax(self.smoothed))
        score = float(self.smoothed[top])
        if not self._reportable[top] or score < self._thresholds[top]:
            return None
        if time_s - self._last_detection_time < self.settings.suppression_s - 1e-9:
            return None
        self._last_detection_time = time_s
        return Detection(self.classes[top], score, time_s)
