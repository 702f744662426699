"""``kit distill DATASET --method M --ipc N --out FILE``: distil or select a coreset.

Why this command does so little itself: loading (``kit.features.load_feature_set``) and the
methods (``distill.make_distiller``) are library code shared with the benchmarks; the command
only maps options to parameters, records *everything* needed to reproduce the run (the coreset's
``params``/``source``/``extra`` and a ``<FILE>.config.json`` beside it) and writes atomically.
Only the training split is used to distil; the test split is never touched.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path
from typing import Any, Optional

import click
import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperCommand

from deploy.runtime.artifact import artifact_bytes, sha256_bytes
from deploy.runtime.errors import KitError
from deploy.runtime.features import FEATURE_KINDS
from deploy.runtime.safeio import atomic_write_files, check_output_path
from kit.distributed_launch import launch

#: the shortcut flags whose name is not ``--`` + the parameter name with dashes
_FLAG_NAMES = {"time_budget_s": "--time-budget", "learn_labels": "--learn-labels/--fixed-labels"}
_SHORTCUT = "Shortcut for -p {}=VALUE (see the method parameters below)."


def _flag(param: str) -> str:
    return _FLAG_NAMES.get(param, "--" + param.replace("_", "-"))


class DistillCommand(TyperCommand):
    """``kit distill``: its ``--help`` ends with the method-parameter table, built from the methods'
    ``Param`` declarations when help is shown (building it imports torch, which ``kit --help`` and
    every other command must not pay for)."""

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from distill.registry import parameter_table  # lazy: imports torch

        self.epilog = escape(parameter_table())
        super().format_help(ctx, formatter)


def distill_command(
    dataset: str = typer.Argument(..., help="Dataset name (fsdd, speech_commands, esc10, esc50), folder or CSV."),
    method: str = typer.Option("rfad", "--method", "-m", help="rfad, mtt, dc, dsa, dm, random, herding or kcenter."),
    ipc: int = typer.Option(1, "--ipc", help="Samples per class in the coreset."),
    out: Path = typer.Option(..., "--out", "-o", help="Coreset file to write (a kit artifact)."),
    seed: int = typer.Option(0, "--seed", help="Seed of selection / initialisation / random networks."),
    steps: Optional[int] = typer.Option(None, "--steps", help=_SHORTCUT.format("steps")),
    time_budget: Optional[float] = typer.Option(None, "--time-budget", help=_SHORTCUT.format("time_budget_s")),
    resume: bool = typer.Option(
        False, "--resume", help="Iterative methods: continue from the checkpoint (<OUT>.ckpt or --checkpoint)."
    ),
    checkpoint: Optional[Path] = typer.Option(
        None, "--checkpoint", help="Iterative methods: checkpoint file (default <OUT>.ckpt)."
    ),
    data_dir: Optional[Path] = typer.Option(
        None, "--data-dir", help="Where datasets live (default $KIT_DATA_DIR or the cache)."
    ),
    split: str = typer.Option("official", "--split", help="fsdd: official or speaker."),
    task: str = typer.Option("kws10", "--task", help="speech_commands: kws10 or kws12."),
    extra_train: list[Path] = typer.Option(
        [],
        "--extra-train",
        help="speech_commands: extra training folder "
        "(<word>/<speaker>_nohash_<n>.*), e.g. speech_commands_train (repeatable).",
    ),
    test_fold: int = typer.Option(
        5,
        "--test-fold",
        help="esc10/esc50 (1-5), urbansound8k (1-10), ravdess --split actors (1-6) or CSV: fold held out for testing.",
    ),
    folds: Optional[str] = typer.Option(
        None,
        "--folds",
        help="all (or a list like 1,3): one coreset per official "
        "fold, each from the other folds only, written as OUT with .foldN.",
    ),
    feature: Optional[str] = typer.Option(
        None, "--feature", help=f"{', '.join(FEATURE_KINDS)} (default: the dataset's)."
    ),
    device: Optional[str] = typer.Option(None, "--device", help=_SHORTCUT.format("device")),
    lr: Optional[float] = typer.Option(None, "--lr", help=_SHORTCUT.format("lr")),
    loss: Optional[str] = typer.Option(None, "--loss", help=_SHORTCUT.format("loss")),
    n_models: Optional[int] = typer.Option(None, "--n-models", help=_SHORTCUT.format("n_models")),
    width: Optional[int] = typer.Option(None, "--width", help=_SHORTCUT.format("width")),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help=_SHORTCUT.format("batch_size")),
    learn_labels: Optional[bool] = typer.Option(
        None, "--learn-labels/--fixed-labels", help=_SHORTCUT.format("learn_labels")
    ),
    val_fraction: Optional[float] = typer.Option(None, "--val-fraction", help=_SHORTCUT.format("val_fraction")),
    embedding: Optional[str] = typer.Option(None, "--embedding", help=_SHORTCUT.format("embedding")),
    limit_per_class: Optional[int] = typer.Option(
        None, "--limit-per-class", help="Use at most this many clips per class (quick runs)."
    ),
    threads: Optional[int] = typer.Option(
        None, "--threads", help="Torch CPU threads (default: torch's choice, all cores)."
    ),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip unreadable/corrupt/empty clips and report how many."),
    param: Optional[list[str]] = typer.Option(
        None,
        "--param",
        "-p",
        help="A method parameter as KEY=VALUE (repeatable), e.g. -p syn_steps=20; the table below lists them.",
    ),
    nproc: int = typer.Option(
        1, "--nproc", help="Data-parallel processes on this machine (torch.distributed; gloo on CPU, NCCL on GPUs)."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Distil (rfad, mtt, dc, dsa, dm) or select (random, herding, kcenter) IPC feature maps per class.

    Under ``torchrun`` (or with ``--nproc N``) every process holds a shard of the real data and the
    coreset gradients are combined across processes; rank 0 writes the outputs.
    """
    from distill.registry import METHODS, make_distiller  # lazy: pulls in torch, soundfile

    if method not in METHODS:
        raise KitError(f"--method: unknown method '{method}' (choose from {', '.join(METHODS)})")
    if ipc < 1:
        raise KitError(f"--ipc must be >= 1, got {ipc}")
    shortcuts = {
        "steps": steps,
        "time_budget_s": time_budget,
        "lr": lr,
        "loss": loss,
        "n_models": n_models,
        "width": width,
        "batch_size": batch_size,
        "learn_labels": learn_labels,
        "val_fraction": val_fraction,
        "device": device,
        "embedding": embedding,
    }
    valid = set(METHODS[method].param_names())
    params: dict[str, Any] = {}
    for name, value in shortcuts.items():
        if value is None:
            continue
        if name not in valid:
            raise KitError(f"{_flag(name).split('/')[0]} does not apply to --method {method}")
        params[name] = value
    params.update(parse_params(param or [], method, valid))
    check_distill_outputs(dataset, out, checkpoint, "checkpoint_path" in valid)
    if "checkpoint_path" in valid:
        params["checkpoint_path"] = str(checkpoint or out.with_name(out.name + ".ckpt"))
        params["resume"] = resume
        params["progress"] = progress
    elif resume or checkpoint is not None:
        raise KitError(f"--resume/--checkpoint apply to iterative methods only, not {method}")
    # checks every value against the method's declarations before any data is loaded
    make_distiller(method, ipc, seed=seed, **params).validate_params()
    if threads is not None and threads < 1:
        raise KitError(f"--threads must be >= 1, got {threads}")
    if nproc < 1:
        raise KitError(f"--nproc must be >= 1, got {nproc}")
    if folds is not None:
        _run_folds(
            dataset,
            folds,
            out,
            checkpoint,
            valid,
            {
                "dataset": dataset,
                "method": method,
                "ipc": ipc,
                "seed": seed,
                "params": params,
                "data_dir": None if data_dir is None else str(data_dir),
                "task": task,
                "feature": feature,
                "limit_per_class": limit_per_class,
                "skip_bad": skip_bad,
                "progress": progress,
                "threads": threads,
                "extra_train": [str(p) for p in extra_train],
                "argv": sys.argv[1:],
            },
            nproc,
        )
        return
    job = {
        "dataset": dataset,
        "method": method,
        "ipc": ipc,
        "out": str(out),
        "seed": seed,
        "params": params,
        "data_dir": None if data_dir is None else str(data_dir),
        "split": split,
        "task": task,
        "test_fold": test_fold,
        "feature": feature,
        "limit_per_class": limit_per_class,
        "skip_bad": skip_bad,
        "progress": progress,
        "threads": threads,
        "extra_train": [str(p) for p in extra_train],
        "argv": sys.argv[1:],
    }
    if nproc > 1:
        if "checkpoint_path" not in valid:
            raise KitError(f"--nproc applies to iterative methods only, not {method}")

        launch(run_distill_job, job, nproc)
        return
    run_distill_job(job)


