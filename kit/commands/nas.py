"""``kit nas DATASET --out RUN_DIR``: the NAS-proxy experiment (DDFAD §5.2) as a resumable run folder.

Why a thin command: the grid, the proxies and the rank statistics live in
``kit.experiments.nas_proxy`` (shared with ``bench/nas_proxy.py``); the command maps options to
``NASSettings``, loads the data through ``kit.pipeline.load_training_set`` (cached features)
and leaves a ``RunDir`` that ``kit report`` renders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from deploy.runtime.errors import KitError
from kit.commands.experiment_options import DataDir, LimitPerClass, Overwrite, Progress, Split, Task, TestFold


def parse_coreset_options(items: list[str]) -> dict[str, str]:
    """``NAME=FILE`` strings -> {name: file}; ``distill=FILE`` replaces the in-run distillation."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, file = item.partition("=")
        name = name.strip()
        if not sep or not name or not file:
            raise KitError(f"--coreset: expected NAME=FILE (e.g. distill=dm20.kit), got '{item}'")
        if name in out:
            raise KitError(f"--coreset: proxy name '{name}' given twice")
        if not Path(file).is_file():
            raise KitError(f"--coreset {name}: file {file} does not exist")
        out[name] = str(file)
    return out


def nas_command(
    dataset: str = typer.Argument(..., help="Dataset name (fsdd, speech_commands, esc10, esc50), folder or CSV."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder (config.json, cells.json, results.json, plots)."),
    ipc: Optional[int] = typer.Option(
        None, "--ipc", help="Clips per class of each coreset proxy (default 20; quick 5)."
    ),
    coreset: Optional[list[str]] = typer.Option(
        None,
        "--coreset",
        help="Proxy from a coreset file, NAME=FILE (repeatable); distill=FILE replaces the in-run distillation.",
    ),
    distill_method: str = typer.Option("dm", "--distill-method", help="Method of the in-run distilled proxy."),
    distill_budget: Optional[float] = typer.Option(
        None, "--distill-budget", help="Seconds for the in-run distillation (default 280)."
    ),
    distill_steps: Optional[int] = typer.Option(
        None, "--distill-steps", help="Steps of the in-run distillation (default: the method's)."
    ),
    grid: Optional[str] = typer.Option(None, "--grid", help="Variant grid: full (72), medium (48) or quick (5)."),
    proxy_samples: Optional[int] = typer.Option(
        None, "--proxy-samples", help="Clips seen per training on a coreset proxy."
    ),
    early_samples: Optional[int] = typer.Option(
        None, "--early-samples", help="Clips seen per early-stopped full-data training."
    ),
    truth_samples: Optional[int] = typer.Option(
        None, "--truth-samples", help="Clips seen per ground-truth full-data training."
    ),
    quick: bool = typer.Option(False, "--quick", help="Small setting (5 variants, 30 clips per class, tiny budgets)."),
    seed: int = typer.Option(0, "--seed", help="Seed of selections, distillation and every training."),
    data_dir: DataDir = None,
    split: Split = "official",
    task: Task = "kws10",
    test_fold: TestFold = 5,
    limit_per_class: LimitPerClass = None,
    overwrite: Overwrite = False,
    progress: Progress = True,
) -> None:
    """NAS proxy: rank ConvNet variants by training on small proxies; Spearman rho vs full data.

    Proxies: distilled, random and herding sets (``--ipc`` per class) and early-stopped full data."""
    from kit.experiments.nas_proxy import (
        QUICK_LIMIT_PER_CLASS,
        NASSettings,
        open_run,
        run_nas_proxy,
    )  # lazy: pulls in torch, scipy
    from kit.experiments.rundir import check_run_dir  # lazy: pulls in soundfile
    from kit.pipeline import load_training_set  # lazy: pulls in soundfile

    check_run_dir(out)
    changes = {
        "ipc": ipc,
        "distill_method": distill_method,
        "distill_steps": distill_steps,
        "grid": grid,
        "proxy_samples": proxy_samples,
        "early_samples": early_samples,
        "truth_samples": truth_samples,
        "seed": seed,
        "coreset_files": parse_coreset_options(coreset or []),
    }
    if distill_budget is not None:
        if distill_budget <= 0:
            raise KitError(f"--distill-budget must be positive, got {distill_budget}")
        changes["distill_time_budget_s"] = distill_budget
    given = {k: v for k, v in changes.items() if v is not None}
    settings = NASSettings.quick(**given) if quick else NASSettings(**given)
    if quick and limit_per_class is None:
        limit_per_class = QUICK_LIMIT_PER_CLASS
    run = open_run(
        out,
        settings,
        dataset=dataset,
        data_dir=data_dir,
        split=split,
        task=task,
        test_fold=test_fold,
        limit_per_class=limit_per_class,
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
    result = run_nas_proxy(fs, loader, settings, run, progress=progress)
    console = Console(stderr=True)
    for proxy, agreement in result["agreement"].items():
        print(
            f"{proxy:32s} Spearman rho {agreement['spearman']:+.3f}  top-{settings.top_k} overlap "
            f"{agreement['top_k_overlap']:.2f}  {agreement['seconds']:.1f} s"
        )
    console.print(
        f"wrote {run.path}/results.json, nas_scatter.png ({len(result['variants'])} variants)", highlight=False
    )


def register(app: typer.Typer) -> None:
    app.command("nas")(nas_command)
