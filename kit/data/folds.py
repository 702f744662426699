"""The official k-fold protocols: which folds a dataset has, which ``split`` runs them, and the
leak check every fold must pass.

Why one table: ``kit train --folds all``, ``kit distill --folds all``, ``kit al --folds all`` and the
distillation benchmark must agree on what "every official fold" means for a dataset (ESC's five
folds, UrbanSound8K's ten, RAVDESS's six groups of four actors); if each command decided for
itself, their means over folds would not be comparable.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass

from deploy.runtime.errors import KitError

from ..options import parse_ints
from .types import AudioDataset


@dataclass(frozen=True)
class FoldPlan:
    """How to run a dataset under k-fold cross-validation.

    ``split`` is the ``load_dataset`` split whose ``test_fold`` selects the held-out fold (RAVDESS
    needs ``actors``; the others keep ``official``); ``folds`` are the valid ``test_fold`` values.
    """

    dataset: str
    split: str
    folds: tuple[int, ...]
    rule: str


_ALIASES = {"us8k": "urbansound8k", "urbansound": "urbansound8k", "esc_50": "esc50", "esc_10": "esc10"}
PLANS: dict[str, FoldPlan] = {
    "esc10": FoldPlan("esc10", "official", (1, 2, 3, 4, 5), "5 official folds (same-recording clips share a fold)"),
    "esc50": FoldPlan("esc50", "official", (1, 2, 3, 4, 5), "5 official folds (same-recording clips share a fold)"),
    "urbansound8k": FoldPlan(
        "urbansound8k", "official", tuple(range(1, 11)), "10 official folds fold1..fold10, never reshuffled"
    ),
    "ravdess": FoldPlan(
        "ravdess",
        "actors",
        (1, 2, 3, 4, 5, 6),
        "6 folds of 4 consecutive actors (2 female, 2 male each); fold k = actors 4k-3..4k",
    ),
}


def canonical_name(name: str) -> str:
    """The registry key of a built-in dataset name, aliases resolved (``us8k`` -> ``urbansound8k``)."""
    key = name.lower().replace("-", "_")
    return _ALIASES.get(key, key)


def fold_plan(dataset: str | os.PathLike) -> FoldPlan:
    """The k-fold protocol of a built-in dataset; a one-line error for datasets that have none."""
    key = canonical_name(os.fspath(dataset))
    plan = PLANS.get(key)
    if plan is None:
        raise KitError(
            f"--folds: dataset '{os.fspath(dataset)}' has no official folds (only {', '.join(sorted(PLANS))} and "
            "their aliases do); use its fixed split, or a CSV manifest with a fold column and --test-fold"
        )
    return plan


def parse_folds(text: str, plan: FoldPlan, option: str = "--folds") -> list[int]:
    """``all`` -> every fold of ``plan``; ``1,3`` or ``1-3`` -> those folds, each checked against the plan."""
    if text.strip().lower() in ("all", "cv"):
        return list(plan.folds)
    folds = parse_ints(text, option)
    for fold in folds:
        if fold not in plan.folds:
            raise KitError(
                f"{option}: fold {fold} is out of range for {plan.dataset} (folds {plan.folds[0]}..{plan.folds[-1]})"
            )
    return sorted(set(folds))


def check_test_fold(name: str, test_fold: int, folds: tuple[int, ...] | list[int]) -> None:
    """A one-line error when ``--test-fold`` is not one of the dataset's folds."""
    if test_fold not in folds:
        raise KitError(
            f"{name}: --test-fold {test_fold} is out of range (the dataset's folds are {min(folds)}..{max(folds)})"
        )


def check_groups_disjoint(dataset: AudioDataset, what: str = "group") -> AudioDataset:
    """Refuse a split in which one group (actor, Freesound recording) has clips in both train and test.

    Why: slices of one recording, or takes of one actor, on both sides let a model recognise the
    source instead of the class, and the accuracy no longer says anything about new recordings.
    """
    sides: dict[str, set[str]] = defaultdict(set)
    example: dict[tuple[str, str], str] = {}
    for clip in dataset.clips:
        sides[clip.group].add(clip.split)
        example.setdefault((clip.group, clip.split), clip.path.name)
    for group in sorted(sides):
        if {"train", "test"} <= sides[group]:
            raise KitError(
                f"{dataset.name}: {what} '{group}' is in both train ({example[(group, 'train')]}) and test "
                f"({example[(group, 'test')]}); {dataset.split_rule or 'the split'} must keep each {what} on one side"
            )
    return dataset
