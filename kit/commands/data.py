"""``kit data``: download datasets, describe them, and pre-compute their features.

Why a command group: a user's first question is "is my data where the kit looks, and what is
in it?"; ``info`` answers it in a second (headers only), and ``features`` warms the cache so later
distill/train runs start immediately.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

DATASET_HELP = (
    "fsdd, speech_commands, esc10, esc50, urbansound8k (us8k), ravdess, a folder with one sub-folder per "
    "class, or a CSV manifest"
)
DataDir = Annotated[
    Optional[Path],
    typer.Option("--data-dir", help="folder holding the datasets (default: $KIT_DATA_DIR, else the user cache)"),
]
Split = Annotated[
    str,
    typer.Option(
        "--split",
        help="fsdd: official (takes 0-4 test) or speaker (held-out speakers); "
        "ravdess: official (actors 21-24 test) or actors (k-fold, --test-fold 1..6)",
    ),
]
Task = Annotated[
    str, typer.Option("--task", help="speech_commands: kws10 (10 keywords) or kws12 (+ _unknown_, _silence_)")
]
TestFold = Annotated[
    int,
    typer.Option(
        "--test-fold",
        help="esc10/esc50 (1-5), urbansound8k (1-10), ravdess --split actors (1-6) or manifest fold held out for test",
    ),
]


def info(
    dataset: Annotated[str, typer.Argument(help=DATASET_HELP)],
    data_dir: DataDir = None,
    split: Split = "official",
    task: Task = "kws10",
    test_fold: TestFold = 5,
) -> None:
    """Classes, clips per split and class, speakers/groups, durations and sample rates."""
    from kit.data import PLANS, canonical_name, load_dataset, summarize  # lazy: pulls in soundfile

    ds = load_dataset(dataset, data_dir, split=split, task=task, test_fold=test_fold)
    summary = summarize(ds)
    console = Console()
    console.print(f"[bold]{ds.name}[/] at {ds.root}", highlight=False)
    console.print(ds.description, highlight=False)
    plan = PLANS.get(canonical_name(dataset))
    if plan:
        console.print(
            f"cross-validation: {plan.rule}; `--folds all` runs folds {plan.folds[0]}..{plan.folds[-1]} "
            f"(split '{plan.split}')",
            highlight=False,
        )
    splits = list(summary)
    table = Table(title=f"{len(ds.classes)} classes, {len(ds.clips)} clips")
    table.add_column("class")
    for name in splits:
        table.add_column(name, justify="right")
    for name in ds.classes:
        table.add_row(name, *(str(summary[s].per_class[name]) for s in splits))
    table.add_section()
    table.add_row("clips", *(str(summary[s].n_clips) for s in splits))
    table.add_row("speakers/groups", *(str(summary[s].n_groups) for s in splits))
    table.add_row(
        "duration min/mean/max (s)",
        *(
            f"{summary[s].duration_min:.2f} / {summary[s].duration_mean:.2f} / {summary[s].duration_max:.2f}"
            for s in splits
        ),
    )
    table.add_row("sample rates (Hz)", *(", ".join(str(r) for r in summary[s].sample_rates) for s in splits))
    console.print(table)
    cfg = ds.feature_config
    console.print(
        f"default features: {cfg.kind} {cfg.shape} at {cfg.sample_rate} Hz, {cfg.duration_s:g} s", highlight=False
    )


def download(
    name: Annotated[
        str,
        typer.Argument(
            help="fsdd, speech_commands (2.4 GB), speech_commands_test (113 MB), "
            "urbansound8k (6.6 GB), ravdess (208 MB) or esc50 (646 MB)"
        ),
    ],
    data_dir: DataDir = None,
    force: Annotated[bool, typer.Option("--force", help="replace an existing copy")] = False,
) -> None:
    """Download a public archive, verify its pinned SHA-256, and unpack it into the data dir."""
    from kit.data import REGISTRY, canonical_name, download_dataset, resolve_data_dir  # lazy: pulls in soundfile

    spec = REGISTRY.get(canonical_name(name))
    console = Console()
    target = resolve_data_dir(data_dir) / spec.target if spec else None
    existed = bool(target and target.is_dir() and any(target.iterdir()))
    path = download_dataset(name, data_dir, force=force)
    if existed and not force:
        console.print(f"{name}: already present at {path} (use --force to download again)", highlight=False)
    else:
        console.print(f"{name}: verified and installed at {path}", highlight=False)


def features(
    dataset: Annotated[str, typer.Argument(help=DATASET_HELP)],
    data_dir: DataDir = None,
    split: Split = "official",
    task: Task = "kws10",
    test_fold: TestFold = 5,
    kind: Annotated[
        Optional[str], typer.Option("--kind", help="fd_mfcc, mfcc, log_mel or lpcc (default: the dataset's)")
    ] = None,
    jobs: Annotated[Optional[int], typer.Option("--jobs", "-j", help="worker processes (default: all cores)")] = None,
    skip_bad: Annotated[
        bool, typer.Option("--skip-bad", help="leave out unreadable clips instead of stopping")
    ] = False,
    limit_per_class: Annotated[
        Optional[int], typer.Option("--limit-per-class", help="at most this many clips per class and split")
    ] = None,
) -> None:
    """Extract (and cache) the features of a dataset; prints shapes and skipped clips."""
    from kit.data import load_dataset  # lazy: pulls in soundfile
    from kit.features import CACHE_STATS, load_feature_set  # lazy: pulls in soundfile

    ds = load_dataset(dataset, data_dir, split=split, task=task, test_fold=test_fold)
    config = ds.feature_config.with_(kind=kind) if kind else None
    fs = load_feature_set(
        ds,
        config=config,
        skip_bad=skip_bad,
        jobs=jobs,
        limit_per_class=limit_per_class,
        split=split,
        task=task,
        test_fold=test_fold,
    )
    console = Console()
    console.print(
        f"{ds.name}: train {tuple(fs.x_train.shape)}, test {tuple(fs.x_test.shape)}, {len(fs.classes)} classes; "
        f"{'cache hit' if CACHE_STATS.last_hit else 'extracted'} ({CACHE_STATS.last_path})",
        highlight=False,
    )
    n_skipped = fs.source["n_skipped"]
    if n_skipped:
        console.print(
            f"skipped {n_skipped} unreadable clip{'s' if n_skipped != 1 else ''}: "
            f"{', '.join(fs.source['skipped'][:5])}",
            highlight=False,
        )


def register(app: typer.Typer) -> None:
    """Attach the ``data`` command group to the ``kit`` app."""
    group = typer.Typer(help="Datasets: download, describe, extract features.", no_args_is_help=True)
    group.command("info")(info)
    group.command("download")(download)
    group.command("features")(features)
    app.add_typer(group, name="data")
