"""``kit train CORESET|DATASET`` (score a coreset over seeds, or train the production model on a
whole dataset with the recipe: ``train_dataset.py``) and ``kit eval MODEL``.

Why training lives behind the coreset file: a coreset records its feature configuration,
normaliser and source dataset, so the command can rebuild the matching real test split by
itself; the user only chooses the architecture and seeds. torch is imported inside the
commands so ``kit --help`` stays fast.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from deploy.runtime.coreset import Coreset
from deploy.runtime.errors import KitError
from deploy.runtime.features import FEATURE_KINDS, FeatureConfig
from deploy.runtime.safeio import check_output_dir
from kit.options import parse_seeds

from .train_dataset import DatasetTrainOptions, parse_range, train_dataset


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


def _is_coreset(text: str) -> bool:
    """A ``.kit`` file is a coreset; anything else (a name, a folder, a CSV) is a dataset."""
    return Path(text).suffix.lower() == ".kit"


def train_command(
    source: str = typer.Argument(
        ...,
        metavar="CORESET|DATASET",
        help="A coreset (.kit), or a dataset: fsdd, speech_commands, esc10, a folder, a CSV.",
    ),
    arch: str = typer.Option("convnet", "--arch", help="Architecture: convnet, cnn4, dscnn, ... (see `kit models`)."),
    width: int | None = typer.Option(None, "--width", help="Shortcut for the convnet width (default 128)."),
    arch_kwargs: str | None = typer.Option(None, "--arch-kwargs", help="Architecture arguments as JSON."),
    seeds: str = typer.Option("0,1,2", "--seeds", help="Coreset: training seeds, e.g. 0,1,2 or 0-4."),
    seed: int | None = typer.Option(None, "--seed", help="Dataset: the one training seed (default 0)."),
    epochs: int | None = typer.Option(None, "--epochs", help="Epochs (coreset default 300, dataset default 30)."),
    max_steps: int | None = typer.Option(None, "--max-steps", help="Cap on optimiser steps."),
    max_samples: int | None = typer.Option(
        None, "--max-samples", help="Cap on clips seen per run (coreset 16000, dataset none; 0 = none)."
    ),
    batch: int | None = typer.Option(None, "--batch", help="Batch size (dataset default 128)."),
    lr: float = typer.Option(1e-3, "--lr", help="Learning rate (peak learning rate with --lr-schedule cosine)."),
    lr_schedule: str = typer.Option(
        "step", "--lr-schedule", help="step (lr / 10 half-way) or cosine (5 % linear warm-up, then cosine to 0)."
    ),
    optimizer: str = typer.Option(
        "adam", "--optimizer", help="adam (weight decay as L2), adamw (decoupled weight decay) or sgd (momentum 0.9)."
    ),
    weight_decay: float = typer.Option(5e-4, "--weight-decay", help="Weight decay of the optimiser."),
    augment: bool = typer.Option(True, "--augment/--no-augment", help="Time shift + time/frequency masks on features."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Where the datasets live."),
    dataset: str | None = typer.Option(None, "--dataset", help="Coreset: override its source dataset (name or path)."),
    test_limit: int | None = typer.Option(None, "--test-limit", help="Coreset: at most N test clips per class."),
    task: str = typer.Option("kws10", "--task", help="Dataset: Speech Commands task kws10 or kws12."),
    split: str = typer.Option("official", "--split", help="Dataset: FSDD split official or speaker."),
    test_fold: int = typer.Option(5, "--test-fold", help="Dataset: ESC / manifest fold held out."),
    extra_train: list[Path] = typer.Option(
        [], "--extra-train", help="Dataset: extra training folder (<word>/<speaker>_nohash_<n>.*)."
    ),
    max_per_class: int | None = typer.Option(
        None, "--max-per-class", help="Dataset: at most N clips per class and split."
    ),
    feature: str | None = typer.Option(
        None, "--feature", help=f"Dataset: front-end {', '.join(FEATURE_KINDS)} (default: the dataset's)."
    ),
    recipe: bool = typer.Option(True, "--recipe/--no-recipe", help="Dataset: the stream-robust recipe."),
    copies: int = typer.Option(2, "--copies", help="Recipe: augmented copies of every training clip."),
    noise: bool = typer.Option(True, "--noise/--no-noise", help="Recipe: training-part noise at random SNR."),
    snr: str = typer.Option("5,30", "--snr", help="Recipe: SNR range in dB, LOW,HIGH."),
    shift: bool = typer.Option(True, "--shift/--no-shift", help="Recipe: time shift within the window."),
    max_shift: float = typer.Option(0.2, "--max-shift", help="Recipe: largest time shift, s."),
    hard_negatives: bool = typer.Option(
        True, "--hard-negatives/--no-hard-negatives", help="Recipe: FSDD / ESC-10 training clips as _unknown_ (kws12)."
    ),
    fsdd_negatives: int = typer.Option(800, "--fsdd-negatives", help="Recipe: FSDD digits among the hard negatives."),
    reversed_negatives: float = typer.Option(
        0.0, "--reversed-negatives", help="Recipe: share of keyword clips also played backwards as _unknown_."
    ),
    esc_cuts: int = typer.Option(3, "--esc-cuts", help="Recipe: loudest 1-s cuts per ESC-10 training clip (0 = none)."),
    quiet_silence: int = typer.Option(600, "--quiet-silence", help="Recipe: quiet noise windows as _silence_ (kws12)."),
    calibration_percent: int = typer.Option(
        10,
        "--calibration-percent",
        help="Recipe: % of training speakers and hard-negative files never trained on, kept for "
        "kit bundle --max-fa-per-hour to choose honest thresholds (0 = train on all).",
    ),
    label_smoothing: float = typer.Option(0.1, "--label-smoothing", help="Recipe: label smoothing."),
    balance: str = typer.Option("sampling", "--balance", help="Recipe: class balance none, sampling or loss."),
    word_head: float = typer.Option(
        0.0,
        "--word-head",
        help="Recipe: weight of a training-only head that tells the words inside _unknown_ apart "
        "(0 = none); the saved model is unchanged in shape.",
    ),
    unknown_words_share: float | None = typer.Option(
        None,
        "--unknown-words-share",
        help="Recipe: share of _unknown_ draws that are spoken words, not hard negatives (default: as they fall).",
    ),
    teacher: list[Path] = typer.Option(
        [],
        "--teacher",
        help="Dataset: a trained model of the same dataset and task to distil from (repeat for an ensemble).",
    ),
    teacher_weight: float = typer.Option(
        0.5, "--teacher-weight", help="Dataset: the teachers' share of each training target (0-1]."
    ),
    out: Path | None = typer.Option(None, "--out", help="Run directory (default runs/<coreset or dataset>-<arch>)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    threads: int = typer.Option(
        1, "--threads", help="torch threads (0 = torch's choice; 1 is fastest on busy shared cores)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    folds: str | None = typer.Option(
        None,
        "--folds",
        help="all (or 1,3): cross-validation over the official folds; "
        "a coreset C means C.foldN.kit per fold (kit distill --folds), a dataset trains "
        "one model per fold; writes OUT/foldN/ and OUT/cv.json (mean ± std over folds).",
    ),
) -> None:
    """Train on a coreset (one model per seed, mean ± std) or on a whole dataset (the production model)."""
    if not _is_coreset(source):
        from kit.training import TrainConfig  # lazy: torch-side: imported inside the command

        config = TrainConfig(
            arch=arch,
            arch_kwargs=_arch_kwargs(width, arch_kwargs),
            epochs=epochs or 30,
            max_steps=max_steps,
            max_samples=max_samples or None,
            batch_size=batch or 128,
            lr=lr,
            lr_schedule=lr_schedule,
            optimizer=optimizer,
            weight_decay=weight_decay,
            augment=augment,
            device=device,
            threads=threads or None,
            seed=seed or 0,
        )
        recipe_options = {
            "copies": copies,
            "noise": noise,
            "snr_db": parse_range(snr, "--snr"),
            "shift": shift,
            "max_shift_s": max_shift,
            "hard_negatives": hard_negatives,
            "fsdd_negatives": fsdd_negatives,
            "reversed_negatives": reversed_negatives,
            "esc_cuts_per_clip": esc_cuts,
            "quiet_silence": quiet_silence,
            "calibration_percent": calibration_percent,
            "specaugment": augment,
            "label_smoothing": label_smoothing,
            "balance": balance,
            "word_head": word_head,
            "unknown_words_share": unknown_words_share,
        }
        name = Path(source).stem if Path(source).exists() else source
        run_dir = out or Path("runs") / f"{name}-{arch}"
        if folds is None:
            check_output_dir(run_dir, "--out", ("config.json", "metrics.json", "model.kit", "recipe_set.npz"))
        options = DatasetTrainOptions(
            source,
            run_dir,
            data_dir,
            task,
            split,
            test_fold,
            list(extra_train),
            max_per_class,
            recipe,
            recipe_options,
            quiet,
            list(teacher),
            teacher_weight,
            feature,
        )
        if folds is not None:
            if teacher:
                raise KitError("--teacher cannot be combined with --folds: each fold needs teachers of its own split")
            _train_dataset_folds(options, folds, config)
            return
        metrics = train_dataset(options, config)
        print(
            f"{source} on {arch}: accuracy {100 * metrics['accuracy']:.2f} % on {metrics['n_test']} test clips "
            f"(trained on {metrics['n_train']} examples)"
        )
        Console(stderr=True).print(f"wrote {run_dir}/config.json, metrics.json, model.kit", highlight=False)
        return
    coreset_path = Path(source)
    if teacher:
        raise KitError("--teacher applies to kit train DATASET (a coreset's labels are already its distilled targets)")
    if feature is not None:
        raise KitError("--feature applies to kit train DATASET (a coreset's front-end is the one it was distilled in)")
    from kit.training import TrainConfig  # lazy: torch-side: imported inside the command

    seed_list = parse_seeds(seeds)
    run_dir = out or Path("runs") / f"{coreset_path.stem}-{arch}"
    config = TrainConfig(
        arch=arch,
        arch_kwargs=_arch_kwargs(width, arch_kwargs),
        epochs=epochs or 300,
        max_steps=max_steps,
        max_samples=16_000 if max_samples is None else (max_samples or None),
        lr=lr,
        lr_schedule=lr_schedule,
        optimizer=optimizer,
        weight_decay=weight_decay,
        augment=augment,
        device=device,
        threads=threads or None,
    )
    if folds is not None:
        _train_coreset_folds(coreset_path, folds, run_dir, config, seed_list, data_dir, dataset, test_limit, quiet)
        return
    check_output_dir(run_dir, "--out", ("config.json", "metrics.json", "model.kit"), inputs=(coreset_path,))
    train_coreset_file(coreset_path, run_dir, config, seed_list, data_dir, dataset, test_limit, quiet)


def _train_dataset_folds(options: DatasetTrainOptions, folds_text: str, config: Any) -> None:
    """``kit train DATASET --folds all``: one production-recipe model per official fold, each tested on its fold."""
    from .crossval import (
        fold_dir,
        format_cv,
        plan_and_folds,
        summarize_folds,
        write_summary,
    )  # lazy: pulls in soundfile

    plan, folds = plan_and_folds(options.dataset, folds_text)
    for fold in folds:
        check_output_dir(
            fold_dir(options.out, fold), "--out", ("config.json", "metrics.json", "model.kit", "recipe_set.npz")
        )
    per_fold = []
    for fold in folds:
        fold_options = replace(options, out=fold_dir(options.out, fold), split=plan.split, test_fold=fold)
        metrics = train_dataset(fold_options, config)
        per_fold.append(
            {
                "fold": fold,
                "mean": metrics["accuracy"],
                "accuracies": [metrics["accuracy"]],
                "n_test": metrics["n_test"],
                "n_train": metrics["n_train"],
            }
        )
    summary = summarize_folds(per_fold)
    write_summary(
        options.out,
        summary,
        {
            "command": "train",
            "mode": "dataset-cv",
            "dataset": plan.dataset,
            "protocol": plan.rule,
            "train": config.to_dict(),
        },
    )
    print(f"{options.dataset} (cross-validation): accuracy {format_cv(summary)}")
    Console(stderr=True).print(f"wrote {options.out}/cv.json and {options.out}/fold*/", highlight=False)


def _train_coreset_folds(
    base: Path,
    folds_text: str,
    run_dir: Path,
    config: Any,
    seed_list: list[int],
    data_dir: Path | None,
    dataset: str | None,
    test_limit: int | None,
    quiet: bool,
) -> None:
    """``kit train c.kit --folds all``: train every ``c.foldN.kit`` and test it on the fold it held out."""
    from .crossval import (
        check_held_out,
        fold_dir,
        format_cv,
        plan_and_folds,
        require_fold_coresets,
        summarize_folds,
        write_summary,
    )  # lazy: pulls in soundfile

    stem = re.sub(r"\.fold\d+$", "", base.stem)
    found = sorted(base.parent.glob(f"{stem}.fold*{base.suffix}"))
    if not found:
        raise KitError(
            f"{base}: no per-fold coresets {stem}.foldN{base.suffix} beside it; write them with "
            f"`kit distill DATASET --folds all --out {base}`"
        )
    name = dataset or str(Coreset.load(found[0]).source.get("dataset_name") or "")
    plan, folds = plan_and_folds(name, folds_text)
    paths = require_fold_coresets(base, folds)
    for fold, path in zip(folds, paths, strict=True):
        check_output_dir(fold_dir(run_dir, fold), "--out", ("config.json", "metrics.json", "model.kit"), inputs=(path,))
    per_fold = []
    for fold, path in zip(folds, paths, strict=True):
        check_held_out(path, fold)
        result = train_coreset_file(
            path, fold_dir(run_dir, fold), config, seed_list, data_dir, dataset, test_limit, quiet
        )
        per_fold.append(
            {
                "fold": fold,
                "mean": result["mean"],
                "std": result["std"],
                "accuracies": [row["accuracy"] for row in result["per_seed"]],
                "coreset": str(path),
            }
        )
    summary = summarize_folds(per_fold)
    write_summary(
        run_dir,
        summary,
        {
            "command": "train",
            "mode": "coreset-cv",
            "dataset": plan.dataset,
            "protocol": plan.rule,
            "seeds": seed_list,
            "train": config.to_dict(),
        },
    )
    print(f"{base.name} (cross-validation, {plan.dataset}): accuracy {format_cv(summary)}")
    Console(stderr=True).print(f"wrote {run_dir}/cv.json and {run_dir}/fold*/", highlight=False)


def train_coreset_file(
    coreset_path: Path,
    run_dir: Path,
    config: Any,
    seed_list: list[int],
    data_dir: Path | None,
    dataset: str | None,
    test_limit: int | None,
    quiet: bool,
) -> dict[str, Any]:
    """Train ``config`` on one coreset over ``seed_list``, score on its test split, write the run folder."""
    from kit.training import (
        load_test_split,
        save_trained,
        train_eval_seeds,
        write_run,
    )  # lazy: pulls in torch, soundfile

    console = Console(stderr=True)
    coreset = Coreset.load(coreset_path)
    test = load_test_split(
        coreset.source,
        coreset.feature_config,
        coreset.normalizer,
        coreset.classes,
        data_dir,
        dataset=dataset,
        limit_per_class=test_limit,
        progress=not quiet,
    )
    started = time.perf_counter()
    result = train_eval_seeds(
        coreset.features,
        coreset.labels,
        test.x,
        test.y,
        len(coreset.classes),
        config,
        seeds=seed_list,
        progress=not quiet,
        keep_models=True,
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
        run_dir / "model.kit",
        models[keep],
        coreset,
        config.with_(seed=seed_list[keep]),
        metrics={
            "accuracy": result["per_seed"][keep]["accuracy"],
            "mean": result["mean"],
            "std": result["std"],
            "n_test": test.info["n_test"],
        },
        coreset={"path": str(coreset_path), "method": coreset.method, "ipc": coreset.ipc, "seed": coreset.seed},
    )
    per_seed = ", ".join(f"{row['seed']}: {100 * row['accuracy']:.1f}" for row in result["per_seed"])
    print(
        f"{coreset_path.name} on {config.arch}: accuracy {100 * result['mean']:.2f} ± {100 * result['std']:.2f} % "
        f"over {len(seed_list)} seed(s) [{per_seed}] on {test.info['n_test']} test clips"
    )
    console.print(f"wrote {run_dir}/config.json, metrics.json, model.kit", highlight=False)
    return result


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
    from kit.models import load_model  # lazy: pulls in torch
    from kit.training import evaluate, load_test_split, torch_threads  # lazy: pulls in torch, soundfile

    model, meta = load_model(model_path)
    if "feature_config" not in meta or "classes" not in meta:
        raise KitError(f"{model_path}: model does not record its classes and feature configuration")
    test = load_test_split(
        meta.get("source", {}),
        FeatureConfig.from_dict(meta["feature_config"]),
        meta["normalizer"],
        meta["classes"],
        data_dir,
        dataset=dataset,
        limit_per_class=test_limit,
        progress=not quiet,
    )
    with torch_threads(threads or None):
        result = evaluate(model, test.x, test.y)
    if as_json:
        print(
            json.dumps(
                {
                    "accuracy": result["accuracy"],
                    "n": result["n"],
                    "classes": meta["classes"],
                    "confusion": result["confusion"].tolist(),
                    "test": test.info,
                },
                indent=1,
            )
        )
        return
    print(
        f"{model_path.name}: accuracy {100 * result['accuracy']:.2f} % on {result['n']} test clips of "
        f"{test.info['dataset']}"
    )


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
    app.command("eval")(eval_command)
