"""``kit train CORESET`` (train + score a coreset over seeds) and ``kit eval MODEL``.

Why training lives behind the coreset file: a coreset records its feature configuration,
normaliser and source dataset, so the command can rebuild the matching real test split by
itself; the user only chooses the architecture and seeds. torch is imported inside the
commands so ``kit --help`` stays fast.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from deploy.runtime.errors import KitError
from deploy.runtime.safeio import check_output_dir
from kit.options import parse_seeds


def _arch_kwargs(width: int | None, arch_json: str | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if arch_json:
        try:
            kwargs = json.loads(arch_json)
        except json.JSONDecodeError as exc:
            raise KitError(f"--arch-kwargs: not valid JSON ({exc.msg})") from None
        if not isinstance(kwargs, dict):
            raise KitError("--arch-kwargs: must be a JSON object, e.g. '{\"width\": 64}'")
    if width is not None:
        kwargs["width"] = width
    return kwargs


def train_command(
    coreset_path: Path = typer.Argument(..., metavar="CORESET", help="Coreset file (.kit) to train on."),
    arch: str = typer.Option("convnet", "--arch", help="Architecture: convnet, cnn4, ..."),
    width: int | None = typer.Option(None, "--width", help="Shortcut for the convnet width (default 128)."),
    arch_kwargs: str | None = typer.Option(None, "--arch-kwargs", help="Architecture arguments as JSON."),
    seeds: str = typer.Option("0,1,2", "--seeds", help="Training seeds, e.g. 0,1,2 or 0-4."),
    epochs: int = typer.Option(300, "--epochs", help="Epochs over the coreset (capped by --max-samples)."),
    max_steps: int | None = typer.Option(None, "--max-steps", help="Cap on optimiser steps."),
    max_samples: int | None = typer.Option(16_000, "--max-samples", help="Cap on clips seen per run (0 = none)."),
    lr: float = typer.Option(1e-3, "--lr", help="Learning rate (divided by 10 half-way)."),
    augment: bool = typer.Option(True, "--augment/--no-augment", help="Time shift + time/frequency masks."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Where the datasets live."),
    dataset: str | None = typer.Option(None, "--dataset", help="Override the coreset's source dataset (name or path)."),
    test_limit: int | None = typer.Option(None, "--test-limit", help="Score on at most this many test clips per class."),
    out: Path | None = typer.Option(None, "--out", help="Run directory (default runs/<coreset>-<arch>)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    threads: int = typer.Option(1, "--threads", help="torch threads (0 = torch's choice; 1 is fastest on busy shared cores)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Train one model per seed on a coreset and score it on the real test split (mean ± std)."""
    from deploy.runtime.coreset import Coreset
    from kit.training import TrainConfig, load_test_split, save_trained, train_eval_seeds, write_run

    console = Console(stderr=True)
    seed_list = parse_seeds(seeds)
    run_dir = out or Path("runs") / f"{coreset_path.stem}-{arch}"
    check_output_dir(run_dir, "--out", ("config.json", "metrics.json", "model.kit"), inputs=(coreset_path,))
    coreset = Coreset.load(coreset_path)
    config = TrainConfig(
        arch=arch,
        arch_kwargs=_arch_kwargs(width, arch_kwargs),
        epochs=epochs,
        max_steps=max_steps,
        max_samples=max_samples or None,
        lr=lr,
        augment=augment,
        device=device,
        threads=threads or None,
    )
    test = load_test_split(
        coreset.source, coreset.feature_config, coreset.normalizer, coreset.classes, data_dir,
        dataset=dataset, limit_per_class=test_limit, progress=not quiet,
    )
    started = time.perf_counter()
    result = train_eval_seeds(
        coreset.features, coreset.labels, test.x, test.y, len(coreset.classes), config,
        seeds=seed_list, progress=not quiet, keep_models=True,
    )
    models = result.pop("models")
    keep = seed_list.index(0) if 0 in seed_list else 0
    metrics = {
        **result,
        "model_seed": seed_list[keep],
        "test": test.info,
        "wall_seconds": time.perf_counter() - started,
    }
    run_config = {
        "command": "train",
        "coreset": str(coreset_path),
        "coreset_method": coreset.method,
        "coreset_ipc": coreset.ipc,
        "coreset_seed": coreset.seed,
        "n_coreset": int(len(coreset.features)),
        "soft_labels": coreset.labels.ndim == 2,
        "classes": coreset.classes,
        "feature_config": coreset.feature_config.to_dict(),
        "train": config.to_dict(),
        "seeds": seed_list,
        "source": coreset.source,
        "data_dir": str(data_dir) if data_dir else None,
        "dataset_override": dataset,
    }
    write_run(run_dir, run_config, metrics)
    save_trained(
        run_dir / "model.kit", models[keep], coreset, config.with_(seed=seed_list[keep]),
        metrics={"accuracy": result["per_seed"][keep]["accuracy"], "mean": result["mean"], "std": result["std"],
                 "n_test": test.info["n_test"]},
        coreset={"path": str(coreset_path), "method": coreset.method, "ipc": coreset.ipc, "seed": coreset.seed},
    )
    per_seed = ", ".join(f"{row['seed']}: {100 * row['accuracy']:.1f}" for row in result["per_seed"])
    print(
        f"{coreset_path.name} on {arch}: accuracy {100 * result['mean']:.2f} ± {100 * result['std']:.2f} % "
        f"over {len(seed_list)} seed(s) [{per_seed}] on {test.info['n_test']} test clips"
    )
    console.print(f"wrote {run_dir}/config.json, metrics.json, model.kit", highlight=False)


def eval_command(
    model_path: Path = typer.Argument(..., metavar="MODEL", help="Model file (.kit) written by kit train."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Where the datasets live."),
    dataset: str | None = typer.Option(None, "--dataset", help="Override the model's source dataset (name or path)."),
    test_limit: int | None = typer.Option(None, "--test-limit", help="At most this many test clips per class."),
    as_json: bool = typer.Option(False, "--json", help="Print accuracy and confusion matrix as JSON."),
    threads: int = typer.Option(1, "--threads", help="torch threads (0 = torch's choice)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Score a saved model on the test split of the dataset it was trained for."""
    from deploy.runtime.features import FeatureConfig
    from kit.models import load_model
    from kit.training import evaluate, load_test_split, torch_threads

    model, meta = load_model(model_path)
    if "feature_config" not in meta or "classes" not in meta:
        raise KitError(f"{model_path}: model does not record its classes and feature configuration")
    test = load_test_split(
        meta.get("source", {}), FeatureConfig.from_dict(meta["feature_config"]), meta["normalizer"], meta["classes"],
        data_dir, dataset=dataset, limit_per_class=test_limit, progress=not quiet,
    )
    with torch_threads(threads or None):
        result = evaluate(model, test.x, test.y)
    if as_json:
        print(json.dumps({"accuracy": result["accuracy"], "n": result["n"], "classes": meta["classes"],
                          "confusion": result["confusion"].tolist(), "test": test.info}, indent=1))
        return
    print(f"{model_path.name}: accuracy {100 * result['accuracy']:.2f} % on {result['n']} test clips of {test.info['dataset']}")


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
    app.command("eval")(eval_command)
