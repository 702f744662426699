"""Per-keyword detection thresholds for an operating point of "at most N false accepts per hour".

Why per keyword: one threshold for all words lets the word that is most easily triggered by
noise or by other words ("no" by "go", "off" by "up") spend the whole false-accept budget, while
the quiet words could fire at lower scores and miss less. Each keyword gets the lowest threshold
that keeps the total false accepts on a validation stream within the budget.

How: the device's own path scores every hop of the validation stream once (``score_stream``:
front-end, model, softmax); the smoothing (``RecognizeCommands``' average and minimum count) does
not depend on the threshold, so it is computed once too. For each keyword and each candidate
threshold, its detections (hops where it is the smoothed top label at or above the threshold,
thinned by the suppression period) are matched to its placed words: a detection within a word's
span (plus ``tolerance_s``) is a hit, any other a false accept. Thresholds start at the quietest
candidate of each keyword; then, greedily, the keyword whose move to a lower threshold gains the
most hits per added false accept is lowered, while the total stays within ``N x hours``.

A budget below one false accept over the whole validation stream cannot be told from zero, and a
budget the quietest thresholds still exceed cannot be met: both are one-line ``KitError`` naming
``--max-fa-per-hour``. A keyword none of whose validation words is found within the budget keeps
the quietest threshold; the choice reports its hits (0 of n) rather than failing the bundle.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from deploy.runtime.errors import KitError
from deploy.runtime.recognizer import DetectorSettings, RecognizeCommands
from deploy.runtime.stream import score_stream

GRID = (0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999)
TOLERANCE_S = 1.0


@dataclass
class KeywordCurve:
    """Hits and false accepts of one keyword on the validation stream at each grid threshold."""

    label: str
    words: int
    hits: list[int]
    false_accepts: list[int]


def smoothed_scores(
    times: np.ndarray, probabilities: np.ndarray, classes: Sequence[str], settings: DetectorSettings
) -> tuple[np.ndarray, np.ndarray]:
    """The recogniser's averaged scores per hop (H, K) and whether each hop had enough results."""
    recognizer = RecognizeCommands(list(classes), settings.with_(threshold=1.0))
    smoothed = np.zeros_like(probabilities, dtype=np.float64)
    ready = np.zeros(len(times), dtype=bool)
    for h, (t, p) in enumerate(zip(times, probabilities, strict=True)):
        recognizer.process(p, t)
        smoothed[h] = recognizer.smoothed
        ready[h] = len(recognizer._queue) >= settings.minimum_count
    return smoothed, ready


def keyword_curve(
    label: str,
    k: int,
    times: np.ndarray,
    smoothed: np.ndarray,
    ready: np.ndarray,
    events: Sequence[Any],
    settings: DetectorSettings,
    grid: Sequence[float] = GRID,
    tolerance_s: float = TOLERANCE_S,
) -> KeywordCurve:
    """Hits / false accepts of ``label`` (class index ``k``) at each threshold of ``grid``."""
    top = smoothed.argmax(axis=1) == k
    spans = [(e.start_s, e.end_s + tolerance_s) for e in events if e.kind == "keyword" and e.label == label]
    hits, fas = [], []
    for threshold in grid:
        candidates = np.flatnonzero(top & ready & (smoothed[:, k] >= threshold))
        last = -math.inf
        credited = [False] * len(spans)
        hit = fa = 0
        for h in candidates:
            t = float(times[h])
            if t - last < settings.suppression_s - 1e-9:
                continue
            last = t
            match = next((i for i, (a, b) in enumerate(spans) if not credited[i] and a <= t <= b), None)
            if match is None:
                fa += 1
            else:
                credited[match], hit = True, hit + 1
        hits.append(hit)
        fas.append(fa)
    return KeywordCurve(label, len(spans), hits, fas)


