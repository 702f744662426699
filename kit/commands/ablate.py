"""``kit ablate DATASET --features fd_mfcc,mfcc,lpcc,logmel --method dm --ipcs 1,10,50 --out RUN_DIR``.

Why the command is thin: the experiment lives in ``kit.experiments.feature_ablation`` (shared
with ``bench/feature_ablation.py``); this module maps options to ``AblationSettings``. Options
left unset take the full setting, or the ``--quick`` one when that flag is given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from deploy.runtime.errors import KitError
from kit.commands.cl import print_run
from kit.commands.distill import parse_params
from kit.commands.experiment_options import DataDir, LimitPerClass, Overwrite, Progress, Split, Task, TestFold
from kit.options import parse_ints, parse_seeds


def ablate_command(
    dataset: str = typer.Argument(..., help="Dataset name (fsdd, speech_commands, esc10, esc50), folder or CSV."),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Run folder (config.json, cells.json, results.json, coresets, PNG)."
    ),
    features: str = typer.Option(
        "fd_mfcc,mfcc,lpcc,logmel", "--features", help="Front-ends to compare: fd_mfcc, mfcc, lpcc, logmel."
    ),
    method: str = typer.Option(
        "dm", "--method", "-m", help="Distillation (or selection) method: dm, dc, dsa, rfad, mtt, herding, ..."
    ),
    ipcs: Optional[str] = typer.Option(None, "--ipcs", help="Samples per class (default 1,10,50; quick 1,10)."),
    reference: bool = typer.Option(
        True, "--reference/--no-reference", help="Also score random real clips at each budget."
    ),
    distill_steps: Optional[int] = typer.Option(
        None,
        "--distill-steps",
        help="Steps of the distiller (default: the method's own, with its 280-s budget; quick 10).",
    ),
    param: Optional[list[str]] = typer.Option(
        None, "--param", "-p", help="Any method parameter as KEY=VALUE (repeatable)."
    ),
    seed: int = typer.Option(0, "--seed", help="Distillation / selection seed."),
    train_seeds: Optional[str] = typer.Option(
        None, "--train-seeds", help="Seeds of the scoring ConvNets (default 0,1,2; quick 0)."
    ),
    quick: bool = typer.Option(
        False, "--quick", help="Small setting: 30 clips per class, 10 short distiller steps, one width-16 scoring net."
    ),
    width: Optional[int] = typer.Option(None, "--width", help="Scoring ConvNet width (default 128; quick 16)."),
    max_samples: Optional[int] = typer.Option(
        None, "--max-samples", help="Clips seen per scoring run (default 16000; quick 1600)."
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
    """Feature ablation: distil under each front-end (FD-MFCC, MFCC, LPCC, log-mel) and score it.

    Every samples-per-class value, scored with the benchmark protocol; random real clips as the reference."""
    from distill.registry import METHODS  # lazy: pulls in torch, soundfile
    from kit.experiments.feature_ablation import (
        QUICK,
        AblationSettings,
        quick_method_params,
        run_feature_ablation,
    )  # lazy: pulls in soundfile
    from kit.experiments.rundir import check_run_dir  # lazy: pulls in soundfile

    check_run_dir(out)
    if method not in METHODS:
        raise KitError(f"--method: unknown method '{method}' (choose from {', '.join(METHODS)})")
    params = parse_params(param or [], method, set(METHODS[method].param_names()) - {"ipc", "seed"})
    scoring_seeds = None
    if train_seeds is not None:
        scoring_seeds = tuple(parse_seeds(train_seeds, "--train-seeds"))
    given: dict[str, Any] = {
        "distill_steps": distill_steps,
        "width": width,
        "max_samples": max_samples,
        "limit_per_class": limit_per_class,
        "train_seeds": scoring_seeds,
    }
    base = dict(QUICK) if quick else {}
    if quick:
        params = quick_method_params(method, params)
    base.update({k: v for k, v in given.items() if v is not None})
    if ipcs is not None:
        base["ipcs"] = parse_ints(ipcs, "--ipcs")
    settings = AblationSettings(
        features=tuple(p for p in features.split(",") if p.strip()),
        method=method,
        seed=seed,
        method_params=params,
        reference=reference,
        threads=threads,
        **base,
    )
    run = run_feature_ablation(
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


def register(app: typer.Typer) -> None:
    app.command("ablate")(ablate_command)
