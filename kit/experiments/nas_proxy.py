"""NAS proxy (DDFAD §5.2): does a small coreset rank candidate architectures like the full data does?

Why this experiment: a designer choosing a keyword-spotting network for a device tries many
variants (depth, width, normalisation, pooling, activation). Training each on the full data is
the expensive part; a distilled set of 20 clips per class would make each trial ~10x cheaper, but
only if the *ranking* of the variants survives. So every variant of the grid is trained on

* each proxy: the distilled set, a random and a herding selection of the same size, and the
  full training data with a short ("early-stopped") budget;
* the ground truth: the full training data with a longer budget;

and each proxy's ranking of the variants is compared with the ground truth's by Spearman's rho
(and the overlap of the top 5). One training per (variant, proxy) is a resumable cell in the
``RunDir``, so an interrupted grid continues where it stopped.

Budgets are clips seen per training (``TrainConfig.max_samples``), so the cost of a proxy is
what it would cost a user, and the table reports the measured seconds per proxy.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from scipy.stats import spearmanr

from deploy.runtime.coreset import Coreset
from deploy.runtime.errors import KitError
from distill.registry import METHODS
from kit.pipeline import coreset_features_for

from ..models.convnet_space import search_space, variant_name
from ..pipeline import distill_coreset
from ..training import TrainConfig, evaluate, torch_threads, train_model
from .rundir import RunDir

TRUTH = "full data (ground truth)"
EARLY = "early-stopped full data"


@dataclass
class NASSettings:
    """Everything that determines a NAS-proxy run (recorded in its ``config.json``).

    ``proxy_samples``/``early_samples``/``truth_samples`` are clips seen per training on a coreset
    proxy, on the early-stopped full data and on the ground-truth full data.
    """

    grid: str = "full"
    ipc: int = 20
    distill_method: str = "dm"
    distill_time_budget_s: float | None = 280.0
    distill_steps: int | None = None
    proxy_samples: int = 2_000
    early_samples: int = 2_000
    truth_samples: int = 30_000
    batch_size: int = 32  # proxy trainings (coresets and early-stopped): small budgets need many small steps
    truth_batch_size: int = 64
    seed: int = 0
    top_k: int = 5
    coreset_files: dict[str, str] = field(
        default_factory=dict
    )  # proxy name -> coreset path ("distill" replaces in-run distillation)

    def __post_init__(self) -> None:
        for name in (
            "ipc",
            "proxy_samples",
            "early_samples",
            "truth_samples",
            "top_k",
            "batch_size",
            "truth_batch_size",
        ):
            if int(getattr(self, name)) < 1:
                raise KitError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        try:
            search_space(self.grid)
        except ValueError as exc:
            raise KitError(f"--grid: {exc}") from None

    @classmethod
    def quick(cls, **changes: Any) -> "NASSettings":
        """The setting the tests run on real recordings: 5 small variants, tiny budgets (seconds)."""
        base = dict(
            grid="quick",
            ipc=5,
            distill_time_budget_s=None,
            distill_steps=5,
            proxy_samples=320,
            early_samples=320,
            truth_samples=1_200,
            batch_size=16,
            truth_batch_size=32,
            top_k=2,
        )
        base.update(changes)
        return cls(**base)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: clips per class and split of the quick setting (FSDD: 300 training and 300 test clips)
QUICK_LIMIT_PER_CLASS = 30


def open_run(
    out: str | Path,
    settings: NASSettings,
    *,
    dataset: str,
    data_dir: str | Path | None = None,
    split: str = "official",
    task: str = "kws10",
    test_fold: int = 5,
    limit_per_class: int | None = None,
    overwrite: bool = False,
) -> RunDir:
    """The run folder of a NAS-proxy run, its config = the settings plus the data options.

    ``kit nas`` and ``bench/nas_proxy.py`` both open their folders here, so either can resume (or
    summarise) a grid the other started.
    """
    data = {
        "dataset": dataset,
        "data_dir": None if data_dir is None else str(data_dir),
        "split": split,
        "task": task,
        "test_fold": test_fold,
        "limit_per_class": limit_per_class,
    }
    return RunDir(
        out,
        "nas_proxy",
        {"settings": settings.to_dict(), "data": data},
        title=f"NAS proxy on {dataset}",
        overwrite=overwrite,
    )


# rank statistics -------------------------------------------------------------------------------------
def spearman_rho(a: np.ndarray | list[float], b: np.ndarray | list[float]) -> float:
    """Spearman's rank correlation with average ranks for ties (scipy), ``nan`` when undefined.

    Undefined means fewer than 3 pairs or a constant side (every variant tied): there is no
    ranking to agree with, and reporting 0 would read as "no agreement".
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"spearman_rho needs two 1-D arrays of equal length, got {a.shape} and {b.shape}")
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def top_k_overlap(proxy: np.ndarray | list[float], truth: np.ndarray | list[float], k: int) -> float:
    """Share of the ground truth's best ``k`` variants that the proxy also puts in its best ``k``.

    Ties are broken by grid order (a stable sort), so the figure is deterministic.
    """
    proxy, truth = np.asarray(proxy, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    k = min(int(k), len(truth))
    if k < 1:
        return float("nan")
    best_proxy = set(np.argsort(-proxy, kind="stable")[:k].tolist())
    best_truth = set(np.argsort(-truth, kind="stable")[:k].tolist())
    return len(best_proxy & best_truth) / k


# proxy training sets ---------------------------------------------------------------------------------
def _coreset_from_file(path: Path, fs: Any) -> tuple[np.ndarray, np.ndarray, str]:
    """A coreset file's samples in ``fs``'s normalisation (it must share classes and front-end), and its method."""
    coreset = Coreset.load(path)
    x, y = coreset_features_for(coreset, fs, path)
    return x, y, coreset.method


def build_proxy_sets(
    fs: Any, loader: dict[str, Any], settings: NASSettings, run: RunDir, progress: bool = True
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Proxy name -> (x, y): distilled, random, herding (``ipc`` per class) and any extra coreset files.

    An in-run distillation is saved as ``distilled-<method>.kit`` in the run folder (and
    checkpointed while it runs, for iterative methods), so a resumed run reuses it.
    """

    sets: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    files = dict(settings.coreset_files)
    distilled_file = files.pop("distill", None)
    reserved = sorted({"random", "herding", EARLY, TRUTH} & set(files))
    if reserved or any(name.startswith("distilled") for name in files):
        raise KitError(
            f"--coreset: proxy name {(reserved or [n for n in files if n.startswith('distilled')])[0]!r} "
            "is taken by a built-in proxy; choose another NAME"
        )
    if distilled_file is not None:
        x, y, method = _coreset_from_file(Path(distilled_file), fs)
        sets[f"distilled ({method}, file)"] = (x, y)
    else:
        method = settings.distill_method
        if method not in METHODS:
            raise KitError(f"--distill-method: unknown method '{method}' (choose from {', '.join(METHODS)})")
        saved = run.path / f"distilled-{method}.kit"
        if saved.exists() and run.has("distilled"):
            sets[f"distilled ({method})"] = _coreset_from_file(saved, fs)[:2]
        else:
            valid = set(METHODS[method].param_names())
            params: dict[str, Any] = {}
            if "checkpoint_path" in valid:
                params = {
                    "checkpoint_path": str(saved) + ".ckpt",
                    "resume": True,
                    "progress": progress,
                    "threads": 1,
                    "time_budget_s": settings.distill_time_budget_s,
                }
                if settings.distill_steps is not None:
                    params["steps"] = settings.distill_steps
            coreset, _, summary = distill_coreset(fs, loader, method, settings.ipc, seed=settings.seed, **params)
            coreset.save(saved)
            Path(str(saved) + ".ckpt").unlink(missing_ok=True)  # the saved coreset is the resume point now
            run.record("distilled", {"file": saved.name, "method": method, "summary": summary})
            sets[f"distilled ({method})"] = (coreset.features, coreset.labels)
    for method in ("random", "herding"):
        coreset, _, _ = distill_coreset(fs, loader, method, settings.ipc, seed=settings.seed)
        sets[method] = (coreset.features, coreset.labels)
    for name, path in files.items():
        sets[name] = _coreset_from_file(Path(path), fs)[:2]
    return sets


# the grid --------------------------------------------------------------------------------------------
def _train_cell(
    x: np.ndarray, y: np.ndarray, fs: Any, variant: dict[str, Any], samples: int, batch: int, seed: int
) -> dict[str, Any]:
    """Train one variant on one proxy for ``samples`` clips seen (epochs unbounded) and score it on the test split."""
    config = TrainConfig(
        arch="convnet-nas",
        arch_kwargs=dict(variant),
        epochs=10**6,
        max_samples=samples,
        batch_size=batch,
        seed=seed,
        threads=1,
    )
    started = time.perf_counter()
    model = train_model(x, y, len(fs.classes), config, progress=False)
    with torch_threads(1):
        accuracy = evaluate(model, fs.x_test, fs.y_test)["accuracy"]
    stats = model.train_stats  # type: ignore[attr-defined]
    return {
        "accuracy": accuracy,
        "seconds": round(time.perf_counter() - started, 3),
        "steps": stats["steps"],
        "samples_seen": stats["samples_seen"],
        "n_train": int(len(x)),
    }


def run_nas_proxy(
    fs: Any, loader: dict[str, Any], settings: NASSettings, run: RunDir, progress: bool = True
) -> dict[str, Any]:
    """Train every (variant, proxy) cell not yet in ``run``, then write tables, scatter and headline.

    Returns ``{"variants", "proxies", "accuracy": {proxy: [acc per variant]}, "agreement": {...}}``.
    """
    try:
        variants = search_space(settings.grid)
    except ValueError as exc:
        raise KitError(f"--grid: {exc}") from None
    if len(variants) < 3:
        raise KitError(f"--grid {settings.grid}: a ranking needs at least 3 variants")
    sets = build_proxy_sets(fs, loader, settings, run, progress=progress)
    budgets = {name: (settings.proxy_samples, settings.batch_size) for name in sets}
    sets[EARLY] = (fs.x_train, fs.y_train)
    budgets[EARLY] = (settings.early_samples, settings.batch_size)
    sets[TRUTH] = (fs.x_train, fs.y_train)
    budgets[TRUTH] = (settings.truth_samples, settings.truth_batch_size)
    names = [variant_name(v) for v in variants]
    todo = [(p, v, variant_name(v)) for v in variants for p in sets if not run.has(f"{p}/{variant_name(v)}")]
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
        disable=not progress,
    ) as bar:
        task = bar.add_task(
            "NAS grid", total=len(variants) * len(sets), completed=len(variants) * len(sets) - len(todo)
        )
        for proxy, variant, name in todo:
            bar.update(task, description=f"{name} on {proxy}")
            x, y = sets[proxy]
            run.record(f"{proxy}/{name}", _train_cell(x, y, fs, variant, *budgets[proxy], settings.seed))
            bar.advance(task)

    accuracy = {p: np.array([run.get(f"{p}/{n}")["accuracy"] for n in names]) for p in sets}
    seconds = {p: float(sum(run.get(f"{p}/{n}")["seconds"] for n in names)) for p in sets}
    proxies = [p for p in sets if p != TRUTH]
    agreement = {
        p: {
            "spearman": spearman_rho(accuracy[p], accuracy[TRUTH]),
            "top_k_overlap": top_k_overlap(accuracy[p], accuracy[TRUTH], settings.top_k),
            "seconds": seconds[p],
            "speedup": seconds[TRUTH] / seconds[p] if seconds[p] > 0 else math.inf,
        }
        for p in proxies
    }
    _write_results(run, settings, variants, names, sets, budgets, accuracy, seconds, agreement)
    return {
        "variants": names,
        "proxies": proxies,
        "accuracy": {p: a.tolist() for p, a in accuracy.items()},
        "agreement": agreement,
        "seconds": seconds,
    }


def _fmt(value: float, digits: int = 3) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def _write_results(
    run: RunDir,
    settings: NASSettings,
    variants: list[dict[str, Any]],
    names: list[str],
    sets: dict[str, tuple[np.ndarray, np.ndarray]],
    budgets: dict[str, tuple[int, int]],
    accuracy: dict[str, np.ndarray],
    seconds: dict[str, float],
    agreement: dict[str, dict[str, float]],
) -> None:
    k = settings.top_k
    rows = [
        [
            p,
            int(len(sets[p][0])),
            *budgets[p],
            _fmt(a["spearman"]),
            _fmt(a["top_k_overlap"], 2),
            round(a["seconds"], 1),
            _fmt(a["speedup"], 1),
        ]
        for p, a in agreement.items()
    ]
    rows.append([TRUTH, int(len(sets[TRUTH][0])), *budgets[TRUTH], "1.000", "1.00", round(seconds[TRUTH], 1), "1.0"])
    run.add_table(
        f"Rank agreement with full-data training over {len(names)} ConvNet variants ({settings.grid} grid)",
        [
            "proxy",
            "training clips",
            "clips seen per training",
            "batch",
            "Spearman rho",
            f"top-{k} overlap",
            "train+eval s (all variants)",
            "speed-up vs ground truth",
        ],
        rows,
    )
    columns = ["variant", *sets.keys()]
    order = np.argsort(-accuracy[TRUTH], kind="stable")
    run.add_table(
        "Test accuracy (%) of every variant on every proxy, best ground truth first",
        columns,
        [[names[i], *[round(100 * float(accuracy[p][i]), 1) for p in sets]] for i in order],
    )
    figure = run.path / "nas_scatter.png"
    plot_scatter(figure, accuracy, agreement)
    run.add_figure(
        figure.name,
        f"Proxy accuracy vs full-data accuracy, one point per ConvNet variant ({len(names)} "
        "variants); Spearman rho in each title.",
    )
    best = max(
        agreement, key=lambda p: -math.inf if not np.isfinite(agreement[p]["spearman"]) else agreement[p]["spearman"]
    )
    run.headline = {
        f"spearman[{p}]": round(a["spearman"], 3) if np.isfinite(a["spearman"]) else None for p, a in agreement.items()
    }
    run.headline["variants"] = len(names)
    run.summary = (
        f"{len(names)} ConvNet variants ({settings.grid} grid), {settings.ipc} clips per class per coreset "
        f"proxy, one training seed ({settings.seed}) per cell. Best rank agreement with full-data training: "
        f"{best} (Spearman rho {_fmt(agreement[best]['spearman'])}, top-{k} overlap "
        f"{_fmt(agreement[best]['top_k_overlap'], 2)})."
    )
    run.save()


def plot_scatter(path: Path, accuracy: dict[str, np.ndarray], agreement: dict[str, dict[str, float]]) -> Path:
    """One panel per proxy: proxy accuracy (x) vs ground-truth accuracy (y), rho in the title; PNG, atomic."""
    import matplotlib  # lazy: matplotlib only when used

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: matplotlib only when used

    from ..report.plots import save_figure  # lazy: pulls in matplotlib

    proxies = list(agreement)
    cols = min(3, len(proxies))
    rows = math.ceil(len(proxies) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.8 * rows), squeeze=False)
    truth = 100 * accuracy[TRUTH]
    for ax, proxy in zip(axes.flat, proxies):
        ax.scatter(100 * accuracy[proxy], truth, s=18, alpha=0.75)
        ax.set_title(f"{proxy}\nSpearman rho = {_fmt(agreement[proxy]['spearman'], 2)}", fontsize=9)
        ax.set_xlabel("proxy test accuracy (%)")
        ax.set_ylabel("full-data test accuracy (%)")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(proxies) :]:
        ax.axis("off")
    fig.tight_layout()
    return save_figure(fig, path)
