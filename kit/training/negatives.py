"""Hard negatives for ``_unknown_``: other speech and everyday sounds, from training material only.

Why: a listening device hears other words and household sounds far more often than its
keywords, and the ``_unknown_`` clips of Speech Commands are a few hundred words. Spoken digits
(FSDD's training takes, official split) and the loudest 1-s cuts of ESC-10's training folds
(dogs, babies, sneezes...) teach the model to say "none of mine". Their test parts (FSDD takes
0-4, ESC-10 fold 5) are what the streaming benchmark plays, so they are never used here.
"""

from __future__ import annotations

import os

import numpy as np

from deploy.runtime.errors import KitError

from ..audio import load_audio
from ..data import Clip, load_dataset
from .holdout import is_calibration_file

#: ESC-10's held-out fold (the kit's default ``test_fold``), never a source of negatives
ESC_TEST_FOLD = 5


def loudest_cuts(y: np.ndarray, rate: int, n: int) -> list[np.ndarray]:
    """The ``n`` loudest non-overlapping 1-s cuts of ``y`` (where an ESC sound actually is)."""
    count = len(y) // rate
    if count == 0:
        return []
    cuts = np.asarray(y[: count * rate], dtype=np.float32).reshape(count, rate)
    energy = np.mean(np.square(cuts, dtype=np.float64), axis=1)
    return [cuts[i] for i in np.argsort(energy)[::-1][:n] if energy[i] > 0]


def hard_negative_clips(
    data_dir: str | os.PathLike | None,
    fsdd_count: int,
    use_esc: bool,
    rng: np.random.Generator,
    exclude: str = "",
    holdout_percent: int = 0,
    part: str = "train",
) -> tuple[list[Clip], list[Clip], list[str]]:
    """``fsdd_count`` FSDD training takes and every ESC-10 clip outside the test fold, plus notes
    on any source that is absent (or is the dataset being trained, ``exclude``).

    ``holdout_percent`` > 0 splits those files by ``holdout.is_calibration_file``: ``part="train"``
    gives the ones a model trains on, ``part="calibration"`` the ones kept for its thresholds."""
    if part not in ("train", "calibration"):
        raise ValueError(f"part must be train or calibration, not {part!r}")

    def wanted(clip: Clip) -> bool:
        return is_calibration_file(clip.path, holdout_percent) == (part == "calibration")

    notes: list[str] = []
    digits: list[Clip] = []
    sounds: list[Clip] = []
    if fsdd_count > 0 and exclude != "fsdd":
        try:
            train = [c for c in load_dataset("fsdd", data_dir, split="official").clips_in("train") if wanted(c)]
            picked = rng.choice(len(train), size=min(fsdd_count, len(train)), replace=False)
            digits = [train[int(i)] for i in sorted(picked)]
        except KitError as exc:
            notes.append(f"no FSDD negatives ({exc})")
    if use_esc and exclude not in ("esc10", "esc50"):
        try:
            sounds = [
                c for c in load_dataset("esc10", data_dir, test_fold=ESC_TEST_FOLD).clips_in("train") if wanted(c)
            ]
        except KitError as exc:
            notes.append(f"no ESC-10 negatives ({exc})")
    return digits, sounds, notes


def hard_negatives(
    data_dir: str | os.PathLike | None,
    rate: int,
    fsdd_count: int,
    esc_cuts_per_clip: int,
    rng: np.random.Generator,
    exclude: str = "",
    holdout_percent: int = 0,
) -> tuple[list[np.ndarray], list[str]]:
    """Waveforms at ``rate``: each FSDD digit whole, the ``esc_cuts_per_clip`` loudest 1-s cuts of each
    ESC-10 clip; files of the calibration hold-out (``holdout_percent``) left out."""
    digits, sounds, notes = hard_negative_clips(
        data_dir, fsdd_count, esc_cuts_per_clip > 0, rng, exclude, holdout_percent, "train"
    )
    out = [load_audio(clip.path, rate) for clip in digits]
    for clip in sounds:
        out.extend(loudest_cuts(load_audio(clip.path, rate, clip.offset_s, clip.duration_s), rate, esc_cuts_per_clip))
    return out, notes
