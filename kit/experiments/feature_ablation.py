"""Feature ablation (DDFAD Fig. 5): which front-end distils best, FD-MFCC, MFCC, LPCC or log-mel?

For each feature kind the dataset is loaded with that front-end (``kit.pipeline.load_training_set
(feature=...)``, cached), distilled at each samples-per-class value with one method
(``kit.pipeline.distill_coreset``) and scored with the benchmark protocol
(``kit.pipeline.score_coreset``: ConvNet trained on the coreset, real test split, mean ± std over
training seeds). Random real clips at the same budget are scored beside each feature as the
reference: a front-end can look good only because every coreset on it does, and the gap to random
says how much the distillation itself adds on that front-end.

Why the comparison is fair: everything but the front-end is fixed (clips, split, method, its
parameters and seed, training protocol); the network adapts only its input layer to the map's
shape (3 x 13 for FD-MFCC, 1 x 13 for MFCC and LPCC, 1 x 40 for log-mel, all 64 frames per second).

Resumable: one cell per (feature, ipc, method), random included; each coreset is kept under
``coresets/`` in the run folder, so a figure can be traced back to the exact samples.

Measured (FSDD official split, DM 100 steps, scored by one width-64 ConvNet seeing 8 000 clips;
``python -m bench.feature_ablation --ipcs 1,10 --distill-steps 100 --train-seeds 0 --width 64
--max-samples 8000``, 25 min on the 2 shared cores at load 5-11), DM / random real clips:
FD-MFCC 86.7 / 37.0 % at 1 per class and 92.3 / 91.7 % at 10; MFCC 80.7 / 37.7 and 93.7 / 90.3;
LPCC 77.7 / 43.0 and 94.0 / 91.0; log-mel 67.7 / 36.7 and 88.0 / 81.7. FD-MFCC is best at 1 per
class, as in DDFAD Fig. 5; at 10 per class the three cepstral front-ends lie within 2 points (one
scoring seed, so within noise) and log-mel trails all of them at both budgets.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from deploy.runtime.errors import KitError
from deploy.runtime.features import FEATURE_KINDS
from kit.pipeline import distill_coreset, load_training_set, score_coreset

from .continual import distiller_options, save_png
from .rundir import RunDir

EXPERIMENT = "feature_ablation"
REFERENCE = "random"
#: spellings accepted on the command line for each front-end
ALIASES = {"logmel": "log_mel", "log-mel": "log_mel", "fd-mfcc": "fd_mfcc", "fdmfcc": "fd_mfcc"}
LABELS = {"fd_mfcc": "FD-MFCC", "mfcc": "MFCC", "lpcc": "LPCC", "log_mel": "log-mel"}


def feature_kind(name: str) -> str:
    """A front-end name as ``FeatureConfig.kind`` spells it; unknown names are a user error."""
    kind = ALIASES.get(name.strip().lower(), name.strip().lower())
    if kind not in FEATURE_KINDS:
        raise KitError(f"--features: unknown front-end '{name}' (choose from fd_mfcc, mfcc, lpcc, logmel)")
    return kind


@dataclass(frozen=True)
class AblationSettings:
    """Everything that determines a feature-ablation run (recorded in its config.json)."""

    features: tuple[str, ...] = ("fd_mfcc", "mfcc", "lpcc", "log_mel")
    method: str = "dm"
    ipcs: tuple[int, ...] = (1, 10, 50)
    seed: int = 0  # distillation / selection seed
    train_seeds: tuple[int, ...] = (0, 1, 2)  # scoring: one ConvNet per seed
    method_params: dict[str, Any] = field(default_factory=dict)
    distill_steps: int | None = None  # None: the method's own measured defaults and time budget
    reference: bool = True  # also score random real clips per ipc
    width: int = 128
    max_samples: int = 16_000
    limit_per_class: int | None = None
    threads: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", tuple(dict.fromkeys(feature_kind(f) for f in self.features)))
        if not self.features:
            raise KitError("--features: give at least one front-end")
        if not self.ipcs or any(int(i) != i or i < 1 for i in self.ipcs):
            raise KitError(f"--ipcs: give positive integers, got {list(self.ipcs)}")
        if not self.train_seeds:
            raise KitError("--train-seeds: give at least one seed")
        for name in ("width", "max_samples", "threads"):
            if int(getattr(self, name)) < 1:
                raise KitError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.distill_steps is not None and self.distill_steps < 1:
            raise KitError(f"--distill-steps must be >= 1, got {self.distill_steps}")
        if self.limit_per_class is not None and self.limit_per_class < max(self.ipcs):
            raise KitError(f"--limit-per-class {self.limit_per_class} is below the largest --ipcs {max(self.ipcs)}")

    @property
    def methods(self) -> tuple[str, ...]:
        return (self.method, REFERENCE) if self.reference and self.method != REFERENCE else (self.method,)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: The ``--quick`` setting: 30 clips per class, a short distillation, one narrow scoring network.
QUICK = {
    "limit_per_class": 30,
    "ipcs": (1, 10),
    "distill_steps": 10,
    "train_seeds": (0,),
    "width": 16,
    "max_samples": 1600,
}
#: ... and, for methods that take them, 8 real clips per class per step and a width-32 matching
#: network (DM on log-mel maps: 28 s -> 4 s for 10 steps on the busy 2-core machine).
QUICK_METHOD_PARAMS = {"batch_size": 8, "width": 32}


def quick_method_params(method: str, given: dict[str, Any] | None = None) -> dict[str, Any]:
    """The quick setting's method parameters that ``method`` accepts, under the user's own ``given``."""
    from distill.registry import METHODS  # lazy: pulls in torch

    valid = set(METHODS[method].param_names()) if method in METHODS else set()
    return {**{k: v for k, v in QUICK_METHOD_PARAMS.items() if k in valid}, **(given or {})}


def quick_settings(**overrides: Any) -> AblationSettings:
    """The ``--quick`` settings with ``overrides`` on top (what the tests and smoke runs use)."""
    known = {f.name for f in fields(AblationSettings)}
    values = {**QUICK, **{k: v for k, v in overrides.items() if k in known}}
    values["method_params"] = quick_method_params(values.get("method", "dm"), values.get("method_params"))
    return AblationSettings(**values)


def cell_key(feature: str, ipc: int, method: str) -> str:
    return f"{feature}/ipc{ipc}/{method}"


def run_cell(
    run: RunDir, fs: Any, loader: dict[str, Any], feature: str, ipc: int, method: str, settings: AblationSettings
) -> dict[str, Any]:
    """Distil (or select) one coreset on ``fs``, save it in the run folder and score it."""
    params = settings.method_params if method == settings.method else {}
    options = distiller_options(method, params, settings.distill_steps, settings.threads, option="--method")
    coreset, _, summary = distill_coreset(fs, loader, method, ipc, seed=settings.seed, **options)
    path = run.path / "coresets" / f"{feature}_{method}_ipc{ipc}.kit"
    path.parent.mkdir(parents=True, exist_ok=True)
    coreset.save(path)
    score = score_coreset(
        coreset.features,
        coreset.labels,
        fs,
        seeds=tuple(settings.train_seeds),
        arch_kwargs={"width": settings.width},
        max_samples=settings.max_samples,
        threads=settings.threads,
        device="cpu",
    )
    return {
        "feature": feature,
        "ipc": ipc,
        "method": method,
        "shape": list(fs.config.shape),
        "feature_config": fs.config.to_dict(),
        "mean": score["mean"],
        "std": score["std"],
        "accuracies": score["accuracies"],
        "n_train": score["n_train"],
        "n_test": score["n_test"],
        "fit_time_s": summary.get("fit_time_s"),
        "steps": summary.get("steps"),
        "train_time_s": score["train_time_s"],
        "coreset": path.relative_to(run.path).as_posix(),
    }


def _fmt(cell: dict[str, Any] | None, n_seeds: int) -> str:
    if cell is None:
        return ""
    return f"{100 * cell['mean']:.1f} ± {100 * cell['std']:.1f}" if n_seeds > 1 else f"{100 * cell['mean']:.1f}"


def plot_ablation(cells: dict[str, dict[str, Any]], settings: AblationSettings, path: Path, title: str) -> Path:
    """Accuracy vs samples per class, one colour per front-end: the method solid, random dashed."""
    import matplotlib  # lazy: matplotlib only when used

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: matplotlib only when used

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, feature in enumerate(settings.features):
        for method in settings.methods:
            rows = [cells[cell_key(feature, ipc, method)] for ipc in settings.ipcs]
            mean, std = np.array([r["mean"] for r in rows]) * 100, np.array([r["std"] for r in rows]) * 100
            reference = method == REFERENCE and method != settings.method
            ax.errorbar(
                list(settings.ipcs),
                mean,
                yerr=std if std.any() else None,
                marker="o",
                capsize=3,
                color=colours[i % len(colours)],
                linestyle="--" if reference else "-",
                alpha=0.6 if reference else 1.0,
                label=f"{LABELS[feature]} {method}",
            )
    if len(settings.ipcs) > 1 and max(settings.ipcs) / min(settings.ipcs) >= 10:
        ax.set_xscale("log")
    ax.set_xticks(list(settings.ipcs))
    ax.set_xticklabels([str(i) for i in settings.ipcs])
    ax.set_xlabel("samples per class")
    ax.set_ylabel("ConvNet test accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    fig.tight_layout()
    return save_png(fig, path)


def run_feature_ablation(
    dataset: str,
    out: str | os.PathLike,
    settings: AblationSettings,
    *,
    data_dir: str | os.PathLike | None = None,
    split: str = "official",
    task: str = "kws10",
    test_fold: int = 5,
    overwrite: bool = False,
    progress: bool = True,
) -> RunDir:
    """Every (feature, ipc, method) cell, resumably; then the table, the figure and the headline."""

    for method in settings.methods:  # unknown methods or parameters fail before any data is loaded
        distiller_options(
            method,
            settings.method_params if method == settings.method else {},
            settings.distill_steps,
            settings.threads,
            option="--method",
        )
    loaders = {
        "dataset": dataset,
        "data_dir": None if data_dir is None else str(data_dir),
        "split": split,
        "task": task,
        "test_fold": test_fold,
    }
    run = RunDir(
        out,
        EXPERIMENT,
        {"loader": loaders, "settings": settings.to_dict()},
        title=f"Feature ablation on {dataset}",
        overwrite=overwrite,
    )
    cells: dict[str, dict[str, Any]] = {}
    total = len(settings.features) * len(settings.ipcs) * len(settings.methods)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
        disable=not progress,
    ) as bar:
        job = bar.add_task("feature ablation", total=total)
        for feature in settings.features:
            keys = [cell_key(feature, ipc, m) for ipc in settings.ipcs for m in settings.methods]
            if all(run.has(k) for k in keys):
                cells.update({k: run.get(k) for k in keys})
                bar.advance(job, len(keys))
                continue
            fs, loader = load_training_set(
                dataset,
                data_dir,
                split=split,
                task=task,
                test_fold=test_fold,
                feature=feature,
                limit_per_class=settings.limit_per_class,
                progress=False,
            )
            smallest = int(np.bincount(fs.y_train, minlength=len(fs.classes)).min())
            if max(settings.ipcs) > smallest:
                raise KitError(
                    f"--ipcs {max(settings.ipcs)} exceeds the {smallest} training clips of the smallest class"
                )
            for ipc in settings.ipcs:
                for method in settings.methods:
                    key = cell_key(feature, ipc, method)
                    bar.update(job, description=f"{LABELS[feature]} {method} {ipc}/class")
                    if not run.has(key):
                        run.record(key, run_cell(run, fs, loader, feature, ipc, method, settings))
                    cells[key] = run.get(key)
                    bar.advance(job)
    n_seeds = len(settings.train_seeds)
    columns = ["feature", "input shape", "coreset"] + [f"{ipc}/class" for ipc in settings.ipcs]
    rows = []
    for feature in settings.features:
        shape = "x".join(str(v) for v in cells[cell_key(feature, settings.ipcs[0], settings.method)]["shape"])
        for method in settings.methods:
            rows.append(
                [LABELS[feature], shape, method]
                + [_fmt(cells.get(cell_key(feature, ipc, method)), n_seeds) for ipc in settings.ipcs]
            )
    run.add_table(f"ConvNet test accuracy (%) by front-end, {n_seeds} training seed(s)", columns, rows)
    plot_ablation(
        cells,
        settings,
        run.path / "feature_ablation.png",
        f"{dataset}: {settings.method} coresets by front-end (dashed: random real clips)",
    )
    run.add_figure(
        "feature_ablation.png",
        f"Test accuracy vs samples per class for each front-end; solid "
        f"{settings.method}, dashed random real clips at the same budget.",
    )
    best = []
    for ipc in settings.ipcs:
        scores = {f: cells[cell_key(f, ipc, settings.method)]["mean"] for f in settings.features}
        for feature, mean in scores.items():
            run.headline[f"{feature}_{settings.method}_ipc{ipc}"] = round(100 * mean, 2)
        winner = max(scores, key=scores.get)
        best.append(f"{LABELS[winner]} at {ipc}/class ({100 * scores[winner]:.1f} %)")
    run.summary = f"Best front-end for {settings.method}: " + ", ".join(best) + "."
    run.save()
    return run
