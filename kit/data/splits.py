"""Deterministic split rules based on hashes of names, never on random state or listing order.

Why hashes: a clip's split must not change when files are added, removed or listed in a
different order, and all clips of one speaker (or recording) must land on the same side, or
test accuracy measures memorised voices instead of generalisation.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence

# From TensorFlow's speech_commands/input_data.py: the dataset's own, documented split rule.
MAX_NUM_WAVS_PER_CLASS = 2**27 - 1  # ~134M
_NOHASH = re.compile(r"_nohash_.*$")


def sha1_int(text: str) -> int:
    # surrogateescape: file names that are not UTF-8 reach Python as lone surrogates (PEP 383);
    # encoding them back gives the name's own bytes (as os.fsencode does), so they hash like any other
    return int(hashlib.sha1(text.encode("utf-8", "surrogateescape")).hexdigest(), 16)


def hash_percent(text: str) -> int:
    """``sha1(text) mod 100``: a stable bucket in 0..99."""
    return sha1_int(text) % 100


def speech_commands_speaker(file_name: str) -> str:
    """The speaker id of a Speech Commands file: the token just before ``_nohash_``.

    Keyword files are ``<speaker>_nohash_<n>.wav``; the test-set ``_unknown_`` folder prefixes
    the word (``<word>_<speaker>_nohash_<n>.wav``), which must not change the speaker.
    """
    stem = _NOHASH.sub("", file_name)
    return stem.rsplit("_", 1)[-1] if "_" in stem else stem


def tf_which_set(speaker: str, validation_percentage: float = 10.0, testing_percentage: float = 10.0) -> str:
    """TensorFlow's ``which_set``: "val", "test" or "train" from the SHA-1 of the speaker id.

    Mirrors ``tensorflow/examples/speech_commands/input_data.py``; the official
    ``testing_list.txt`` / ``validation_list.txt`` were generated with this rule.
    """
    percentage_hash = (sha1_int(speaker) % (MAX_NUM_WAVS_PER_CLASS + 1)) * (100.0 / MAX_NUM_WAVS_PER_CLASS)
    if percentage_hash < validation_percentage:
        return "val"
    if percentage_hash < validation_percentage + testing_percentage:
        return "test"
    return "train"


def held_out_groups(groups: Iterable[str], test_fraction: float = 0.2, seed: int = 0) -> set[str]:
    """Exactly ``ceil(test_fraction * n)`` groups (at least one, never all) chosen by hash.

    Ranking groups by ``sha1(seed:group)`` instead of thresholding each hash gives the requested
    fraction even with four speakers, where a per-group threshold could put none or all in test.
    """
    unique = sorted(set(groups))
    if len(unique) < 2:
        return set()
    n_test = min(len(unique) - 1, max(1, math.ceil(test_fraction * len(unique))))
    ranked = sorted(unique, key=lambda g: (sha1_int(f"{seed}:{g}"), g))
    return set(ranked[:n_test])


def stratified_by_name(names_by_class: dict[str, Sequence[str]], test_fraction: float = 0.2, seed: int = 0) -> set[str]:
    """Per class, the ``round(test_fraction * n)`` names (at least one when n >= 2) with the lowest hash.

    Used when no speaker/group can be parsed: stratifying keeps every class on both sides.
    """
    test: set[str] = set()
    for names in names_by_class.values():
        unique = sorted(set(names))
        if len(unique) < 2:
            continue
        n_test = min(len(unique) - 1, max(1, round(test_fraction * len(unique))))
        ranked = sorted(unique, key=lambda n: (sha1_int(f"{seed}:{n}"), n))
        test.update(ranked[:n_test])
    return test


def parse_group(file_name: str) -> str | None:
    """``<group>_...`` file names carry a speaker/source id; Speech Commands style ``_nohash_`` too."""
    stem = file_name.rsplit(".", 1)[0]
    if "_nohash_" in stem:
        return speech_commands_speaker(file_name)
    if "_" not in stem:
        return None
    head = stem.split("_", 1)[0]
    return head or None


def usable_groups(labels: Sequence[str], groups: Sequence[str | None]) -> bool:
    """Whether parsed groups look like speakers/sources rather than noise in the names.

    Refused when any file lacks a group, when every file is its own group (ids, not speakers),
    when there are fewer than two groups, or when each class is a single group (the prefix is
    then the label itself, e.g. FSDD's ``<digit>_...``).
    """
    if not groups or any(g is None for g in groups):
        return False
    unique = set(groups)
    if len(unique) < 2 or len(unique) == len(groups):
        return False
    per_class: dict[str, set[str]] = defaultdict(set)
    for label, group in zip(labels, groups):
        per_class[label].add(group)  # type: ignore[arg-type]
    return any(len(g) > 1 for g in per_class.values())
