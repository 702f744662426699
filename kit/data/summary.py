"""Facts about a dataset for ``kit data info``: counts per split and class, groups, durations, rates.

Why header-only: reading ``soundfile.info`` for thousands of files takes well under a second,
while decoding them would take minutes for 44.1 kHz ogg; the summary must be instant.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from ..audio import audio_info
from .types import AudioDataset


@dataclass
class SplitSummary:
    n_clips: int = 0
    per_class: dict[str, int] = field(default_factory=dict)
    n_groups: int = 0
    duration_min: float = 0.0
    duration_mean: float = 0.0
    duration_max: float = 0.0
    sample_rates: list[int] = field(default_factory=list)


def summarize(dataset: AudioDataset) -> dict[str, SplitSummary]:
    """One ``SplitSummary`` per split present; segment clips count their segment length."""
    infos = {}
    for path in sorted({clip.path for clip in dataset.clips}):
        infos[path] = audio_info(path)
    out: dict[str, SplitSummary] = {}
    for split in dataset.splits:
        clips = dataset.clips_in(split)
        durations = []
        rates: set[int] = set()
        for clip in clips:
            info = infos[clip.path]
            full = info.duration_s - clip.offset_s
            durations.append(min(clip.duration_s, full) if clip.duration_s is not None else full)
            rates.add(info.sample_rate)
        counts = Counter(clip.label for clip in clips)
        out[split] = SplitSummary(
            n_clips=len(clips),
            per_class={name: counts.get(name, 0) for name in dataset.classes},
            n_groups=len({clip.group for clip in clips}),
            duration_min=min(durations),
            duration_mean=sum(durations) / len(durations),
            duration_max=max(durations),
            sample_rates=sorted(rates),
        )
    return out


def groups_in_both(dataset: AudioDataset, exclude_prefix: str = "") -> set[str]:
    """Groups with clips on both the train and the test side (a leak, except for time-split recordings)."""
    sides: dict[str, set[str]] = defaultdict(set)
    for clip in dataset.clips:
        if not (exclude_prefix and clip.group.startswith(exclude_prefix)):
            sides[clip.group].add(clip.split)
    return {group for group, s in sides.items() if {"train", "test"} <= s}
