"""``kit train DATASET``: the production model on a whole training split, with the stream-robust recipe.

Why a module beside ``train.py``: the coreset path scores a coreset over seeds, while this one
trains the one model a device will run (``kit.training.fulldata``) and writes the same run
folder (``config.json``, ``metrics.json``, ``model.kit``), ready for ``kit export`` / ``kit bundle``.
The recipe's features are cached in the run folder, so a rerun after an interruption (or with
other training settings) skips straight to training.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from deploy.runtime.errors import KitError


def parse_range(text: str, option: str) -> tuple[float, float]:
    """``"5,30"`` -> (5.0, 30.0); a user error naming ``option`` otherwise."""
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise KitError(f"{option}: expected two numbers LOW,HIGH such as 5,30, got '{text}'") from None
    if low > high:
        raise KitError(f"{option}: LOW {low} exceeds HIGH {high}")
    return low, high


@dataclass
class DatasetTrainOptions:
    """Everything ``kit train DATASET`` was asked for (the CLI fills it; tests may too)."""

    dataset: str
    out: Path
    data_dir: Path | None = None
    task: str = "kws10"
    split: str = "official"
    test_fold: int = 5
    extra_train: list[Path] = field(default_factory=list)
    max_per_class: int | None = None
    use_recipe: bool = True
    recipe: dict[str, Any] = field(default_factory=dict)
    quiet: bool = False
    teachers: list[Path] = field(default_factory=list)
    teacher_weight: float = 0.5
    feature: str | None = None  # front-end kind; None = the dataset's own


def _recipe_progress(console: Console, enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not enabled,
    )


def train_dataset(options: DatasetTrainOptions, config: Any) -> dict[str, Any]:
    """Load, build the recipe set, train, score and write the run folder; returns the metrics."""
    from kit.training import (
        Recipe,
        load_for_training,
        train_on_dataset,
        write_run,
    )  # lazy: torch-side: inside the command
    from kit.training.recipe import planned_counts  # lazy: pulls in torch, soundfile
    from kit.training.teachers import check_teacher_files, check_teacher_weight  # lazy: pulls in torch

    console = Console(stderr=True)
    started = time.perf_counter()
    if not options.use_recipe and options.recipe.get("word_head", 0) > 0:
        raise KitError("--word-head needs the recipe (it trains on the recipe's word labels); drop --no-recipe")
    if not options.use_recipe and options.recipe.get("unknown_words_share") is not None:
        raise KitError("--unknown-words-share needs the recipe (it weighs the recipe's parts); drop --no-recipe")
    if options.teachers:  # before the features load: a typo should not cost minutes
        check_teacher_files(options.teachers)
        check_teacher_weight(options.teacher_weight)
    audio, fs = load_for_training(
        options.dataset,
        options.data_dir,
        task=options.task,
        split=options.split,
        test_fold=options.test_fold,
        extra_train=[str(p) for p in options.extra_train],
        limit_per_class=options.max_per_class,
        progress=not options.quiet,
        feature=options.feature,
    )
    recipe = Recipe(seed=config.seed, **options.recipe) if options.use_recipe else None
    options.out.mkdir(parents=True, exist_ok=True)
    run_config = {
        "command": "train",
        "mode": "dataset",
        "dataset": options.dataset,
        "task": options.task,
        "split": options.split,
        "test_fold": options.test_fold,
        "extra_train": [str(p) for p in options.extra_train],
        "max_per_class": options.max_per_class,
        "classes": fs.classes,
        "feature_config": fs.config.to_dict(),
        "recipe": recipe.to_dict() if recipe else None,
        "train": (recipe.train_config(config) if recipe else config).to_dict(),
        "source": fs.source,
        "teachers": [str(p) for p in options.teachers],
        "teacher_weight": options.teacher_weight if options.teachers else None,
        "data_dir": str(options.data_dir) if options.data_dir else None,
        "argv": sys.argv[1:],
    }
    with _recipe_progress(console, not options.quiet and recipe is not None) as bar:
        task = bar.add_task("recipe: augmenting", total=planned_counts(len(fs.y_train), recipe or Recipe(), fs.classes))
        run = train_on_dataset(
            options.out / "model.kit",
            audio,
            fs,
            config,
            recipe=recipe,
            data_dir=options.data_dir,
            cache=options.out / "recipe_set.npz",
            progress=not options.quiet,
            on_recipe=lambda k: bar.advance(task, k),
            teachers=options.teachers,
            teacher_weight=options.teacher_weight,
            dataset_run={"dataset": options.dataset, "task": options.task},
        )
    metrics = {
        "accuracy": run.trained.metrics["accuracy"],
        "n_test": run.trained.metrics["n_test"],
        "per_class_accuracy": run.per_class,
        "n_train": int(sum(v for k, v in run.counts.items() if k != "short clips placed in noise")),
        "training_set": run.counts,
        "recipe_notes": run.notes,
        "recipe_set_reused": run.recipe_cached,
        "train_stats": run.trained.train_stats,
        "seed": run.config.seed,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "test_split": fs.source.get("description"),
    }
    write_run(options.out, run_config, metrics)
    for note in run.notes:
        console.print(f"note: {note}", highlight=False)
    return metrics
