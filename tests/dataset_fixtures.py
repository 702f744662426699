"""Small copies of UrbanSound8K, RAVDESS and ESC-50 in their exact published layouts.

Why generated, and why faithful: this machine has none of the three, and a loader tested against
a layout of its own invention would break on the first real download. Folder names, file names,
metadata columns (in the published order), sample rates, bit depths and channel counts follow the
real archives; only the number of clips and their length are small.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import soundfile as sf
from conftest import tone

US8K_CLASSES = (
    "air_conditioner",
    "car_horn",
    "children_playing",
    "dog_bark",
    "drilling",
    "engine_idling",
    "gun_shot",
    "jackhammer",
    "siren",
    "street_music",
)
US8K_COLUMNS = ["slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class"]
#: (rate, subtype, channels) cycled over the slices: the real archive mixes 8-96 kHz, 8-32 bit, mono and stereo
US8K_FORMATS = (
    (44100, "PCM_16", 2),
    (48000, "PCM_24", 1),
    (22050, "PCM_U8", 1),
    (96000, "PCM_16", 2),
    (11025, "PCM_16", 1),
    (16000, "FLOAT", 1),
)
ESC50_COLUMNS = ["filename", "fold", "target", "category", "esc10", "src_file", "take"]


def _sound(class_id: int, rate: int, seconds: float, channels: int, seed: int) -> np.ndarray:
    y = tone(250.0 * (class_id + 1) * (1 + 0.01 * (seed % 7)), rate, seconds, seed=seed)
    return np.stack([y, 0.8 * y], axis=1) if channels == 2 else y


def make_us8k(
    data_dir: Path,
    per_class_per_fold: int = 2,
    seconds: float = 0.5,
    *,
    with_meta: bool = True,
    missing: bool = True,
    folder: str = "UrbanSound8K",
) -> Path:
    """``<data_dir>/UrbanSound8K/{audio/fold1..10, metadata/UrbanSound8K.csv}``; one listed slice is absent on disk."""
    root = data_dir / folder
    rows = []
    fs_id = 100000
    for fold in range(1, 11):
        (root / "audio" / f"fold{fold}").mkdir(parents=True, exist_ok=True)
        for class_id, name in enumerate(US8K_CLASSES):
            fs_id += 1  # one Freesound recording per class and fold: its slices stay in one fold
            for slice_id in range(per_class_per_fold):
                file = f"{fs_id}-{class_id}-0-{slice_id}.wav"
                rate, subtype, channels = US8K_FORMATS[len(rows) % len(US8K_FORMATS)]
                sf.write(
                    root / "audio" / f"fold{fold}" / file,
                    _sound(class_id, rate, seconds, channels, len(rows)),
                    rate,
                    subtype=subtype,
                )
                rows.append(
                    [
                        file,
                        fs_id,
                        f"{slice_id * 4.0:.6f}",
                        f"{slice_id * 4.0 + seconds:.6f}",
                        1 + slice_id % 2,
                        fold,
                        class_id,
                        name,
                    ]
                )
    if missing:
        rows.append([f"{fs_id + 1}-3-0-0.wav", fs_id + 1, "0.0", "4.0", 1, 7, 3, "dog_bark"])  # listed, not on disk
    if with_meta:
        (root / "metadata").mkdir(parents=True, exist_ok=True)
        with (root / "metadata" / "UrbanSound8K.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(US8K_COLUMNS)
            writer.writerows(rows)
    return root


def ravdess_name(
    emotion: int, actor: int, *, channel: int = 1, intensity: int = 1, statement: int = 1, repetition: int = 1
) -> str:
    return f"03-{channel:02d}-{emotion:02d}-{intensity:02d}-{statement:02d}-{repetition:02d}-{actor:02d}.wav"


def make_ravdess(
    data_dir: Path,
    actors: range = range(1, 25),
    emotions: range = range(1, 9),
    seconds: float = 0.6,
    song_actor: int | None = 1,
) -> Path:
    """``<data_dir>/ravdess/Actor_XX/03-01-EE-01-SS-01-AA.wav`` at 48 kHz; even actors' files are stereo."""
    root = data_dir / "ravdess"
    for actor in actors:
        folder = root / f"Actor_{actor:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        for emotion in emotions:
            for statement in (1, 2):
                channels = 2 if actor % 2 == 0 else 1
                y = _sound(emotion - 1, 48000, seconds, channels, actor * 100 + emotion * 3 + statement)
                sf.write(folder / ravdess_name(emotion, actor, statement=statement), y, 48000, subtype="PCM_16")
        if actor == song_actor:
            sf.write(folder / ravdess_name(1, actor, channel=2), _sound(0, 48000, seconds, 1, 7), 48000)
    return root


def make_esc50(
    data_dir: Path, classes: int = 4, per_fold: int = 2, seconds: float = 0.5, *, missing: bool = True
) -> Path:
    """``<data_dir>/esc50/{audio/*.wav, meta/esc50.csv}`` (44.1 kHz mono, as published); every other class is ESC-10."""
    root = data_dir / "esc50"
    (root / "audio").mkdir(parents=True, exist_ok=True)
    (root / "meta").mkdir(parents=True, exist_ok=True)
    names = ("dog", "rooster", "pig", "cow", "frog", "cat")[:classes]
    rows = []
    for fold in range(1, 6):
        for target, name in enumerate(names):
            for take in range(per_fold):
                src = 10000 + fold * 100 + target
                file = f"{fold}-{src}-{'ABCD'[take]}-{target}.wav"
                sf.write(root / "audio" / file, _sound(target, 44100, seconds, 1, len(rows)), 44100)
                rows.append([file, fold, target, name, str(target % 2 == 0), src, "ABCD"[take]])
    if missing:
        rows.append(["5-99999-A-0.wav", 5, 0, names[0], "True", 99999, "A"])
    with (root / "meta" / "esc50.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(ESC50_COLUMNS)
        writer.writerows(rows)
    return root