def check_budget(max_fa_per_hour: float, hours: float, option: str = "--max-fa-per-hour") -> float:
    """The false accepts allowed on a stream of ``hours``; an error when that is below one (or N is not > 0)."""
    if not math.isfinite(max_fa_per_hour) or max_fa_per_hour <= 0:
        raise KitError(f"{option} must be a number > 0, got {max_fa_per_hour!r}")
    if hours <= 0:
        raise KitError(f"--validation-minutes must be > 0, got {60 * hours:g}")
    budget = max_fa_per_hour * hours
    if budget < 1.0 - 1e-9:
        raise KitError(
            f"{option} {max_fa_per_hour:g}: no threshold can be shown to meet it on a {60 * hours:g}-min "
            f"validation stream (one false accept there is {1 / hours:.3g} per hour); "
            f"use --validation-minutes {math.ceil(60 / max_fa_per_hour)} or more"
        )
    return budget


def choose_thresholds(
    curves: Sequence[KeywordCurve],
    hours: float,
    max_fa_per_hour: float,
    grid: Sequence[float] = GRID,
    option: str = "--max-fa-per-hour",
) -> dict[str, Any]:
    """Per-keyword thresholds within ``max_fa_per_hour`` on a stream of ``hours`` (see the module docstring)."""
    budget = check_budget(max_fa_per_hour, hours, option)
    index = {c.label: len(grid) - 1 for c in curves}
    total = sum(c.false_accepts[-1] for c in curves)
    if total > budget:
        worst = max(curves, key=lambda c: c.false_accepts[-1])
        raise KitError(
            f"{option} {max_fa_per_hour:g}: no threshold meets it on the validation stream; even at "
            f"{grid[-1]} the keywords fire {total / hours:.1f} times per hour ('{worst.label}' "
            f"{worst.false_accepts[-1]} times)"
        )
    while True:
        best, best_ratio = None, 0.0
        for c in curves:
            i = index[c.label]
            for j in range(i - 1, -1, -1):  # any lower threshold: a step that gains nothing may precede one that does
                added, gained = c.false_accepts[j] - c.false_accepts[i], c.hits[j] - c.hits[i]
                if gained <= 0 or total + added > budget:
                    continue
                ratio = gained / max(added, 0.5)  # a step without a new false accept ranks first
                if ratio > best_ratio:
                    best, best_ratio = (c, j, added), ratio
        if best is None:
            break
        c, j, added = best
        total += added
        index[c.label] = j
    per_keyword = {
        c.label: {
            "threshold": float(grid[index[c.label]]),
            "words": c.words,
            "hits": c.hits[index[c.label]],
            "false_accepts": c.false_accepts[index[c.label]],
        }
        for c in curves
    }
    words = sum(c.words for c in curves)
    hits = sum(v["hits"] for v in per_keyword.values())
    return {
        "thresholds": {k: v["threshold"] for k, v in per_keyword.items()},
        "per_keyword": per_keyword,
        "max_fa_per_hour": max_fa_per_hour,
        "hours": round(hours, 4),
        "false_accepts": int(total),
        "fa_per_hour": round(total / hours, 3),
        "frr": round(1 - hits / words, 4) if words else None,
    }


def thresholds_for_stream(
    classifier: Any,
    waveform: np.ndarray,
    rate: int,
    events: Sequence[Any],
    settings: DetectorSettings,
    max_fa_per_hour: float,
    grid: Sequence[float] = GRID,
) -> dict[str, Any]:
    """Score ``waveform`` with ``classifier`` (a ``WaveformClassifier``) through the device's path, then choose."""
    scores = score_stream(classifier, waveform, rate, settings)
    smoothed, ready = smoothed_scores(scores.times, scores.probabilities, scores.classes, settings)
    curves = [
        keyword_curve(label, k, scores.times, smoothed, ready, events, settings, grid)
        for k, label in enumerate(scores.classes)
        if label not in settings.ignore
    ]
    hours = len(waveform) / float(rate) / 3600.0
    return choose_thresholds(curves, hours, max_fa_per_hour, grid)
