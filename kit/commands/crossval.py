"""``--folds all``: one run per official fold, and the mean ± std over folds that the papers report.

Why a module of its own: ``kit distill``, ``kit train`` (coreset and dataset modes) share the file
naming (``coreset.kit`` -> ``coreset.fold3.kit``, run folder -> ``<run>/fold3``) and the summary, so
``kit train c.kit --folds all`` finds exactly the coresets ``kit distill ... --folds all --out c.kit``
wrote, and every command reports folds the same way.
"""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path
from typing import Any

from deploy.runtime.artifact import atomic_write_text
from deploy.runtime.coreset import Coreset
from deploy.runtime.errors import KitError
from kit.data import FoldPlan, fold_plan, parse_folds

_FOLD_SUFFIX = re.compile(r"\.fold\d+$")


def plan_and_folds(dataset: str, text: str) -> tuple[FoldPlan, list[int]]:
    """The dataset's fold plan and the folds ``--folds TEXT`` selects (``all``, ``cv`` or a list)."""
    plan = fold_plan(dataset)
    return plan, parse_folds(text, plan)


def fold_file(path: Path, fold: int) -> Path:
    """``runs/c.kit`` -> ``runs/c.fold3.kit`` (an existing ``.foldN`` is replaced, not stacked)."""
    stem = _FOLD_SUFFIX.sub("", path.stem)
    return path.with_name(f"{stem}.fold{fold}{path.suffix}")


def fold_dir(run_dir: Path, fold: int) -> Path:
    return run_dir / f"fold{fold}"


def summarize_folds(per_fold: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean ± std over folds of each fold's mean accuracy (the papers' figure), and over every fold x seed run.

    ``per_fold`` rows hold ``fold``, ``mean`` and optionally ``accuracies`` (one per seed).
    """
    means = [float(row["mean"]) for row in per_fold]
    runs = [float(a) for row in per_fold for a in row.get("accuracies", [row["mean"]])]
    return {
        "folds": [int(row["fold"]) for row in per_fold],
        "per_fold": per_fold,
        "mean": statistics.fmean(means),
        "std": statistics.pstdev(means) if len(means) > 1 else 0.0,
        "mean_over_runs": statistics.fmean(runs),
        "std_over_runs": statistics.pstdev(runs) if len(runs) > 1 else 0.0,
        "n_runs": len(runs),
    }


def write_summary(run_dir: Path, summary: dict[str, Any], config: dict[str, Any]) -> Path:
    """``<run_dir>/cv.json``: the protocol, every fold's result and the mean ± std (written atomically)."""
    path = run_dir / "cv.json"
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({**config, **summary}, indent=1, sort_keys=True, default=str))
    return path


def require_fold_coresets(base: Path, folds: list[int]) -> list[Path]:
    """The per-fold coresets beside ``base``; a one-line error naming the first one missing."""
    paths = [fold_file(base, fold) for fold in folds]
    for path in paths:
        if not path.is_file():
            raise KitError(
                f"{path}: no coreset for this fold; write one per fold with "
                f"`kit distill DATASET --folds all --out {base}`"
            )
    return paths


def check_held_out(path: Path, fold: int) -> None:
    """A one-line error when the coreset at ``path`` was distilled with another fold held out (it may have
    seen fold ``fold``'s clips, so scoring it there would leak)."""
    held_out = Coreset.load(path).source.get("test_fold")
    if held_out != fold:
        raise KitError(
            f"{path}: this coreset held out fold {held_out}, not fold {fold}; it cannot be scored as fold {fold}"
        )


def format_cv(summary: dict[str, Any]) -> str:
    """``83.1 ± 2.0 % over 5 folds [1: 81.0, 2: ...]``."""
    folds = ", ".join(f"{row['fold']}: {100 * row['mean']:.1f}" for row in summary["per_fold"])
    return (
        f"{100 * summary['mean']:.2f} ± {100 * summary['std']:.2f} % over {len(summary['folds'])} folds "
        f"[{folds}] ({summary['n_runs']} runs: {100 * summary['mean_over_runs']:.2f} ± "
        f"{100 * summary['std_over_runs']:.2f} %)"
    )