def _run_folds(
    dataset: str, folds_text: str, out: Path, checkpoint: Path | None, valid: set[str], base: dict[str, Any], nproc: int
) -> None:
    """One coreset per official fold (``OUT`` -> ``OUT.foldN``), each distilled from the other folds only."""
    from .crossval import fold_file, plan_and_folds  # lazy: pulls in soundfile

    if nproc > 1:
        raise KitError("--folds: run the folds one after another with --nproc 1 (or launch one job per fold)")
    if checkpoint is not None:
        raise KitError("--checkpoint: with --folds each fold keeps its own checkpoint beside its OUT.foldN")
    plan, folds = plan_and_folds(dataset, folds_text)
    for fold in folds:
        check_distill_outputs(dataset, fold_file(out, fold), None, "checkpoint_path" in valid)
    for fold in folds:
        fold_out = fold_file(out, fold)
        params = dict(base["params"])
        if "checkpoint_path" in params:
            params["checkpoint_path"] = str(fold_out.with_name(fold_out.name + ".ckpt"))
        run_distill_job(
            {
                **base,
                "params": params,
                "out": str(fold_out),
                "split": plan.split,
                "test_fold": fold,
                "cv": {"held_out_fold": fold, "folds": folds, "protocol": plan.rule},
            }
        )


