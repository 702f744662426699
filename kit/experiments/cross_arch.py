"""Cross-architecture generalisation of a distilled coreset (DDFAD Table II; DC/DM/MTT papers).

Why: a coreset is shipped to be trained on by whatever network fits the device (a DS-CNN on a
microcontroller, a ResNet on a phone), not only by the network it was distilled with. The
experiment distils one coreset *with* each architecture A (the distiller's matching / embedding /
expert network), then trains each architecture B on every coreset and evaluates it on the real
test split. Reading the matrix: the diagonal is "distil and deploy the same network"; an
off-diagonal cell below its diagonal means the coreset over-fits A's inductive bias; the
"random real clips" row (the same number of real clips per class, drawn at random) is the bar a
distilled coreset must clear for it to be worth distilling at all. With one seed, that row holds
exactly the real clips DC/DSA/DM/MTT start from (their real initialisation draws the same clips
per class as the ``random`` selector), so "row A minus the random row" is what distilling with A
changed, not which clips it happened to start from.

Networks. Distillation networks use instance norm (``distill.gradient_matching.network_kwargs``
says why BatchNorm breaks distribution and gradient matching); the ConvNet as A keeps the
distiller's own defaults (width 64 for DM, 32 for DC/DSA/MTT), so its row is the coreset
``kit distill`` would write. Evaluation networks use their own norm (batch for ResNet-18, VGG11
and DS-CNN, instance for the ConvNet). ResNet-18 and VGG11 run at width 16 (``ARCH_PRESETS``):
at the original width 64 one ResNet-18 training costs 16x more (0.5 G MACs per clip), which a
shared 2-core CPU cannot afford for a 5 x 4 x 3 matrix; ``arch_params`` overrides any preset.

Every unit of work is a resumable cell of the run folder (``kit.experiments.rundir``): one
distillation per A (its coreset is saved as ``coreset_<A>.kit`` in the folder) and one
training-over-seeds per (row, B); an interrupted run continues where it stopped.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from deploy.runtime.coreset import Coreset
from deploy.runtime.errors import KitError
from kit.pipeline import distill_coreset

from .rundir import RunDir

DEFAULT_ARCHS = ("convnet", "resnet18", "vgg11", "dscnn")
#: CPU-sized defaults per architecture, for both the distillation (A) and the evaluation (B) network
ARCH_PRESETS: dict[str, dict[str, Any]] = {
    "resnet18": {"width": 16},
    "vgg11": {"width": 16},
    "dscnn": {"size": "small"},
}
#: per-architecture training overrides of the evaluation (B). DS-CNN (BatchNorm, depthwise) learns
#: far slower than the ConvNet at Adam 1e-3 within a coreset's short budget: FSDD, 10 random
#: clips per digit, 3 000 clips seen (batch 100): lr 1e-3 18 %, 3e-3 33 %, 1e-2 40 %; 30 clips per
#: digit, batch 32: 1e-3 50 %, 3e-3 83 % (one seed, 2 busy cores). The other nets keep 1e-3
#: (ResNet-18 width 16 on the same 10/class: 65 / 77 / 58 %, so no clear gain worth a special case).
TRAIN_PRESETS: dict[str, dict[str, Any]] = {"dscnn": {"lr": 3e-3}}
RANDOM_ROW = "random"
RANDOM_LABEL = "random real clips"


@dataclass
class CrossArchSettings:
    """Everything that determines the matrix (recorded in ``config.json``)."""

    method: str = "dm"
    ipc: int = 10
    archs: tuple[str, ...] = DEFAULT_ARCHS
    seed: int = 0
    seeds: tuple[int, ...] = (0, 1, 2)
    distill_params: dict[str, Any] = field(default_factory=lambda: {"time_budget_s": 280.0})
    #: per-architecture constructor arguments over ``ARCH_PRESETS`` ({arch: {name: value}})
    arch_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: kit.training.TrainConfig options of every evaluation training (arch/seed are set per cell)
    train: dict[str, Any] = field(default_factory=lambda: {"max_samples": 16_000})
    #: per-architecture TrainConfig overrides ({arch: {option: value}}), over ``TRAIN_PRESETS``
    train_params: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {k: dict(v) for k, v in TRAIN_PRESETS.items()}
    )
    include_random: bool = True
    threads: int = 1

    @classmethod
    def quick(cls, **changes: Any) -> "CrossArchSettings":
        """The small setting the tests run: 2 clips per class, a few distillation steps, one
        training seed of 600 clips seen per cell (seconds per cell on a shared core)."""
        base = cls(
            ipc=2,
            seeds=(0,),
            distill_params={"steps": 4, "time_budget_s": 30.0, "batch_size": 8},
            train={"max_samples": 600, "batch_size": 32},
        )
        return replace(base, **changes)

    def __post_init__(self) -> None:
        self.archs = tuple(str(a) for a in self.archs)
        self.seeds = tuple(int(s) for s in self.seeds)

    def check(self) -> None:
        """One-line errors before any data is loaded: unknown archs or arguments, bad numbers."""
        from distill.registry import METHODS  # lazy: pulls in torch
        from kit.models import build_model  # lazy: pulls in torch
        from kit.training import TrainConfig  # lazy: pulls in torch

        if self.method not in METHODS:
            raise KitError(f"--method: unknown method '{self.method}' (choose from {', '.join(METHODS)})")
        if "arch" not in METHODS[self.method].param_names():
            takes = [m for m, cls in METHODS.items() if "arch" in cls.param_names()]
            raise KitError(f"--method {self.method} does not distil with a network; choose from {', '.join(takes)}")
        if self.ipc < 1:
            raise KitError(f"--ipc must be >= 1, got {self.ipc}")
        if not self.archs:
            raise KitError("--archs: give at least one architecture")
        if len(set(self.archs)) != len(self.archs):
            raise KitError(f"--archs: an architecture is listed twice ({','.join(self.archs)})")
        if not self.seeds:
            raise KitError("--seeds: give at least one seed")
        extra = sorted(set(self.arch_params) - set(self.archs))
        if extra:
            raise KitError(f"--arch-param: '{extra[0]}' is not one of --archs ({','.join(self.archs)})")
        for arch in self.archs:
            try:
                build_model(arch, (1, 2, 2), 2, **self.eval_kwargs(arch))
            except KitError as exc:
                raise KitError(f"--archs: {exc}") from None
        for arch in self.archs:
            options = {**self.train, **self.train_params.get(arch, {})}
            try:
                TrainConfig(**{k: v for k, v in options.items() if k not in ("arch", "arch_kwargs", "seed")})
            except TypeError as exc:
                raise KitError(f"training options of {arch}: {exc}") from None
        for arch in self.archs:
            self.make_distiller(arch).validate_params()  # unknown names, values and the network fail here

    def eval_kwargs(self, arch: str) -> dict[str, Any]:
        """Constructor arguments of B (its own norm)."""
        return {**ARCH_PRESETS.get(arch, {}), **self.arch_params.get(arch, {})}

    def distill_kwargs(self, arch: str) -> dict[str, Any] | None:
        """``arch_kwargs`` of the distiller for A (None for the ConvNet: the distiller's defaults)."""
        kwargs = {**ARCH_PRESETS.get(arch, {}), **self.arch_params.get(arch, {})}
        return kwargs or None

    def make_distiller(self, arch: str) -> Any:
        from distill import make_distiller  # lazy: pulls in torch

        return make_distiller(
            self.method,
            self.ipc,
            seed=self.seed,
            arch=arch,
            arch_kwargs=self.distill_kwargs(arch),
            **self.distill_params,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def loader_options(
    dataset: str,
    data_dir: str | Path | None,
    *,
    split: str = "official",
    task: str = "kws10",
    test_fold: int = 5,
    limit_per_class: int | None = None,
) -> dict[str, Any]:
    """How the data is loaded, as recorded in the run config (``kit xarch`` and the benchmark
    build it the same way, so either can resume the other's run folder)."""
    return {
        "dataset": dataset,
        "data_dir": None if data_dir is None else str(data_dir),
        "split": split,
        "task": task,
        "test_fold": int(test_fold),
        "limit_per_class": limit_per_class,
    }


def run_config(settings: CrossArchSettings, data: dict[str, Any], quick: bool) -> dict[str, Any]:
    """The run folder's identity: a folder holding another config is refused, not mixed."""
    return {"settings": settings.to_dict(), "data": dict(data), "quick": bool(quick)}


def coreset_file(run: RunDir, row: str) -> Path:
    return run.path / f"coreset_{row}.kit"


def _distil_row(
    fs: Any, loader: dict[str, Any], settings: CrossArchSettings, run: RunDir, row: str, progress: bool
) -> Coreset:
    """The coreset of one row (distilled with ``row``, or random real clips), from its cell if done."""
    key, path = f"distill/{row}", coreset_file(run, row)
    if run.has(key) and path.exists():
        return Coreset.load(path)
    if row == RANDOM_ROW:
        coreset, _, summary = distill_coreset(fs, loader, "random", settings.ipc, seed=settings.seed)
    else:
        params = dict(settings.distill_params)
        if "threads" in _param_names(settings.method):
            params.setdefault("threads", settings.threads)
        if "progress" in _param_names(settings.method):
            params.setdefault("progress", progress)
        coreset, _, summary = distill_coreset(
            fs,
            loader,
            settings.method,
            settings.ipc,
            seed=settings.seed,
            arch=row,
            arch_kwargs=settings.distill_kwargs(row),
            **params,
        )
    coreset.save(path)
    run.record(
        key,
        {
            "file": path.name,
            "fit_time_s": summary.get("fit_time_s"),
            "steps": summary.get("steps"),
            "stop_reason": summary.get("stop_reason"),
            "peak_rss_mb": summary.get("peak_rss_mb"),
        },
    )
    return coreset


def _param_names(method: str) -> list[str]:
    from distill.registry import METHODS  # lazy: pulls in torch

    return METHODS[method].param_names()


def _evaluate_cell(
    fs: Any, coreset: Coreset, settings: CrossArchSettings, run: RunDir, row: str, arch: str
) -> dict[str, Any]:
    from kit.training import TrainConfig, train_eval_seeds  # lazy: pulls in torch

    key = f"eval/{row}/{arch}"
    if run.has(key):
        return run.get(key)
    config = TrainConfig(
        **{
            **settings.train,
            **settings.train_params.get(arch, {}),
            "arch": arch,
            "arch_kwargs": settings.eval_kwargs(arch),
            "threads": settings.threads,
        }
    )
    result = train_eval_seeds(
        coreset.features,
        coreset.labels,
        fs.x_test,
        fs.y_test,
        len(fs.classes),
        config,
        seeds=settings.seeds,
        progress=False,
    )
    seconds = sum(r["train_seconds"] for r in result["per_seed"])
    return run.record(
        key,
        {
            "mean": result["mean"],
            "std": result["std"],
            "accuracies": result["accuracies"],
            "train_seconds": round(seconds, 1),
        },
    )


def run_cross_arch(
    fs: Any, loader: dict[str, Any], settings: CrossArchSettings, run: RunDir, progress: bool = True
) -> dict[str, Any]:
    """Fill every cell of ``run`` (skipping finished ones) and write its results.

    Returns ``{"rows", "archs", "matrix" {row: {arch: cell}}, "distill" {row: cell}, "headline"}``.
    """
    settings.check()
    rows = list(settings.archs) + ([RANDOM_ROW] if settings.include_random else [])
    total = len(rows) * (1 + len(settings.archs))
    matrix: dict[str, dict[str, Any]] = {}
    distill_cells: dict[str, Any] = {}
    bar = Progress(
        TextColumn("[bold]cross-arch[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
        disable=not progress,
    )
    with bar:
        task = bar.add_task("", total=total)
        for row in rows:
            bar.update(task, description=f"distil with {row}" if row != RANDOM_ROW else "random real clips")
            coreset = _distil_row(fs, loader, settings, run, row, progress=False)
            distill_cells[row] = run.get(f"distill/{row}")
            bar.advance(task)
            matrix[row] = {}
            for arch in settings.archs:
                bar.update(task, description=f"{row} -> train {arch}")
                matrix[row][arch] = _evaluate_cell(fs, coreset, settings, run, row, arch)
                bar.advance(task)
    headline = summarise(matrix, settings.archs)
    _write_results(run, settings, rows, matrix, distill_cells, headline, str(loader.get("dataset", "")))
    return {
        "rows": rows,
        "archs": list(settings.archs),
        "matrix": matrix,
        "distill": distill_cells,
        "headline": headline,
    }


def summarise(matrix: dict[str, dict[str, Any]], archs: tuple[str, ...]) -> dict[str, Any]:
    """Headline figures (accuracies in %): diagonal vs off-diagonal mean, best and worst transfer,
    and the distilled coresets' mean gain over random real clips per evaluation network."""
    pct = {row: {b: 100.0 * cell["mean"] for b, cell in cells.items()} for row, cells in matrix.items()}
    distilled = [a for a in archs if a in pct]
    diagonal = [pct[a][a] for a in distilled]
    off = [(pct[a][b], a, b) for a in distilled for b in archs if b != a]
    out: dict[str, Any] = {"diagonal_mean_pct": round(float(np.mean(diagonal)), 2) if diagonal else None}
    if off:
        best, worst = max(off), min(off)
        out.update(
            off_diagonal_mean_pct=round(float(np.mean([v for v, _, _ in off])), 2),
            best_transfer=f"{best[1]} -> {best[2]}",
            best_transfer_pct=round(best[0], 2),
            worst_transfer=f"{worst[1]} -> {worst[2]}",
            worst_transfer_pct=round(worst[0], 2),
        )
        # transfer drop of each A: its diagonal minus the mean of its row off the diagonal
        out["transfer_drop_pct"] = {
            a: round(pct[a][a] - float(np.mean([pct[a][b] for b in archs if b != a])), 2) for a in distilled
        }
    if RANDOM_ROW in pct and distilled:
        out["gain_over_random_pct"] = {
            b: round(float(np.mean([pct[a][b] for a in distilled])) - pct[RANDOM_ROW][b], 2) for b in archs
        }
    return out


def _label(row: str) -> str:
    return RANDOM_LABEL if row == RANDOM_ROW else f"distilled with {row}"


def _write_results(
    run: RunDir,
    settings: CrossArchSettings,
    rows: list[str],
    matrix: dict[str, dict[str, Any]],
    distill_cells: dict[str, Any],
    headline: dict[str, Any],
    dataset: str,
) -> None:
    archs = list(settings.archs)
    table_rows = [
        [_label(row)] + [f"{100 * matrix[row][b]['mean']:.1f} ± {100 * matrix[row][b]['std']:.1f}" for b in archs]
        for row in rows
    ]
    n_seeds = len(settings.seeds)
    run.add_table(
        f"Test accuracy (%), mean ± std over {n_seeds} training seed{'s' * (n_seeds > 1)}: "
        f"rows = coreset ({settings.method}, {settings.ipc}/class), columns = trained network",
        ["coreset"] + [f"train {b}" for b in archs],
        table_rows,
    )
    run.add_table(
        "Networks (distillation A: instance norm; evaluation B: own norm)",
        ["arch", "distillation kwargs", "evaluation kwargs", "training overrides", "distil time (s)", "steps"],
        [
            [
                a,
                str(settings.distill_kwargs(a) or "distiller defaults"),
                str(settings.eval_kwargs(a) or "defaults"),
                str(settings.train_params.get(a) or "-"),
                distill_cells[a].get("fit_time_s"),
                distill_cells[a].get("steps"),
            ]
            for a in archs
        ],
    )
    png = plot_matrix(
        run.path / "cross_arch.png",
        rows,
        archs,
        matrix,
        title=f"{dataset} {settings.method} {settings.ipc}/class: test accuracy (%)",
    )
    run.add_figure(png, "Cross-architecture matrix: coreset distilled with the row's network, trained on the column's.")
    run.headline = headline
    parts = [f"{settings.method.upper()} coresets at {settings.ipc} clips per class"]
    if headline.get("diagonal_mean_pct") is not None:
        parts.append(f"same-network accuracy {headline['diagonal_mean_pct']:.1f} %")
    if "off_diagonal_mean_pct" in headline:
        parts.append(
            f"other networks {headline['off_diagonal_mean_pct']:.1f} % (best {headline['best_transfer']} "
            f"{headline['best_transfer_pct']:.1f} %, "
            f"worst {headline['worst_transfer']} {headline['worst_transfer_pct']:.1f} %)"
        )
    run.summary = "; ".join(parts) + "."
    run.save()


def plot_matrix(path: Path, rows: list[str], archs: list[str], matrix: dict[str, dict[str, Any]], title: str) -> Path:
    """Heat map of mean accuracies with 'mean ± std' written in every cell (PNG, Agg backend)."""
    import matplotlib  # lazy: matplotlib only when used

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: matplotlib only when used

    values = np.array([[100 * matrix[r][b]["mean"] for b in archs] for r in rows])
    fig, ax = plt.subplots(figsize=(1.6 + 1.5 * len(archs), 1.2 + 0.6 * len(rows)))
    image = ax.imshow(values, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(archs)), [f"train {b}" for b in archs])
    ax.set_yticks(range(len(rows)), [_label(r) for r in rows])
    threshold = values.min() + 0.6 * (values.max() - values.min() + 1e-9)
    for i, r in enumerate(rows):
        for j, b in enumerate(archs):
            ax.text(
                j,
                i,
                f"{values[i, j]:.1f}\n± {100 * matrix[r][b]['std']:.1f}",
                ha="center",
                va="center",
                fontsize=8,
                color="black" if values[i, j] > threshold else "white",
            )
    for i, r in enumerate(rows):  # outline "distilled and trained with the same network"
        if r in archs:
            j = archs.index(r)
            ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=1.5))
    fig.colorbar(image, ax=ax, label="accuracy (%)")
    ax.set_title(title.strip(), fontsize=9)
    fig.tight_layout()
    from kit.report.plots import save_figure  # lazy: pulls in matplotlib

    return save_figure(fig, path, dpi=120)
