"""RAVDESS emotional speech (and song): ``Actor_XX/MM-VV-EE-II-SS-RR-AA.wav``, labelled by emotion.

The seven two-digit fields are modality (03 = audio only), vocal channel (01 speech, 02 song),
emotion (01 neutral, 02 calm, 03 happy, 04 sad, 05 angry, 06 fearful, 07 disgust, 08 surprised),
intensity, statement, repetition and actor (01-24; odd = male, even = female). The label is the
emotion; the group is the actor.

RAVDESS ships no split, so the kit fixes two, both actor-disjoint (an actor's voice on both sides
would let a model recognise the speaker instead of the emotion):
- ``official`` (the default, a fixed documented rule): actors 21-24 (two male, two female) test,
  actors 1-20 train;
- ``actors`` (k-fold over actors): ``--test-fold k`` in 1..6 holds out actors 4k-3..4k, so six
  folds of four actors (two of each sex) cover everyone once; ``--folds all`` runs them all.
"""

from __future__ import annotations

import re
from pathlib import Path

from deploy.runtime.errors import KitError
from deploy.runtime.features import FeatureConfig

from ..audio import is_audio_file
from .errors import missing_data
from .folds import check_groups_disjoint, check_test_fold
from .types import AudioDataset, Clip

# Speech features at 16 kHz (from 48 kHz), 32-ms windows, 20-ms hop. Utterances last about 3-5 s
# with roughly a second of silence around the sentence, so the window is the loudest 3 s of the
# clip (150 frames), which holds the whole spoken sentence; shorter clips are centre-padded.
RAVDESS_CONFIG = FeatureConfig(sample_rate=16000, duration_s=3.0, window_ms=32.0, hop_ms=20.0)
EMOTIONS = {1: "neutral", 2: "calm", 3: "happy", 4: "sad", 5: "angry", 6: "fearful", 7: "disgust", 8: "surprised"}
N_ACTORS = 24
ACTOR_FOLDS = (1, 2, 3, 4, 5, 6)
OFFICIAL_TEST_ACTORS = (21, 22, 23, 24)
_NAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)\.wav$", re.IGNORECASE)
_ACTOR_FOLDER = re.compile(r"^Actor_(\d+)$", re.IGNORECASE)
_HINT = (
    "run `kit data download ravdess --data-dir {data_dir}` (208 MB) or unzip Audio_Speech_Actors_01-24.zip "
    "from https://zenodo.org/record/1188976 into {where}"
)


def parse_name(path: Path) -> tuple[str, int, str]:
    """(emotion, actor, vocal channel) from ``MM-VV-EE-II-SS-RR-AA.wav``; a one-line error otherwise."""
    match = _NAME.match(path.name)
    if not match:
        raise KitError(
            f"{path}: file name breaks the RAVDESS convention MM-VV-EE-II-SS-RR-AA.wav (seven 2-digit fields)"
        )
    modality, channel, emotion, intensity, statement, repetition, actor = (int(g) for g in match.groups())
    checks = (
        ("modality", modality, (1, 2, 3)),
        ("vocal channel", channel, (1, 2)),
        ("emotion", emotion, tuple(EMOTIONS)),
        ("intensity", intensity, (1, 2)),
        ("statement", statement, (1, 2)),
        ("repetition", repetition, (1, 2)),
        ("actor", actor, tuple(range(1, N_ACTORS + 1))),
    )
    for field, value, allowed in checks:
        if value not in allowed:
            raise KitError(f"{path}: {field} code {value:02d} is out of range ({allowed[0]:02d}..{allowed[-1]:02d})")
    folder = _ACTOR_FOLDER.match(path.parent.name)
    if folder and int(folder.group(1)) != actor:
        raise KitError(f"{path}: actor {actor:02d} in the file name but the file is in {path.parent.name}")
    return EMOTIONS[emotion], actor, "song" if channel == 2 else "speech"


def actor_fold(actor: int) -> int:
    """The k-fold over actors: fold k holds actors 4k-3..4k."""
    return (actor - 1) // 4 + 1


def load_ravdess(data_dir: Path, split: str = "official", test_fold: int = 6) -> AudioDataset:
    """Every audio-only file below ``<data_dir>/ravdess``, split by actor (see the module docstring)."""
    root = data_dir / "ravdess"
    if not root.is_dir():
        raise missing_data("ravdess", root, data_dir, _HINT.format(data_dir=data_dir, where=root))
    if split in ("official", "default"):
        test_actors = OFFICIAL_TEST_ACTORS
        rule = "fixed rule: actors 21-24 test, actors 1-20 train"
    elif split == "actors":
        check_test_fold("ravdess", test_fold, ACTOR_FOLDS)
        test_actors = tuple(a for a in range(1, N_ACTORS + 1) if actor_fold(a) == test_fold)
        rule = f"actor fold {test_fold} of 6: actors {test_actors[0]}-{test_actors[-1]} test, the other 20 train"
    else:
        raise KitError(
            f"ravdess: unknown split '{split}' "
            "(choose official (actors 21-24 test) or actors (k-fold, --test-fold 1..6))"
        )
    files = sorted(p for p in root.rglob("*") if p.is_file() and is_audio_file(p))
    if not files:
        raise KitError(f"{root}: no RAVDESS .wav files found (expected {root}/Actor_01/03-01-01-01-01-01-01.wav ...)")
    clips, channels = [], set()
    for path in files:
        emotion, actor, channel = parse_name(path)
        channels.add(channel)
        clips.append(
            Clip(path=path, label=emotion, split="test" if actor in test_actors else "train", group=f"actor{actor:02d}")
        )
    dataset = AudioDataset(
        name="ravdess",
        root=root,
        classes=sorted({clip.label for clip in clips}),
        clips=clips,
        feature_config=RAVDESS_CONFIG,
        description=(
            f"RAVDESS {' + '.join(sorted(channels))}, label = emotion, group = actor; window: the loudest "
            f"3 s of each 3-5-s clip; split {rule}"
        ),
        split_rule=rule,
        origin="ravdess",
    )
    return check_groups_disjoint(dataset, "actor")
