"""``kit al DATASET --folds all``: the active-learning table once per official fold, then mean ± std over folds.

Why a module of its own: ``kit al`` runs one split; cross-validation adds the fold loop, the per-fold
run folders and coresets, and the fold summary, all with the conventions of ``crossval`` (``OUT/foldN``,
``C.foldN.kit``, ``OUT/cv.json``), so the figures line up with ``kit train --folds`` and the benchmark.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from kit.experiments.active_learning import METHOD_LABELS

from .crossval import check_held_out, fold_dir, plan_and_folds, require_fold_coresets, summarize_folds, write_summary

#: ``run_split(run_dir, split, test_fold, coreset_paths, cv_record) -> the active-learning results of that split``
RunSplit = Callable[[Path, str, int, list[Path], dict[str, Any]], dict[str, Any]]


def _row(kind: str, label: str, budget: str, per_fold: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
    """One table row over folds; the experiment's cells hold percentages, ``summarize_folds`` fractions."""
    folds = [
        {
            "fold": fold,
            "mean": cell["mean"] / 100.0,
            "accuracies": [a / 100.0 for a in cell["accuracies"]],
            "n": cell["n"],
        }
        for fold, cell in per_fold
    ]
    percent = sum(cell["percent"] for _, cell in per_fold) / len(per_fold)
    return {"kind": kind, "label": label, "budget": budget, "percent": percent, **summarize_folds(folds)}


def fold_rows(per_fold: list[tuple[int, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Acquisition x budget, coreset and full-data rows, each with mean ± std over folds (and over runs)."""
    first = per_fold[0][1]
    rows = []
    for method, cells in first["methods"].items():
        for i, cell in enumerate(cells):
            rows.append(
                _row(
                    "acquisition",
                    METHOD_LABELS.get(method, method),
                    cell["label"],
                    [(fold, res["methods"][method][i]) for fold, res in per_fold],
                )
            )
    for i, coreset in enumerate(first["coresets"]):
        rows.append(
            _row(
                "coreset", Path(coreset["file"]).name, "coreset", [(fold, res["coresets"][i]) for fold, res in per_fold]
            )
        )
    rows.append(_row("full", "full training data", "100 %", [(fold, res["full"]) for fold, res in per_fold]))
    return rows


def run_al_folds(
    dataset: str, folds_text: str, out: Path, coresets: list[Path], run_split: RunSplit, config: dict[str, Any]
) -> dict[str, Any]:
    """Every selected fold into ``OUT/foldN`` (coreset ``C`` read as ``C.foldN.kit``), then ``OUT/cv.json``.

    Every fold's coresets are checked before the first fold runs, so a missing one fails in a second,
    not after hours of acquisition."""
    plan, folds = plan_and_folds(dataset, folds_text)
    per_fold_paths = [require_fold_coresets(base, folds) for base in coresets]
    per_fold = []
    for k, fold in enumerate(folds):
        record = {"held_out_fold": fold, "folds": folds, "protocol": plan.rule}
        paths = [fold_paths[k] for fold_paths in per_fold_paths]
        for path in paths:
            check_held_out(path, fold)
        per_fold.append((fold, run_split(fold_dir(out, fold), plan.split, fold, paths, record)))
    rows = fold_rows(per_fold)
    summary = {"folds": folds, "rows": rows, "n_test": {f: res["n_test"] for f, res in per_fold if "n_test" in res}}
    write_summary(
        out, summary, {"command": "al", "mode": "cv", "dataset": plan.dataset, "protocol": plan.rule, **config}
    )
    return summary


def table_rows(summary: dict[str, Any]) -> list[list[str]]:
    """method | budget | % of training samples | accuracy, mean ± std over folds | mean ± std over runs."""
    return [
        [
            row["label"],
            row["budget"],
            f"{row['percent']:.1f}",
            f"{100 * row['mean']:.1f} ± {100 * row['std']:.1f}",
            f"{100 * row['mean_over_runs']:.1f} ± {100 * row['std_over_runs']:.1f} ({row['n_runs']})",
        ]
        for row in summary["rows"]
    ]
