"""Google Speech Commands v0.02 in its official folder layout (one folder per word).

Split rules, in order of preference, and the one used is recorded in ``split_rule``:

1. ``validation_list.txt`` / ``testing_list.txt`` when present (the full release);
2. the dataset's own hashing rule (TensorFlow ``which_set``: SHA-1 of the speaker id, 10 % val,
   10 % test), which reproduces those lists when they are missing;
3. when rule 2 leaves the training split empty -- as for a copy of the official *test* set, whose
   speakers all hash into "test" by construction -- a speaker split with the same SHA-1 reduced
   mod 100 (< 20 test, else train), so a train/test split exists and no speaker straddles it.

Tasks: ``kws10`` is the ten keywords; ``kws12`` adds ``_unknown_`` (other words) and ``_silence_``
(the ``_silence_`` clips, split by file-name hash, plus 1-s cuts of ``_background_noise_``
recordings whose first 80 % in time trains and last 20 % tests, so no audio is on both sides).
``noise_regions`` is that 80/20 rule, the one place it lives: the ``_silence_`` cuts, the
training recipe's background noise and the streaming benchmark's held-out noise all come from it.

Extra training folders (``extra_train``, e.g. ``speech_commands_train/``: ``<word>/<speaker>_nohash_<n>.flac``)
add clips to the training split only. A speaker of an extra clip who is also a test speaker is
refused (naming the file): their voice would otherwise be scored as if never heard.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

from deploy.runtime.errors import KitError
from deploy.runtime.features import FeatureConfig

from ..audio import audio_info, is_audio_file
from .errors import missing_data
from .splits import hash_percent, speech_commands_speaker, tf_which_set
from .types import AudioDataset, Clip

KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
UNKNOWN = "_unknown_"
SILENCE = "_silence_"
BACKGROUND = "_background_noise_"
TASKS = ("kws10", "kws12")
SPEECH_COMMANDS_CONFIG = FeatureConfig(sample_rate=16000)
NOISE_CUT_S = 1.0
NOISE_TRAIN_FRACTION = 0.8
FALLBACK_TEST_PERCENT = 20

_RULE_LISTS = "official validation_list.txt/testing_list.txt"
_RULE_WHICH_SET = "TF which_set (sha1 of speaker, 10% val, 10% test)"
_RULE_FALLBACK = (
    "speaker split sha1(speaker) mod 100 < 20 -> test (TF which_set left no training clips: "
    "the folder holds only official test-set speakers)"
)


def _speech_files(root: Path, include_unknown: bool) -> list[tuple[Path, str, str, str]]:
    """(path, label, list key, speaker) for keyword clips and, if asked, the unknown words.

    The list key is how the official lists name the file (``word/<speaker>_nohash_<n>.wav``), also
    for the test set's ``_unknown_/<word>_<speaker>_nohash_<n>.wav`` files.
    """
    rows: list[tuple[Path, str, str, str]] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        word = folder.name
        if word in (SILENCE, BACKGROUND) or word.startswith("."):
            continue
        if word not in KEYWORDS and not include_unknown:
            continue
        label = word if word in KEYWORDS else UNKNOWN
        for path in sorted(p for p in folder.iterdir() if is_audio_file(p)):
            speaker = speech_commands_speaker(path.name)
            if word == UNKNOWN and "_nohash_" in path.name:
                prefix = path.name.split("_nohash_", 1)[0]
                real_word = prefix[: -len(speaker) - 1] if prefix.endswith("_" + speaker) else prefix
                key = f"{real_word}/{path.name[len(real_word) + 1 :]}"
            else:
                key = f"{word}/{path.name}"
            rows.append((path, label, key, speaker))
    return rows


def _read_list(path: Path) -> set[str]:
    if not path.is_file():
        return set()
    return {line.strip().replace("\\", "/") for line in path.read_text().splitlines() if line.strip()}


def _assign_speech_splits(root: Path, rows: list[tuple[Path, str, str, str]]) -> tuple[list[str], str]:
    """One split per row, and the rule that produced them."""
    validation, testing = _read_list(root / "validation_list.txt"), _read_list(root / "testing_list.txt")
    if validation or testing:
        return [
            "test" if key in testing else "val" if key in validation else "train" for _, _, key, _ in rows
        ], _RULE_LISTS
    sides = [tf_which_set(speaker) for *_, speaker in rows]
    if "train" in sides:
        return sides, _RULE_WHICH_SET
    return [
        "test" if hash_percent(speaker) < FALLBACK_TEST_PERCENT else "train" for *_, speaker in rows
    ], _RULE_FALLBACK


def noise_regions(root: Path, split: str) -> list[tuple[Path, float, float]]:
    """``(file, start_s, end_s)`` of every ``_background_noise_`` recording's ``split`` part.

    "train" is the first ``NOISE_TRAIN_FRACTION`` (80 %) of each file in time, "test" the rest:
    the one rule every user of the noise files (silence cuts, recipe noise, benchmark streams) follows.
    """
    if split not in ("train", "test"):
        raise KitError(f"noise regions: split must be train or test, not '{split}'")
    noise_dir = root / BACKGROUND
    if not noise_dir.is_dir():
        return []
    regions = []
    for path in sorted(p for p in noise_dir.iterdir() if is_audio_file(p)):
        total = audio_info(path).duration_s
        boundary = NOISE_TRAIN_FRACTION * total
        regions.append((path, 0.0, boundary) if split == "train" else (path, boundary, total))
    return regions


def _silence_clips(root: Path) -> list[Clip]:
    """``_silence_`` clips (split by file-name hash) plus time-disjoint 1-s noise cuts."""
    clips: list[Clip] = []
    silence_dir = root / SILENCE
    if silence_dir.is_dir():
        for path in sorted(p for p in silence_dir.iterdir() if is_audio_file(p)):
            side = "test" if hash_percent(path.name) < FALLBACK_TEST_PERCENT else "train"
            clips.append(Clip(path=path, label=SILENCE, split=side, group=f"{SILENCE}/{path.stem}"))
    for side in ("train", "test"):
        for path, begin, end in noise_regions(root, side):
            group = f"{BACKGROUND}/{path.stem}"
            for k in range(int(math.floor((end - begin) / NOISE_CUT_S))):
                start = round(begin + k * NOISE_CUT_S, 6)
                clips.append(Clip(path, SILENCE, side, group, offset_s=start, duration_s=NOISE_CUT_S))
    return clips


def _extra_clips(folders: Sequence[str | os.PathLike], task: str, test_speakers: set[str]) -> list[Clip]:
    """Training clips of the extra folders: keyword folders (and for kws12 other words as ``_unknown_``)."""
    clips: list[Clip] = []
    for folder in folders:
        root = Path(folder).expanduser()
        if not root.is_dir():
            raise KitError(f"--extra-train {root}: no such folder")
        rows = _speech_files(root, include_unknown=task == "kws12")
        if not rows:
            raise KitError(f"--extra-train {root}: no keyword folders with audio (<word>/<speaker>_nohash_<n>.wav)")
        for path, label, _, speaker in rows:
            if "_nohash_" not in path.name:
                raise KitError(f"{path}: extra training clips must be named <speaker>_nohash_<n>")
            if speaker in test_speakers:
                raise KitError(f"{path}: speaker '{speaker}' is also in the test split (extra clips train only)")
            clips.append(Clip(path=path, label=label, split="train", group=speaker))
    return clips


def load_speech_commands(
    data_dir: Path, task: str = "kws10", extra_train: Sequence[str | os.PathLike] = ()
) -> AudioDataset:
    """Keyword clips (and for kws12 unknown words and silence), split by speaker, plus the
    ``extra_train`` folders' clips in the training split."""
    if task not in TASKS:
        raise KitError(f"speech_commands: unknown task '{task}' (choose {' or '.join(TASKS)})")
    root = data_dir / "speech_commands"
    if not root.is_dir():
        raise missing_data("speech_commands", root, data_dir)
    missing = [word for word in KEYWORDS if not (root / word).is_dir()]
    if missing:
        raise KitError(f"speech_commands at {root}: keyword folder '{missing[0]}' is missing (incomplete download?)")
    rows = _speech_files(root, include_unknown=True)
    sides, rule = _assign_speech_splits(root, rows)
    clips = [
        Clip(path=path, label=label, split=side, group=speaker)
        for (path, label, _, speaker), side in zip(rows, sides)
        if task == "kws12" or label != UNKNOWN
    ]
    if extra_train:
        test_speakers = {clip.group for clip in clips if clip.split == "test"}
        test_speakers |= {speaker for (*_, speaker), side in zip(rows, sides) if side == "test"}
        clips += _extra_clips(extra_train, task, test_speakers)
        rule += "; extra training folders (train only): " + ", ".join(str(Path(f).expanduser()) for f in extra_train)
    classes = sorted(KEYWORDS)
    if task == "kws12":
        clips += _silence_clips(root)
        classes = sorted(classes + [UNKNOWN, SILENCE])
        rule += (
            "; silence: _silence_ by sha1(file name) mod 100 < 20 -> test, noise cuts first 80% train / last 20% test"
        )
    return AudioDataset(
        name="speech_commands",
        root=root,
        classes=classes,
        clips=clips,
        feature_config=SPEECH_COMMANDS_CONFIG,
        description=f"Google Speech Commands v0.02, task {task}; split: {rule}",
        split_rule=rule,
        origin="speech_commands",
    )
