"""Free Spoken Digit Dataset: ``recordings/{digit}_{speaker}_{index}.wav`` at 8 kHz.

Two splits. "official" is the dataset README's rule (takes 0-4 of every speaker/digit are test),
which measures recognition of known voices. "speaker" holds out two whole speakers, which
measures generalisation to new voices: the harder and more honest number for keyword spotting.
"""

from __future__ import annotations

import re
from pathlib import Path

from deploy.runtime.errors import KitError
from deploy.runtime.features import FeatureConfig

from ..audio import is_audio_file
from .errors import missing_data
from .types import AudioDataset, Clip

FSDD_CONFIG = FeatureConfig(sample_rate=8000)
# Held out in the "speaker" split: one speaker with a neutral US accent and one with a French
# accent, both present since the first FSDD releases, so the split exists in every version.
FSDD_TEST_SPEAKERS = ("nicolas", "theo")
OFFICIAL_TEST_TAKES = range(0, 5)
_NAME = re.compile(r"^(\d)_([A-Za-z0-9]+)_(\d+)$")


def load_fsdd(data_dir: Path, split: str = "official") -> AudioDataset:
    """All recordings, labelled by digit, grouped by speaker, split by ``split``."""
    if split not in ("official", "speaker"):
        raise KitError(f"fsdd: unknown split '{split}' (choose official or speaker)")
    root = data_dir / "fsdd" / "recordings"
    if not root.is_dir():
        raise missing_data("fsdd", root, data_dir)
    clips: list[Clip] = []
    for path in sorted(p for p in root.iterdir() if is_audio_file(p)):
        match = _NAME.match(path.stem)
        if not match:
            raise KitError(f"{path}: not an FSDD file name ({{digit}}_{{speaker}}_{{index}}.wav)")
        digit, speaker, take = match.group(1), match.group(2), int(match.group(3))
        if split == "official":
            side = "test" if take in OFFICIAL_TEST_TAKES else "train"
        else:
            side = "test" if speaker in FSDD_TEST_SPEAKERS else "train"
        clips.append(Clip(path=path, label=digit, split=side, group=speaker))
    if split == "speaker" and not any(c.split == "test" for c in clips):
        raise KitError(f"fsdd: none of the held-out speakers {FSDD_TEST_SPEAKERS} is in {root}")
    rule = (
        f"official: takes {OFFICIAL_TEST_TAKES.start}-{OFFICIAL_TEST_TAKES.stop - 1} test, the rest train"
        if split == "official"
        else f"speaker: speakers {', '.join(FSDD_TEST_SPEAKERS)} held out for test"
    )
    return AudioDataset(
        name="fsdd",
        root=root,
        classes=sorted({c.label for c in clips}),
        clips=clips,
        feature_config=FSDD_CONFIG,
        description=f"Free Spoken Digit Dataset, 8 kHz digits 0-9; split {rule}",
        split_rule=rule,
        origin="fsdd",
    )
