"""Background noise for training, read only from the training part of ``_background_noise_``.

Why a module of its own: the recipe mixes these recordings under training clips, while the
streaming benchmark builds its held-out streams from the *last* 20 % of the same files. Both
ask ``speech_commands.noise_regions`` for their part, so the split rule lives in one place and a
piece of noise the model trained on can never reappear in a test stream.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deploy.runtime.errors import KitError

from ..audio import load_audio
from .paths import resolve_data_dir
from .speech_commands import noise_regions


@dataclass(frozen=True)
class NoiseRecording:
    """The ``split`` part of one noise file at ``rate``: samples plus where they came from."""

    audio: np.ndarray
    path: Path
    start_s: float
    end_s: float
    rate: int


def background_noise(
    data_dir: str | os.PathLike | None = None, rate: int = 16000, split: str = "train"
) -> list[NoiseRecording]:
    """The ``split`` part ("train": first 80 %, "test": last 20 %) of every Speech Commands noise file."""
    root = resolve_data_dir(data_dir) / "speech_commands"
    regions = noise_regions(root, split)
    if not regions:
        raise KitError(f"{root / '_background_noise_'}: no background-noise recordings (the recipe's noise needs them)")
    return [
        NoiseRecording(load_audio(path, rate, begin, end - begin), path, begin, end, rate)
        for path, begin, end in regions
    ]
