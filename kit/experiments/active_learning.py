"""Active learning vs distilled coresets: the table of seed paper (a), Tables 1-2.

The paper's argument: pool-based active learning needs 20-60 % of the training data to approach
full-data accuracy, while a distilled set of a few samples per class gets close. This experiment
measures both on our datasets with one protocol, so the rows are comparable:

* every acquisition function (``random``, ``entropy``, ``variation-ratios``, ``bald``) runs the
  pool-based loop of ``distill.active.ActiveLearner`` once per seed up to the largest budget; the
  labelled set at each smaller budget is a prefix of its acquisition order (round boundaries);
* each labelled set, each ``--coreset`` file and the full training split are then scored the
  same way: the evaluation ConvNet (no dropout, ``TrainConfig`` of the run) trained with the
  repetition's seed, test accuracy on the real test split, mean ± std over the repetitions.

Cells (``RunDir``): ``al/<method>/seed<s>`` (the trajectory, re-recorded after every round, so an
interrupted run resumes mid-trajectory), ``eval/<method>/<n>/seed<s>``, ``coreset/<i>/seed<s>``,
``full/seed<s>``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from deploy.runtime.artifact import sha256_file
from deploy.runtime.coreset import Coreset
from deploy.runtime.errors import KitError
from kit.pipeline import coreset_features_for

EXPERIMENT = "active_learning"
TITLE = "Active learning vs distilled coresets"
COLUMNS = ["method", "% of training samples", "samples", "accuracy (mean ± std)"]
METHOD_LABELS = {"random": "random", "entropy": "max entropy", "variation-ratios": "variation ratios", "bald": "BALD"}
#: other spellings users type for an acquisition
METHOD_ALIASES = {"max-entropy": "entropy", "variation_ratios": "variation-ratios", "vr": "variation-ratios"}


def parse_methods(text: str, option: str = "--methods") -> tuple[str, ...]:
    """``"random,bald,vr"`` -> ("random", "bald", "variation-ratios"): known acquisitions, aliases resolved."""
    from distill.active import ACQUISITIONS  # lazy: torch behind it; kept out of the option parsing of --help

    names = tuple(
        dict.fromkeys(
            METHOD_ALIASES.get(p.strip().lower(), p.strip().lower()) for p in str(text).split(",") if p.strip()
        )
    )
    unknown = [n for n in names if n not in ACQUISITIONS]
    if unknown or not names:
        raise KitError(
            f"{option}: unknown acquisition '{', '.join(unknown) or text}' (choose from {', '.join(ACQUISITIONS)})"
        )
    return names


def _default_train() -> Any:
    from kit.training import TrainConfig  # lazy: pulls in torch

    return TrainConfig()


@dataclass
class ALSettings:
    """Everything that determines the result (recorded in config.json).

    ``budgets`` are percentages of the training pool, ``tiny`` samples per class (the coreset
    sizes). ``acquisition_train`` trains the per-round acquisition model (with ``dropout`` before
    its head; batch 64 so its 4 000-clip budget still makes ~60 optimiser steps), ``eval_train``
    every scored model (the protocol of ``bench/distill.py``), ``full_max_samples`` the full-data model (a
    larger set deserves more steps, as in ``bench/distill.py``). Repetition ``s`` of ``seeds``
    runs the loop with seed ``1000 * seed + s`` and trains its evaluation model with seed ``s``.
    """

    methods: tuple[str, ...] = ("random", "entropy", "variation-ratios", "bald")
    budgets: tuple[float, ...] = (20.0, 30.0, 40.0, 60.0)
    tiny: tuple[int, ...] = (1, 10, 50)
    seeds: tuple[int, ...] = (0, 1, 2)
    seed: int = 0
    initial: int = 1
    growth: float = 2.0
    mc_passes: int = 20
    dropout: float = 0.5
    acquisition_train: Any = field(default_factory=lambda: _default_train().with_(max_samples=4000, batch_size=64))
    eval_train: Any = field(default_factory=_default_train)
    full_max_samples: int = 60_000

    def to_dict(self) -> dict[str, Any]:
        return {
            "methods": list(self.methods),
            "budgets": list(self.budgets),
            "tiny": list(self.tiny),
            "seeds": list(self.seeds),
            "seed": self.seed,
            "initial": self.initial,
            "growth": self.growth,
            "mc_passes": self.mc_passes,
            "dropout": self.dropout,
            "acquisition_train": self.acquisition_train.to_dict(),
            "eval_train": self.eval_train.to_dict(),
            "full_max_samples": self.full_max_samples,
            "eval_batch_rule": "coreset_batch (kit/training/config.py)",
        }


def quick_settings(**overrides: Any) -> ALSettings:
    """The small setting the tests run on real FSDD (with 30 clips per class): seconds, not hours."""
    from kit.training import TrainConfig  # lazy: pulls in torch

    # batch 32: with a few hundred clips, batch 256 would leave a handful of optimiser steps
    small = TrainConfig(arch_kwargs={"width": 32}, batch_size=32)
    base = dict(
        methods=("random", "entropy", "variation-ratios", "bald"),
        budgets=(20.0, 40.0),
        tiny=(1,),
        seeds=(0,),
        acquisition_train=small.with_(max_samples=1000),
        eval_train=small.with_(max_samples=3000),
        full_max_samples=4000,
    )
    base.update({k: v for k, v in overrides.items() if v is not None})
    return ALSettings(**base)


QUICK_LIMIT_PER_CLASS = 30


# budgets ---------------------------------------------------------------------------------------------------
def budget_points(settings: ALSettings, n_pool: int, n_classes: int) -> list[dict[str, Any]]:
    """The labelled-set sizes of the table: tiny budgets (per class) and percentages, sorted by size."""
    from distill.active import pool_budget  # lazy: pulls in torch

    start = settings.initial * n_classes
    points: dict[int, dict[str, Any]] = {}
    for per_class in settings.tiny:
        n = int(per_class) * n_classes
        if n < start:
            raise KitError(f"--tiny {per_class}: below the initial seed set of {settings.initial}/class")
        if n > n_pool:
            raise KitError(f"--tiny {per_class}: {n} samples exceed the training pool of {n_pool}")
        points.setdefault(n, {"n": n, "label": f"{per_class}/class"})
    for percent in settings.budgets:
        if not 0 < percent <= 100:
            raise KitError(f"--budgets {percent:g}: a percentage of the training pool must lie in (0, 100]")
        n = pool_budget(percent, n_pool)
        if n < start:
            raise KitError(f"--budgets {percent:g}: {n} samples is below the initial seed set ({start})")
        points.setdefault(n, {"n": n, "label": f"{percent:g} %"})
    if not points:
        raise KitError("give at least one budget (--budgets or --tiny)")
    return [points[n] for n in sorted(points)]


# coresets --------------------------------------------------------------------------------------------------
@dataclass
class CoresetRow:
    """A coreset file, checked against the dataset and brought to its normalisation."""

    path: Path
    label: str
    x: np.ndarray
    y: np.ndarray
    sha256: str


def load_coresets(paths: list[Path], fs: Any) -> list[CoresetRow]:
    """Load ``kit`` coreset files for this feature set; a class or feature mismatch is a KitError
    naming the file. Features are re-normalised from the coreset's statistics to the dataset's
    (they differ when, e.g., the experiment uses a subset of the training split)."""
    rows = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise KitError(f"--coreset {path}: no such file")
        coreset = Coreset.load(path)
        x, _ = coreset_features_for(coreset, fs, f"--coreset {path}")
        per_class = coreset.ipc
        label = f"distilled ({coreset.method}, {per_class}/class)"
        rows.append(CoresetRow(path, label, np.asarray(x, np.float32), coreset.labels, sha256_file(path)))
    return rows


# the run ---------------------------------------------------------------------------------------------------
def _score(x: np.ndarray, y: np.ndarray, fs: Any, config: Any, seed: int) -> dict[str, Any]:
    from kit.training import train_eval_seeds  # lazy: pulls in torch

    result = train_eval_seeds(x, y, fs.x_test, fs.y_test, len(fs.classes), config, seeds=(seed,), progress=False)
    row = result["per_seed"][0]
    return {"accuracy": row["accuracy"], "train_seconds": round(row["train_seconds"], 2), "n": int(len(x))}


def _progress(enabled: bool):
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
        disable=not enabled,
    )


def run_active_learning(
    run: Any, fs: Any, settings: ALSettings, coresets: list[CoresetRow] | None = None, progress: bool = True
) -> dict[str, Any]:
    """Fill ``run`` (a ``RunDir``) with every cell, the table, the figure and the headline; returns the
    aggregated results ``{"points", "methods": {m: [{n, percent, mean, std, accuracies}]}, "coresets", "full"}``."""
    from distill.active import ACQUISITIONS, ActiveLearner  # lazy: pulls in torch

    coresets = coresets or []
    unknown = [m for m in settings.methods if m not in ACQUISITIONS]
    if unknown:
        raise KitError(f"--methods: unknown acquisition {', '.join(unknown)} (choose from {', '.join(ACQUISITIONS)})")
    n_pool, n_classes = len(fs.x_train), len(fs.classes)
    points = budget_points(settings, n_pool, n_classes)
    milestones = [p["n"] for p in points]
    final = milestones[-1]

    def learner(method: str, s: int) -> ActiveLearner:
        return ActiveLearner(
            method,
            final,
            milestones=milestones,
            initial=settings.initial,
            growth=settings.growth,
            mc_passes=settings.mc_passes,
            dropout=settings.dropout,
            train_config=settings.acquisition_train,
            seed=1000 * settings.seed + s,
        )

    rounds = (
        len(learner(settings.methods[0], 0)._schedule(settings.initial * n_classes, final)) if settings.methods else 0
    )
    total = len(settings.methods) * len(settings.seeds) * (rounds + len(points)) + len(settings.seeds) * (
        1 + len(coresets)
    )
    with _progress(progress) as bar:
        task = bar.add_task("active learning", total=total)
        for method in settings.methods:
            for s in settings.seeds:
                key = f"al/{method}/seed{s}"
                done = run.get(key) if run.has(key) else None
                if done is None or not done.get("finished"):
                    bar.update(task, description=f"{method} seed {s}: acquiring")

                    def record(row: dict[str, Any], indices: np.ndarray, key: str = key) -> None:
                        state = run.get(key) if run.has(key) else {"history": []}
                        run.record(
                            key, {"indices": indices.tolist(), "history": [*state["history"], row], "finished": False}
                        )
                        bar.advance(task)

                    al = learner(method, s).fit(fs.x_train, fs.y_train, n_classes, resume=done, on_round=record)
                    run.record(
                        key,
                        {
                            "indices": al.indices_.tolist(),
                            "history": al.history_,
                            "finished": True,
                            "schedule": al.schedule_,
                        },
                    )
                else:
                    bar.advance(task, rounds)
                order = np.asarray(run.get(key)["indices"], dtype=np.int64)
                for point in points:
                    cell = f"eval/{method}/{point['n']}/seed{s}"
                    if not run.has(cell):
                        bar.update(task, description=f"{method} seed {s}: scoring {point['n']} samples")
                        subset = order[: point["n"]]
                        digest = hashlib.sha1(subset.tobytes()).hexdigest()[:16]
                        # the seed set (and any subset two acquisitions share) trains to the same model
                        same = [
                            v
                            for k, v in run.cells.items()
                            if k.startswith("eval/") and k.endswith(f"/seed{s}") and v.get("subset_sha1") == digest
                        ]
                        scored = (
                            same[0]
                            if same
                            else _score(fs.x_train[subset], fs.y_train[subset], fs, settings.eval_train, s)
                        )
                        run.record(cell, {**scored, "subset_sha1": digest})
                    bar.advance(task)
        for i, row in enumerate(coresets):
            for s in settings.seeds:
                cell = f"coreset/{i}/seed{s}"
                if not run.has(cell):
                    bar.update(task, description=f"{row.path.name} seed {s}")
                    run.record(cell, _score(row.x, row.y, fs, settings.eval_train, s))
                bar.advance(task)
        for s in settings.seeds:
            cell = f"full/seed{s}"
            if not run.has(cell):
                bar.update(task, description=f"full training data seed {s}")
                run.record(
                    cell,
                    _score(
                        fs.x_train, fs.y_train, fs, settings.eval_train.with_(max_samples=settings.full_max_samples), s
                    ),
                )
            bar.advance(task)
    results = aggregate(run, settings, points, coresets, n_pool)
    write_outputs(run, results, settings)
    return results


def _stats(cells: list[dict[str, Any]]) -> dict[str, Any]:
    acc = np.array([100.0 * c["accuracy"] for c in cells])
    return {"mean": float(acc.mean()), "std": float(acc.std()), "accuracies": acc.round(2).tolist()}


def aggregate(
    run: Any, settings: ALSettings, points: list[dict[str, Any]], coresets: list[CoresetRow], n_pool: int
) -> dict[str, Any]:
    """Mean ± std over the repetitions for every (method, budget), coreset and the full data."""
    methods = {}
    for method in settings.methods:
        methods[method] = [
            {
                "n": p["n"],
                "label": p["label"],
                "percent": 100.0 * p["n"] / n_pool,
                **_stats([run.get(f"eval/{method}/{p['n']}/seed{s}") for s in settings.seeds]),
            }
            for p in points
        ]
    rows = [
        {
            "label": c.label,
            "file": str(c.path),
            "n": int(len(c.x)),
            "percent": 100.0 * len(c.x) / n_pool,
            **_stats([run.get(f"coreset/{i}/seed{s}") for s in settings.seeds]),
        }
        for i, c in enumerate(coresets)
    ]
    full = {"n": n_pool, "percent": 100.0, **_stats([run.get(f"full/seed{s}") for s in settings.seeds])}
    seconds = {
        m: float(
            np.mean([sum(r.get("seconds", 0.0) for r in run.get(f"al/{m}/seed{s}")["history"]) for s in settings.seeds])
        )
        for m in settings.methods
    }
    return {
        "n_pool": n_pool,
        "points": points,
        "methods": methods,
        "coresets": rows,
        "full": full,
        "acquisition_seconds": seconds,
    }


def _fmt(stats: dict[str, Any]) -> str:
    return f"{stats['mean']:.1f} ± {stats['std']:.1f}"


def _pct(percent: float) -> str:
    return f"{percent:.1f}" if percent >= 1 else f"{percent:.2f}"


def table_rows(results: dict[str, Any]) -> list[list[Any]]:
    """method | % of training samples | samples | accuracy: acquisitions by budget, coresets, full data."""
    rows = []
    for method, cells in results["methods"].items():
        rows += [[METHOD_LABELS.get(method, method), _pct(c["percent"]), c["n"], _fmt(c)] for c in cells]
    rows += [[c["label"], _pct(c["percent"]), c["n"], _fmt(c)] for c in results["coresets"]]
    full = results["full"]
    rows.append(["full training data", "100", full["n"], _fmt(full)])
    return rows


def plot(results: dict[str, Any], path: Path, title: str) -> None:
    """Accuracy vs % of training samples (log x): one line per acquisition, coresets as markers."""
    import matplotlib  # lazy: matplotlib only when used

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: matplotlib only when used

    fig, ax = plt.subplots(figsize=(9.5, 4.8))
    for method, cells in results["methods"].items():
        xs = [c["percent"] for c in cells]
        ax.errorbar(
            xs,
            [c["mean"] for c in cells],
            yerr=[c["std"] for c in cells],
            marker="o",
            ms=4,
            capsize=3,
            label=METHOD_LABELS.get(method, method),
        )
    markers = "*^sDPvX"
    for i, c in enumerate(results["coresets"]):
        ax.errorbar(
            [c["percent"]],
            [c["mean"]],
            yerr=[c["std"]],
            marker=markers[i % len(markers)],
            ms=11,
            ls="none",
            capsize=3,
            label=c["label"],
        )
    full = results["full"]
    ax.axhline(full["mean"], color="k", ls="--", lw=1, label=f"full training data ({full['mean']:.1f} %)")
    ax.set_xscale("log")
    from matplotlib.ticker import FuncFormatter, NullFormatter  # lazy: matplotlib only when used

    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    points = [c for cells in results["methods"].values() for c in cells] + list(results["coresets"])
    low = min((c["percent"] for c in points), default=1.0)
    ticks = [v for v in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 30, 40, 60, 100) if v >= low / 1.5]
    ax.set_xticks(ticks)
    ax.set_xlabel("% of training samples (log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    from kit.report.plots import save_figure  # lazy: pulls in matplotlib

    save_figure(fig, path, dpi=120)


def headline(results: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Best acquisition at the smallest percentage budget, the best coreset, and the full-data figure."""
    full = results["full"]["mean"]
    head: dict[str, Any] = {"full_accuracy": round(full, 2)}
    parts = [f"Full training data: {full:.1f} %."]
    for method, cells in results["methods"].items():
        best = cells[-1]
        head[f"{method}_at_{_pct(best['percent'])}pct"] = round(best["mean"], 2)
    if results["methods"]:
        largest = {m: cells[-1] for m, cells in results["methods"].items()}
        method, cell = max(largest.items(), key=lambda kv: kv[1]["mean"])
        parts.append(
            f"Best acquisition at {_pct(cell['percent'])} % of the data ({cell['n']} samples): "
            f"{METHOD_LABELS.get(method, method)} {_fmt(cell)} %."
        )
    if results["coresets"]:
        best = max(results["coresets"], key=lambda c: c["mean"])
        head["best_coreset"] = {
            "label": best["label"],
            "percent": round(best["percent"], 3),
            "accuracy": round(best["mean"], 2),
        }
        parts.append(f"Best coreset: {best['label']} {_fmt(best)} % with {_pct(best['percent'])} % of the data.")
    return head, " ".join(parts)


