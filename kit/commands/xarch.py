"""``kit xarch DATASET --out RUN_DIR``: the cross-architecture matrix (distil with A, train B).

Why a thin command: the matrix, its cells and its figures live in ``kit.experiments.cross_arch``
(shared with ``bench/cross_arch.py``); the command maps options to ``CrossArchSettings``, checks
them before any data is loaded, loads the data through ``kit.pipeline.load_training_set``
(cached features) and leaves a ``RunDir`` that ``kit report`` renders.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

from deploy.runtime.errors import KitError
from kit.commands.distill import parse_params
from kit.commands.experiment_options import DataDir, LimitPerClass, Overwrite, Progress, Split, Task, TestFold
from kit.options import parse_seeds


def parse_archs(text: str) -> tuple[str, ...]:
    archs = tuple(a.strip() for a in text.split(",") if a.strip())
    if not archs:
        raise KitError(f"--archs: expected names like convnet,resnet18,vgg11,dscnn, got '{text}'")
    return archs


def parse_arch_params(items: list[str]) -> dict[str, dict[str, Any]]:
    """``ARCH.KEY=VALUE`` strings (e.g. ``resnet18.width=64``) -> {arch: {key: value}} (JSON values)."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        name, sep, text = item.partition("=")
        arch, dot, key = name.strip().partition(".")
        if not sep or not dot or not arch or not key:
            raise KitError(f"--arch-param: expected ARCH.KEY=VALUE (e.g. resnet18.width=64), got '{item}'")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        out.setdefault(arch, {})[key] = value
    return out


def xarch_command(
    dataset: str = typer.Argument(..., help="Dataset name (fsdd, speech_commands, esc10, esc50), folder or CSV."),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Run folder (config.json, cells.json, results.json, coresets, plot)."
    ),
    method: str = typer.Option("dm", "--method", "-m", help="Distiller that takes a network: dm, dc, dsa or mtt."),
    ipc: Optional[int] = typer.Option(None, "--ipc", help="Clips per class of each coreset (default 10; quick 2)."),
    archs: str = typer.Option(
        ",".join(("convnet", "resnet18", "vgg11", "dscnn")),
        "--archs",
        help="Architectures, both as distillation network A and as trained network B.",
    ),
    arch_param: Optional[list[str]] = typer.Option(
        None, "--arch-param", help="ARCH.KEY=VALUE over the CPU-sized presets (repeatable), e.g. resnet18.width=64."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the distillations and of the random-clips row."),
    seeds: Optional[str] = typer.Option(
        None, "--seeds", help="Training seeds per cell, e.g. 0,1,2 (default 0,1,2; quick 0)."
    ),
    steps: Optional[int] = typer.Option(None, "--steps", help="Distillation steps (default: the method's)."),
    time_budget: Optional[float] = typer.Option(
        None, "--time-budget", help="Seconds per distillation (default 280; quick 30)."
    ),
    max_samples: Optional[int] = typer.Option(
        None, "--max-samples", help="Clips seen per evaluation training (default 16000; quick 600)."
    ),
    train_batch: Optional[int] = typer.Option(
        None, "--train-batch", help="Batch size of the evaluation trainings (default 256; quick 32)."
    ),
    param: Optional[list[str]] = typer.Option(
        None, "--param", "-p", help="Any distiller parameter as KEY=VALUE (repeatable)."
    ),
    random_row: bool = typer.Option(True, "--random/--no-random", help="Add the random-real-clips reference row."),
    quick: bool = typer.Option(
        False, "--quick", help="Small setting (2 clips per class, 4 steps, 1 seed, 30 clips per class)."
    ),
    data_dir: DataDir = None,
    split: Split = "official",
    task: Task = "kws10",
    test_fold: TestFold = 5,
    limit_per_class: LimitPerClass = None,
    overwrite: Overwrite = False,
    progress: Progress = True,
) -> None:
    """Distil a coreset with each architecture A and train every architecture B on it (DDFAD Table II)."""
    from distill.registry import METHODS  # lazy: pulls in torch, soundfile
    from kit.experiments import RunDir  # lazy: pulls in soundfile
    from kit.experiments.cross_arch import (
        CrossArchSettings,
        loader_options,
        run_config,
        run_cross_arch,
    )  # lazy: pulls in soundfile
    from kit.experiments.rundir import check_run_dir  # lazy: pulls in soundfile
    from kit.pipeline import load_training_set  # lazy: pulls in soundfile

    check_run_dir(out)
    if method not in METHODS:
        raise KitError(f"--method: unknown method '{method}' (choose from {', '.join(METHODS)})")
    settings = CrossArchSettings.quick() if quick else CrossArchSettings()
    distill_params = dict(settings.distill_params)
    if steps is not None:
        if steps < 1:
            raise KitError(f"--steps must be >= 1, got {steps}")
        distill_params["steps"] = steps
    if time_budget is not None:
        if time_budget <= 0:
            raise KitError(f"--time-budget must be positive, got {time_budget}")
        distill_params["time_budget_s"] = time_budget
    distill_params.update(parse_params(param or [], method, set(METHODS[method].param_names())))
    valid = set(METHODS[method].param_names())
    distill_params = {k: v for k, v in distill_params.items() if k in valid}  # e.g. batch_size of the quick preset
    for reserved in ("arch", "arch_kwargs", "ipc", "seed"):
        if reserved in distill_params:
            raise KitError(f"--param {reserved}: set by the experiment (use --archs / --arch-param / --ipc / --seed)")
    train = dict(settings.train)
    if max_samples is not None:
        if max_samples < 1:
            raise KitError(f"--max-samples must be >= 1, got {max_samples}")
        train["max_samples"] = max_samples
    if train_batch is not None:
        if train_batch < 1:
            raise KitError(f"--train-batch must be >= 1, got {train_batch}")
        train["batch_size"] = train_batch
    settings = CrossArchSettings(
        method=method,
        ipc=settings.ipc if ipc is None else ipc,
        archs=parse_archs(archs),
        seed=seed,
        seeds=settings.seeds if seeds is None else tuple(parse_seeds(seeds)),
        distill_params=distill_params,
        arch_params=parse_arch_params(arch_param or []),
        train=train,
        include_random=random_row,
    )
    settings.check()
    if quick and limit_per_class is None:
        limit_per_class = 30
    data = loader_options(
        dataset, data_dir, split=split, task=task, test_fold=test_fold, limit_per_class=limit_per_class
    )
    run = RunDir(
        out,
        "cross_arch",
        run_config(settings, data, quick),
        title=f"Cross-architecture transfer on {dataset}",
        overwrite=overwrite,
    )
    fs, loader = load_training_set(
        dataset,
        data_dir,
        split=split,
        task=task,
        test_fold=test_fold,
        limit_per_class=limit_per_class,
        progress=progress,
    )
    result = run_cross_arch(fs, loader, settings, run, progress=progress)
    names = result["archs"]
    print(f"{'coreset':24s}" + "".join(f"{'train ' + b:>18s}" for b in names))
    for row in result["rows"]:
        cells = result["matrix"][row]
        label = "random real clips" if row == "random" else f"distilled with {row}"
        print(
            f"{label:24s}" + "".join(f"{100 * cells[b]['mean']:>11.1f} ± {100 * cells[b]['std']:4.1f}" for b in names)
        )
    Console(stderr=True).print(
        f"wrote {run.path}/results.json, cross_arch.png ({len(result['rows'])} coresets x {len(names)} networks)",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    app.command("xarch")(xarch_command)
