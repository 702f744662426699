"""``kit al DATASET --out RUN_DIR``: active-learning baselines vs distilled coresets (seed paper (a)).

Why a command of its own: the comparison only means something when the active-learning subsets,
the distilled coresets and the full data are scored with one protocol on one split; the command
maps options to ``kit.experiments.active_learning.ALSettings`` and leaves the work (resumable cells,
table, figure) to that module. ``--quick`` is the small setting the tests run on real recordings;
``--folds all`` repeats the run per official fold (``kit.commands.al_folds``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from deploy.runtime.errors import KitError
from kit.commands.experiment_options import DataDir, LimitPerClass, Overwrite, Progress, Split, Task, TestFold
from kit.options import parse_floats, parse_ints, parse_seeds


def al_command(
    dataset: str = typer.Argument(..., help="Dataset name (fsdd, speech_commands, esc10, esc50), folder or CSV."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder (config.json, cells.json, results.json, PNG)."),
    methods: Optional[str] = typer.Option(
        None, "--methods", help="Acquisitions: random,entropy,variation-ratios,bald (default all)."
    ),
    budgets: Optional[str] = typer.Option(
        None, "--budgets", help="Budgets in % of the training pool (default 20,30,40,60; quick 20,40)."
    ),
    tiny: Optional[str] = typer.Option(
        None,
        "--tiny",
        help="Tiny budgets in samples per class, the coreset sizes (default 1,10,50; quick 1; 'none' for none).",
    ),
    coreset: Optional[list[Path]] = typer.Option(
        None, "--coreset", help="Coreset file (kit distill) scored as an extra row (repeatable)."
    ),
    seeds: Optional[str] = typer.Option(
        None, "--seeds", help="Repetitions, e.g. 0,1,2 or 0-4 (default 0,1,2; quick 0)."
    ),
    seed: int = typer.Option(0, "--seed", help="Base seed of the active-learning loops."),
    quick: bool = typer.Option(
        False, "--quick", help="Small setting (30 clips per class, width-32 ConvNet, short training)."
    ),
    initial: int = typer.Option(1, "--initial", help="Class-balanced random seed set, samples per class."),
    growth: float = typer.Option(2.0, "--growth", help="Labelled set grows by this factor per round."),
    mc_passes: int = typer.Option(20, "--mc-passes", help="MC-dropout passes T (>= 20 for BALD as in the paper)."),
    dropout: float = typer.Option(0.5, "--dropout", help="Dropout before the head of the acquisition model."),
    max_samples: Optional[int] = typer.Option(
        None, "--max-samples", help="Training budget (clips seen) per scored model (default 16000)."
    ),
    acquisition_max_samples: Optional[int] = typer.Option(
        None, "--acquisition-max-samples", help="Training budget per acquisition round (default 4000)."
    ),
    full_max_samples: Optional[int] = typer.Option(
        None, "--full-max-samples", help="Training budget of the full-data row (default 60000)."
    ),
    width: Optional[int] = typer.Option(None, "--width", help="ConvNet width (default 128; quick 32)."),
    limit_per_class: LimitPerClass = None,
    data_dir: DataDir = None,
    split: Split = "official",
    task: Task = "kws10",
    test_fold: TestFold = 5,
    folds: Optional[str] = typer.Option(
        None,
        "--folds",
        help="all (or 1,3): run every official fold (esc10, esc50, "
        "urbansound8k, ravdess) into OUT/foldN, mean ± std over folds in OUT/cv.json; "
        "a --coreset C is read as C.foldN.kit per fold (kit distill --folds).",
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    overwrite: Overwrite = False,
    progress: Progress = True,
) -> None:
    """Active learning (random, entropy, variation ratios, BALD) vs distilled coresets and full data.

    The table of seed paper (a), Tables 1-2 (method, % of training samples, accuracy) at 20-60 % and tiny
    budgets, and a plot. Resumable cell by cell."""
    from kit.experiments import RunDir  # lazy: pulls in soundfile
    from kit.experiments.active_learning import (
        EXPERIMENT,
        QUICK_LIMIT_PER_CLASS,
        TITLE,
        ALSettings,
        experiment_config,
        load_coresets,
        parse_methods,
        quick_settings,
        run_active_learning,
        table_rows,
    )  # lazy: pulls in soundfile
    from kit.experiments.rundir import check_run_dir  # lazy: pulls in soundfile
    from kit.pipeline import load_training_set  # lazy: pulls in soundfile
    from kit.training import TrainConfig  # lazy: pulls in torch, soundfile

    check_run_dir(out)
    console = Console(stderr=True)
    for name, value in (
        ("--max-samples", max_samples),
        ("--acquisition-max-samples", acquisition_max_samples),
        ("--full-max-samples", full_max_samples),
        ("--width", width),
        ("--limit-per-class", limit_per_class),
    ):
        if value is not None and value < 1:
            raise KitError(f"{name} must be >= 1, got {value}")
    if initial < 1:
        raise KitError(f"--initial must be >= 1, got {initial}")
    if mc_passes < 1:
        raise KitError(f"--mc-passes must be >= 1, got {mc_passes}")
    if not 0.0 <= dropout < 1.0:
        raise KitError(f"--dropout must be in [0, 1), got {dropout}")
    if growth <= 1.0:
        raise KitError(f"--growth must be > 1, got {growth}")
    settings = quick_settings() if quick else ALSettings()

    def adjust(config: TrainConfig, budget: int | None) -> TrainConfig:
        kwargs = config.arch_kwargs if width is None else {**config.arch_kwargs, "width": width}
        return config.with_(device=device, arch_kwargs=kwargs, max_samples=budget or config.max_samples)

    settings.eval_train = adjust(settings.eval_train, max_samples)
    settings.acquisition_train = adjust(settings.acquisition_train, acquisition_max_samples)
    settings.full_max_samples = full_max_samples or settings.full_max_samples
    if methods is not None:
        settings.methods = parse_methods(methods)
    if budgets is not None:
        settings.budgets = parse_floats(budgets, "--budgets")
    if tiny is not None:
        settings.tiny = parse_ints(tiny, "--tiny", allow_none=True)
    if seeds is not None:
        settings.seeds = tuple(parse_seeds(seeds))
    settings.seed, settings.initial, settings.growth = seed, initial, growth
    settings.mc_passes, settings.dropout = mc_passes, dropout
    if "bald" in settings.methods and (dropout <= 0 or mc_passes < 2):
        raise KitError("--methods bald needs --dropout > 0 and --mc-passes >= 2 (MC dropout)")

    limit = limit_per_class or (QUICK_LIMIT_PER_CLASS if quick else None)

    def run_split(run_out: Path, split_name: str, fold: int, coreset_paths: list[Path], cv: dict | None = None) -> dict:
        fs, loader = load_training_set(
            dataset, data_dir, split=split_name, task=task, test_fold=fold, limit_per_class=limit, progress=progress
        )
        if cv:  # the run records which fold it held out (and never acquired from)
            loader.update(cv)
        rows = load_coresets(coreset_paths, fs)
        run = RunDir(
            run_out,
            EXPERIMENT,
            {**experiment_config(settings, loader, rows), "quick": quick},
            title=TITLE,
            overwrite=overwrite,
        )
        return {**run_active_learning(run, fs, settings, rows, progress=progress), "n_test": int(len(fs.y_test))}

    if folds is not None:
        from .al_folds import run_al_folds  # lazy: pulls in soundfile
        from .al_folds import table_rows as cv_rows  # lazy: pulls in soundfile

        summary = run_al_folds(
            dataset,
            folds,
            out,
            list(coreset or []),
            run_split,
            {"settings": settings.to_dict(), "quick": quick, "limit_per_class": limit},
        )
        table = Table(title=f"{TITLE}: {dataset}, {len(summary['folds'])}-fold cross-validation")
        for column in (
            "method",
            "budget",
            "% of training samples",
            "accuracy (mean ± std over folds)",
            "over fold x seed runs (n)",
        ):
            table.add_column(column)
        for cells in cv_rows(summary):
            table.add_row(*cells)
        Console().print(table)
        console.print(f"wrote {out}/cv.json and {out}/fold*/", highlight=False)
        return
    results = run_split(out, split, test_fold, list(coreset or []))
    table = Table(title=f"{TITLE}: {dataset} ({results['n_pool']} training clips, {results['n_test']} test clips)")
    for column in ("method", "% of training samples", "samples", "accuracy (mean ± std)"):
        table.add_column(column)
    for row in table_rows(results):
        table.add_row(*(str(v) for v in row))
    Console().print(table)
    console.print(f"wrote {out}/results.json, accuracy_vs_budget.png", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("al")(al_command)