def write_outputs(run: Any, results: dict[str, Any], settings: ALSettings) -> None:
    """Table, figure, headline and summary into the run folder (results.json)."""
    dataset = run.config.get("dataset", {}).get("dataset", "") if isinstance(run.config.get("dataset"), dict) else ""
    title = f"Active learning vs distilled coresets{f' ({dataset})' if dataset else ''}"
    run.tables = [t for t in run.tables if t["title"] != title]
    run.add_table(title, COLUMNS, table_rows(results))
    png = run.path / "accuracy_vs_budget.png"
    plot(results, png, title)
    run.figures = [f for f in run.figures if f["file"] != png.name]
    run.add_figure(
        png,
        f"Test accuracy vs % of training samples (log x), mean ± std over {len(settings.seeds)} "
        "seed(s); lines: acquisition functions, markers: distilled coresets, dashed: full data.",
    )
    run.headline, run.summary = headline(results)
    run.headline["acquisition_seconds"] = {m: round(v, 1) for m, v in results["acquisition_seconds"].items()}
    run.save()


def experiment_config(settings: ALSettings, loader: dict[str, Any], coresets: list[CoresetRow]) -> dict[str, Any]:
    """What config.json records: settings, how the data was loaded, and the coreset files by checksum."""
    return {
        "settings": settings.to_dict(),
        "dataset": loader,
        "coresets": [{"path": str(c.path), "sha256": c.sha256} for c in coresets],
    }


__all__ = [
    "ALSettings",
    "COLUMNS",
    "CoresetRow",
    "EXPERIMENT",
    "QUICK_LIMIT_PER_CLASS",
    "aggregate",
    "budget_points",
    "experiment_config",
    "headline",
    "load_coresets",
    "plot",
    "quick_settings",
    "run_active_learning",
    "table_rows",
]
