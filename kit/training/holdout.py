"""The calibration hold-out: training material the model never trains on, kept to choose thresholds.

Why: ``kit bundle --max-fa-per-hour N`` picks per-keyword thresholds on a validation stream of
training material (the test speakers and the benchmark's streams stay untouched). When that stream
was built from clips the model had trained on, the model was sure of them, so the thresholds came
out low: asked for 2 false accepts per hour, a kws12 bundle gave 30.9 per hour on the held-out
benchmark streams (``bench/results/streaming_kws12_bundles.md``). A threshold is only honest when
it is chosen on material as new to the model as a user's kitchen.

The rule is fixed and needs no file: a training clip's *group* (its speaker for Speech Commands)
is held out when ``sha1("calibration:" + group) mod 100 < percent``; a dataset with fewer than
``MIN_GROUPS`` groups (FSDD has six speakers) would hold out all of a speaker or none, so there the
clip's file name is hashed instead (the same voices, other takes). A hard negative (an FSDD take,
an ESC-10 clip) when the same hash of its file name is. Whole speakers are held out, so the stream's
keywords come from voices the model never heard. ``_silence_`` clips (cuts of the noise files) are
never held out: the stream's noise bed already uses the training part of those files.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: default share of training speakers / negative files kept for threshold calibration (percent)
CALIBRATION_PERCENT = 10
SILENCE = "_silence_"
#: below this many speakers (groups) among the training clips, clips are held out one by one
MIN_GROUPS = 20


def _bucket(key: str) -> int:
    return int(hashlib.sha1(f"calibration:{key}".encode()).hexdigest(), 16) % 100


def calibration_mask(clips: Sequence[Any], percent: int, reference: Sequence[Any] | None = None) -> np.ndarray:
    """True for each training clip (with ``group``, ``label``, ``path``) of the calibration hold-out.

    ``reference`` (default ``clips``): the dataset's whole training split, which decides between
    holding out speakers and single clips, so a subset (``--max-per-class``) follows the same rule."""
    groups = {c.group for c in (clips if reference is None else reference) if c.label != SILENCE}
    by_group = len(groups) >= MIN_GROUPS
    return np.array(
        [
            percent > 0
            and c.label != SILENCE
            and _bucket(c.group if by_group else f"{c.path.name}@{c.offset_s}") < percent
            for c in clips
        ],
        dtype=bool,
    )


def is_calibration_file(path: str | Path, percent: int) -> bool:
    """Whether a hard-negative file (by its name) belongs to the calibration hold-out."""
    return percent > 0 and _bucket(Path(path).name) < percent