def config_path(out: Path) -> Path:
    """The run record written beside the coreset."""
    return out.with_name(out.name + ".config.json")


def check_distill_outputs(dataset: str, out: Path, checkpoint: Path | None, iterative: bool) -> None:
    """Refuse, before any data is loaded, an output the final write would fail on (see ``safeio``)."""
    inputs = (dataset,) if dataset and Path(dataset).exists() else ()
    check_output_path(out, "--out", inputs=inputs)
    check_output_path(config_path(out), "--out", inputs=inputs)
    if iterative:
        ckpt = checkpoint or out.with_name(out.name + ".ckpt")
        check_output_path(ckpt, "--checkpoint" if checkpoint is not None else "--out", inputs=(*inputs, out))


def parse_params(items: list[str], method: str, valid: set[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings -> parameters of the type ``method`` declares for KEY (``Param.parse``).

    ``valid`` limits the keys (a caller may reserve some, e.g. ``ipc``); each value is parsed and
    range-checked by the declaration, so ``-p steps=abc`` or ``-p lr=-1`` fail here, in one line.
    """
    from distill.registry import METHODS  # lazy: imports torch

    specs = METHODS[method].param_specs()
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise KitError(f"--param: expected KEY=VALUE, got '{item}'")
        if key not in valid:
            raise KitError(
                f"--param {key}: --method {method} has no parameter '{key}' (valid: {', '.join(sorted(valid))})"
            )
        out[key] = specs[key].parse(method, key, text)
    return out


def run_distill_job(job: dict[str, Any]) -> None:
    """Load, distil and write; run once per process (rank 0 writes, the others only compute)."""
    import torch  # lazy: torch only when used

    from distill.distributed import init_from_environment  # lazy: pulls in torch, soundfile
    from kit.pipeline import distill_coreset, jsonable, load_training_set  # lazy: pulls in soundfile

    if job["threads"] is not None:
        torch.set_num_threads(int(job["threads"]))
    group = init_from_environment(job["params"].get("device", "auto"))
    console = Console(stderr=True)
    out = Path(job["out"])
    # rank 0 fills the feature cache first, so the other ranks read it instead of extracting too
    if not group.is_main:
        group.barrier()
    fs, loader = load_training_set(
        job["dataset"],
        job["data_dir"],
        split=job["split"],
        task=job["task"],
        test_fold=job["test_fold"],
        feature=job["feature"],
        limit_per_class=job["limit_per_class"],
        skip_bad=job["skip_bad"],
        progress=job["progress"] and group.is_main,
        extra_train=job.get("extra_train", ()),
    )
    if group.is_main:
        group.barrier()
    if job.get("cv"):  # the coreset records which fold it held out (and never saw)
        loader.update(job["cv"])
    params = dict(job["params"])
    if not group.is_main and "progress" in params:
        params["progress"] = False
    coreset, distiller, summary = distill_coreset(fs, loader, job["method"], job["ipc"], seed=job["seed"], **params)
    if not group.is_main:
        return
    wall, resolved, source = summary["fit_time_s"], coreset.params, coreset.source
    coreset_data = artifact_bytes(coreset.to_artifact())
    run_config = {
        "command": "distill",
        "argv": job["argv"],
        "dataset": job["dataset"],
        "method": job["method"],
        "ipc": job["ipc"],
        "seed": job["seed"],
        "out": str(out),
        "coreset_sha256": sha256_bytes(coreset_data),
        "params": jsonable(resolved),
        "loader": loader,
        "feature_config": fs.config.to_dict(),
        "source": source,
        "history": jsonable(distiller.history_),
        "summary": summary,
        "world_size": group.world,
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "platform": platform.platform(),
        },
    }
    # one unit under the outputs' locks: two runs to one --out never leave one's coreset beside the other's record
    atomic_write_files(
        {out: coreset_data, config_path(out): json.dumps(run_config, indent=1, sort_keys=True, default=str).encode()}
    )
    extra = ""
    if summary.get("steps") is not None:
        extra = f", {summary['steps']} steps ({summary['stop_reason']})"
        if summary.get("best_step") is not None:
            extra += f", best step {summary['best_step']}"
    if group.distributed:
        extra += f", {group.world} processes"
    console.print(
        f"wrote {out}: {job['method']}, {len(coreset.features)} samples ({job['ipc']} per class, "
        f"{len(fs.classes)} classes) "
        f"in {wall:.1f} s{extra}",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    app.command("distill", cls=DistillCommand)(distill_command)
