"""``kit cl DATASET --memory 20 --task-size 2 --fill distill,herding,random --out RUN_DIR``: continual learning.

Why the command is thin: the experiment (task split, rehearsal memory, masked-head training,
checkpoints, table and figure) is ``kit.experiments.continual``, shared with ``bench/continual.py``;
this module maps options to ``ContinualSettings`` and leaves every default in one place. Options
left unset take the full setting, or the ``--quick`` one when that flag is given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

from deploy.runtime.errors import KitError
from kit.commands.distill import parse_params
from kit.commands.experiment_options import DataDir, LimitPerClass, Overwrite, Progress, Split, Task, TestFold
from kit.options import parse_seeds


def parse_names(text: str, option: str) -> tuple[str, ...]:
    """``"a,b, c"`` -> ("a", "b", "c"); an empty list is a user error naming ``option``."""
    names = tuple(dict.fromkeys(p.strip().lower() for p in text.split(",") if p.strip()))
    if not names:
        raise KitError(f"{option}: give at least one name")
    return names


def cl_command(
    dataset: str = typer.Argument(..., help="Dataset name (fsdd, speech_commands, esc10, esc50), folder or CSV."),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Run folder (config.json, cells.json, results.json, checkpoints, PNG)."
    ),
    memory: Optional[int] = typer.Option(
        None, "--memory", help="Rehearsal samples kept per old class (default 20; quick 10)."
    ),
    task_size: int = typer.Option(2, "--task-size", help="Classes per task."),
    fill: str = typer.Option("distill,herding,random", "--fill", help="Memory strategies: distill, herding, random."),
    bounds: bool = typer.Option(
        True, "--bounds/--no-bounds", help="Also run joint training (upper) and fine-tuning without memory (lower)."
    ),
    distill_method: str = typer.Option(
        "dm", "--distill-method", help="Distiller behind --fill distill (dm, dc, dsa, rfad, ...)."
    ),
    distill_steps: Optional[int] = typer.Option(
        None, "--distill-steps", help="Steps of the distiller per task (default 200; quick 10)."
    ),
    param: Optional[list[str]] = typer.Option(
        None, "--param", "-p", help="Any distiller parameter as KEY=VALUE (repeatable)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the class order of the task split."),
    seeds: Optional[str] = typer.Option(
        None, "--seeds", help="Repetitions (model init, batches, memory), e.g. 0,1,2 (default: --seed)."
    ),
    quick: bool = typer.Option(
        False, "--quick", help="Small setting: 30 clips per class, width 16, short training (tests, smoke runs)."
    ),
    width: Optional[int] = typer.Option(None, "--width", help="ConvNet width (default 128; quick 16)."),
    max_samples: Optional[int] = typer.Option(
        None, "--max-samples", help="Clips seen per task (default 8000; quick 1600)."
    ),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Training batch (default 64; quick 32)."),
    lr: float = typer.Option(1e-3, "--lr", help="Adam learning rate (divided by 10 half-way through each task)."),
    balanced: bool = typer.Option(
        True, "--balanced/--uniform", help="Class-balanced batches (each seen class equally often)."
    ),
    limit_per_class: LimitPerClass = None,
    threads: int = typer.Option(1, "--threads", help="Torch CPU threads."),
    data_dir: DataDir = None,
    split: Split = "official",
    task: Task = "kws10",
    test_fold: TestFold = 5,
    overwrite: Overwrite = False,
    progress: Progress = True,
) -> None:
    """Class-incremental learning with a rehearsal memory filled by distillation, herding or random.

    Tasks of --task-size classes; accuracy after each task and its average."""
    from distill.registry import METHODS  # lazy: pulls in torch, soundfile
    from kit.experiments.continual import QUICK, ContinualSettings, run_continual  # lazy: pulls in soundfile
    from kit.experiments.rundir import check_run_dir  # lazy: pulls in soundfile

    check_run_dir(out)
    if distill_method not in METHODS:
        raise KitError(f"--distill-method: unknown method '{distill_method}' (choose from {', '.join(METHODS)})")
    params = parse_params(param or [], distill_method, set(METHODS[distill_method].param_names()) - {"ipc", "seed"})
    given: dict[str, Any] = {
        "memory": memory,
        "distill_steps": distill_steps,
        "width": width,
        "max_samples": max_samples,
        "batch_size": batch_size,
        "limit_per_class": limit_per_class,
    }
    base = dict(QUICK) if quick else {}
    base.update({k: v for k, v in given.items() if v is not None})
    settings = ContinualSettings(
        fills=parse_names(fill, "--fill") if fill.strip() else (),
        bounds=bounds,
        task_size=task_size,
        order_seed=seed,
        seeds=tuple(parse_seeds(seeds)) if seeds is not None else (seed,),
        distill_method=distill_method,
        distill_params=params,
        lr=lr,
        balanced=balanced,
        threads=threads,
        **base,
    )
    run = run_continual(
        dataset,
        out,
        settings,
        data_dir=data_dir,
        split=split,
        task=task,
        test_fold=test_fold,
        overwrite=overwrite,
        progress=progress,
    )
    print_run(run)


def print_run(run: Any) -> None:
    """An experiment's first table, its summary and where its files are, on stdout."""
    console = Console()
    table = run.tables[0]
    console.print(f"[bold]{table['title']}[/]", highlight=False)
    console.print(" | ".join(table["columns"]), highlight=False)
    for row in table["rows"]:
        console.print(" | ".join(str(v) for v in row), highlight=False)
    figures = ", ".join(str(run.path / f["file"]) for f in run.figures)
    console.print(f"{run.summary}\nwrote {run.path / 'results.json'}, {figures}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("cl")(cl_command)
