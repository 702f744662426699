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
"""
from __future__ import annotations

import math
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
                key = f"{real_word}/{path.name[len(real_word) + 1:]}"
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
        return ["test" if key in testing else "val" if key in validation else "train" for _, _, key, _ in rows], _RULE_LISTS
    sides = [tf_which_set(speaker) for *_, speaker in rows]
    if "train" in sides:
        return sides, _RULE_WHICH_SET
    return ["test" if hash_percent(speaker) < FALLBACK_TEST_PERCENT else "train" for *_, speaker in rows], _RULE_FALLBACK


def _silence_clips(root: Path) -> list[Clip]:
    """``_silence_`` clips (split by file-name hash) plus time-disjoint 1-s noise cuts."""
    clips: list[Clip] = []
    silence_dir = root / SILENCE
    if silence_dir.is_dir():
        for path in sorted(p for p in silence_dir.iterdir() if is_audio_file(p)):
            side = "test" if hash_percent(path.name) < FALLBACK_TEST_PERCENT else "train"
            clips.append(Clip(path=path, label=SILENCE, split=side, group=f"{SILENCE}/{path.stem}"))
    noise_dir = root / BACKGROUND
    if noise_dir.is_dir():
        for path in sorted(p for p in noise_dir.iterdir() if is_audio_file(p)):
            total = audio_info(path).duration_s
            boundary = NOISE_TRAIN_FRACTION * total
            group = f"{BACKGROUND}/{path.stem}"
            for k in range(int(math.floor(boundary / NOISE_CUT_S))):
                clips.append(Clip(path, SILENCE, "train", group, offset_s=k * NOISE_CUT_S, duration_s=NOISE_CUT_S))
            for k in range(int(math.floor((total - boundary) / NOISE_CUT_S))):
                start = round(boundary + k * NOISE_CUT_S, 6)
                clips.append(Clip(path, SILENCE, "test", group, offset_s=start, duration_s=NOISE_CUT_S))
    return clips


def load_speech_commands(data_dir: Path, task: str = "kws10") -> AudioDataset:
    """Keyword clips (and for kws12 unknown words and silence), split by speaker."""
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
    classes = sorted(KEYWORDS)
    if task == "kws12":
        clips += _silence_clips(root)
        classes = sorted(classes + [UNKNOWN, SILENCE])
        rule += "; silence: _silence_ by sha1(file name) mod 100 < 20 -> test, noise cuts first 80% train / last 20% test"
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
