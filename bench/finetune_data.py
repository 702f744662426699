"""Data for the on-device fine-tuning benchmark: a base task that never saw the new word.

Why build the base task by hand: ``kws12`` puts every non-keyword in ``_unknown_``, so a model
trained on it has already heard "eight" or "happy" (as unknown) and adding them later would not
test learning a new word. The base task here is the ten keywords plus ``_silence_``; the
``_unknown_`` folder (``<word>_<speaker>_nohash_<n>.wav``) is only a source of new words, split
by speaker into the few clips a user records and the held-out speakers it is tested on.
"""

from __future__ import annotations

import dataclasses
import os
from collections import defaultdict
from pathlib import Path

import numpy as np

from kit.data import load_dataset
from kit.data.speech_commands import KEYWORDS, UNKNOWN
from kit.data.splits import speech_commands_speaker
from kit.data.types import AudioDataset


def word_of(path: Path) -> str:
    """The spoken word of an ``_unknown_`` clip (its file-name prefix)."""
    return path.name.split("_", 1)[0]


def base_dataset(
    data_dir: str | os.PathLike,
    exclude_words: list[str],
    keep_unknown: bool = True,
    extra_train: list[str | os.PathLike] | tuple = (),
) -> AudioDataset:
    """Speech Commands kws12 without the clips of ``exclude_words`` (speaker-split as kws12).

    ``keep_unknown=False`` drops ``_unknown_`` altogether (10 keywords + silence). ``extra_train``
    folders (e.g. ``speech_commands_train``) join the training split through the loader, which
    refuses a speaker of the test split; their clips are filtered like the rest.
    """
    ds = load_dataset("speech_commands", data_dir, task="kws12", extra_train=extra_train)
    clips = [c for c in ds.clips if c.label != UNKNOWN or (keep_unknown and word_of(c.path) not in exclude_words)]
    classes = sorted({c.label for c in clips})
    what = f"_unknown_ without {', '.join(exclude_words)}" if keep_unknown else "_unknown_ removed"
    return dataclasses.replace(
        ds, classes=classes, clips=clips, description=ds.description + f"; fine-tune base task: {what}"
    )


def word_clips(data_dir: str | os.PathLike, word: str) -> list[Path]:
    """All ``_unknown_`` recordings of ``word`` (sorted), e.g. ``eight_<speaker>_nohash_0.wav``."""
    folder = Path(data_dir) / "speech_commands" / UNKNOWN
    return sorted(p for p in folder.glob(f"{word}_*_nohash_*.wav") if word_of(p) == word)


def speaker_of(path: Path) -> str:
    return speech_commands_speaker(path.name)


def split_by_speaker(paths: list[Path], n_train: int, seed: int) -> tuple[list[Path], list[Path]]:
    """``n_train`` clips from a seeded random set of speakers; the other speakers' clips test.

    Whole speakers go to one side, so the test clips are of voices the fine-tune never heard.
    Speakers are drawn in a seeded order and taken until ``n_train`` clips are reached (a
    speaker's surplus clips are dropped rather than leaked into the test side).
    """
    by_speaker: dict[str, list[Path]] = defaultdict(list)
    for path in paths:
        by_speaker[speaker_of(path)].append(path)
    speakers = sorted(by_speaker)
    order = np.random.default_rng(seed).permutation(len(speakers))
    train: list[Path] = []
    used: set[str] = set()
    for i in order:
        if len(train) >= n_train:
            break
        spk = speakers[i]
        used.add(spk)
        train.extend(by_speaker[spk][: n_train - len(train)])
    test = [p for spk in speakers if spk not in used for p in by_speaker[spk]]
    return train, test


def personal_split(ds: AudioDataset, speaker: str, per_class: int, seed: int) -> tuple[list[Path], list[Path]]:
    """One held-out (test-split) speaker's keyword clips: ``per_class`` per word to adapt, rest to test."""
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[Path]] = defaultdict(list)
    for clip in ds.clips:
        if clip.split == "test" and clip.group == speaker and clip.label in KEYWORDS and clip.duration_s is None:
            by_label[clip.label].append(clip.path)
    adapt, test = [], []
    for label in sorted(by_label):
        paths = sorted(by_label[label])
        order = rng.permutation(len(paths))
        take = min(per_class, len(paths) - 1)  # keep at least one clip of each word for testing
        adapt += [paths[i] for i in order[:take]]
        test += [paths[i] for i in order[take:]]
    return adapt, test


def personal_speakers(ds: AudioDataset, min_clips: int) -> list[str]:
    """Test-split speakers with at least ``min_clips`` keyword clips (enough to adapt and test)."""
    counts: dict[str, int] = defaultdict(int)
    for clip in ds.clips:
        if clip.split == "test" and clip.label in KEYWORDS:
            counts[clip.group] += 1
    return sorted(s for s, n in counts.items() if n >= min_clips)
