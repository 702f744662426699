"""The distillation benchmark: datasets x methods x samples per class, ConvNet accuracy, plus full data.

Datasets (``--datasets``): ``fsdd`` (official split), ``fsdd-speaker`` (speakers nicolas + theo
held out), ``kws10`` (Speech Commands, 10 keywords, split by speaker), ``kws10-logmel`` (the same
split on log-mel features instead of FD-MFCC), ``esc10`` (fold 5 as test).
Methods: random, herding, k-center selection; DC, DSA, DM, MTT, RFAD distillation; full training
data. Samples per class 1 / 10 / 50 (ESC-10: 1 / 5 / 10). Each cell records ConvNet test accuracy
(mean ± std over training seeds), distillation wall time and the peak memory of its process.

Why cells run in their own processes: peak memory per distillation is a figure we report, and
only a fresh process gives a clean ``ru_maxrss``; it also lets two cells share the two cores.
Results are merged into one JSON file after every cell (atomically), so an interrupted run
resumes where it stopped and later runs add cells instead of starting over.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from bench.machine import machine_info
from bench.paths import DEFAULT_DATA_DIR, RESULTS_DIR
from deploy.runtime.artifact import atomic_write_text
from kit.pipeline import distill_coreset, load_training_set, peak_rss_mb, score_coreset
from kit.report.tables import markdown_table

# the training batch rule (``TrainConfig(batch_size=None)``): coresets over FULL_BATCH_UP_TO clips train in minibatches
from kit.training.config import FULL_BATCH_UP_TO, LARGE_SET_BATCH, coreset_batch

METHODS = ("random", "herding", "kcenter", "dc", "dsa", "dm", "mtt", "rfad")
#: optimisation-based methods: they take a time budget, a thread count and a progress flag
ITERATIVE = ("dc", "dsa", "dm", "mtt", "rfad")
_KWS10 = {
    "dataset": "speech_commands",
    "task": "kws10",
    "ipcs": (1, 10, 50),
    "title": "Speech Commands kws10, speaker split",
}
#: benchmark name -> loader options and the samples-per-class grid
DATASETS: dict[str, dict[str, Any]] = {
    "fsdd": {"dataset": "fsdd", "split": "official", "ipcs": (1, 10, 50), "title": "FSDD, official split"},
    "fsdd-speaker": {"dataset": "fsdd", "split": "speaker", "ipcs": (1, 10, 50), "title": "FSDD, speaker split"},
    "kws10": _KWS10,
    # the same split on log-mel features: the feature ablation found log-mel the best front-end on kws10
    "kws10-logmel": {**_KWS10, "feature": "log_mel", "title": _KWS10["title"] + ", log-mel features"},
    "esc10": {"dataset": "esc10", "test_fold": 5, "ipcs": (1, 5, 10), "title": "ESC-10, fold 5 test"},
    # the official protocol: every cell distils from four folds and tests on the fifth, five times
    "esc10-cv": {
        "dataset": "esc10",
        "folds": (1, 2, 3, 4, 5),
        "ipcs": (1, 5, 10),
        "title": "ESC-10, 5-fold cross-validation (mean ± std over folds)",
    },
}
#: ``--folds all`` runs these benchmark datasets under their official k-fold protocol
CV_VARIANT = {"esc10": "esc10-cv"}


def results_stem(name: str, dataset: str, quick: bool = False) -> str:
    """One results file per benchmark, dataset and setting: ``render`` (FSDD, the default dataset),
    ``render_kws10``, ``render_kws10_quick``; so a run on another dataset never overwrites FSDD's."""
    return name + ("" if dataset == "fsdd" else f"_{dataset}") + ("_quick" if quick else "")


#: samples seen per evaluation model unless ``--max-samples`` says otherwise
DEFAULT_MAX_SAMPLES = 16000
#: ``--quick`` runs the middle size of each dataset's grid (10/class; ESC-10 5/class)
QUICK_IPC = {name: d["ipcs"][1] for name, d in DATASETS.items()}
#: the full-training-data rows keep the batch they were measured with (234 steps of 256 in 60 000 samples)
FULL_DATA_BATCH = 256


def cell_key(dataset: str, method: str, ipc: int | None) -> str:
    return f"{dataset}/{method}/{'full' if ipc is None else ipc}"


def load_cell_data(spec: dict[str, Any], test_fold: int | None = None):
    """The cell's feature set and loader record; ``limit_per_class`` in the spec (tests only) takes a
    few clips per class so the real recordings load in seconds. ``test_fold`` overrides the
    dataset's held-out fold (cross-validation cells)."""
    d = DATASETS[spec["dataset"]]
    fold = test_fold if test_fold is not None else d.get("test_fold", 5)
    return load_training_set(
        d["dataset"],
        spec.get("data_dir"),
        split=d.get("split", "official"),
        task=d.get("task", "kws10"),
        test_fold=fold,
        feature=d.get("feature"),
        limit_per_class=spec.get("limit_per_class"),
        progress=False,
    )


def run_cell(spec: dict[str, Any]) -> dict[str, Any]:
    """One cell; a cross-validation dataset runs the cell once per fold and reports mean ± std over folds."""
    folds = spec.get("folds") or DATASETS[spec["dataset"]].get("folds")
    if not folds:
        return run_fold(spec)
    per_fold = [run_fold(spec, fold) for fold in folds]
    means = [row["accuracy_mean"] for row in per_fold]
    result = dict(per_fold[0])
    result.update(
        accuracy_mean=round(statistics.fmean(means), 2),
        accuracy_std=round(statistics.pstdev(means), 2),
        accuracies=[a for row in per_fold for a in row["accuracies"]],
        folds=[
            {
                "fold": fold,
                **{k: row[k] for k in ("accuracy_mean", "accuracy_std", "accuracies", "n_test", "distill_s")},
            }
            for fold, row in zip(folds, per_fold, strict=True)
        ],
        distill_s=round(sum(row["distill_s"] for row in per_fold), 2),
        train_s=round(sum(row["train_s"] for row in per_fold), 2),
        n_test=sum(row["n_test"] for row in per_fold),
        protocol=f"{len(folds)}-fold cross-validation, folds {list(folds)}; mean ± std over folds of the seed means",
    )
    return result


def run_fold(spec: dict[str, Any], test_fold: int | None = None) -> dict[str, Any]:
    """One cell (or one fold of it) in this process: distil (or take all training data), then train and
    score over seeds."""
    fs, loader = load_cell_data(spec, test_fold)
    train_options = {"max_samples": spec["max_samples"], "threads": 1}
    if spec.get("train_batch"):
        train_options["batch_size"] = spec["train_batch"]
    result: dict[str, Any] = {"dataset": spec["dataset"], "method": spec["method"], "ipc": spec["ipc"]}
    if spec["method"] == "full":
        x, y = fs.x_train, fs.y_train
        train_options["max_samples"] = spec["full_max_samples"]
        train_options["batch_size"] = FULL_DATA_BATCH
        result.update(distill_s=0.0, peak_rss_mb=round(peak_rss_mb(), 1), n_train=int(len(x)))
    else:
        params: dict[str, Any] = {}
        if spec["method"] in ITERATIVE:
            params = {"threads": 1, "progress": False, **spec.get("params", {}).get(spec["method"], {})}
            if spec.get("time_budget_s"):
                params["time_budget_s"] = spec["time_budget_s"]
        coreset, _, summary = distill_coreset(fs, loader, spec["method"], spec["ipc"], seed=spec["seed"], **params)
        x, y = coreset.features, coreset.labels
        result.update(
            distill_s=summary["fit_time_s"],
            peak_rss_mb=summary["peak_rss_mb"],
            params=coreset.params,
            distill_summary={k: v for k, v in summary.items() if k != "train_indices"},
        )
    if spec["method"] != "full":
        result["n_coreset"] = int(len(x))
    scores = score_coreset(x, y, fs, seeds=tuple(spec["seeds"]), **train_options)
    result.update(
        accuracy_mean=round(100 * scores["mean"], 2),
        accuracy_std=round(100 * scores["std"], 2),
        accuracies=[round(100 * a, 2) for a in scores["accuracies"]],
        train_s=scores["train_time_s"],
        train_config=scores.get("config"),
        n_test=int(len(fs.y_test)),
    )
    return result


def _write_json(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True, default=str))


def merge_cell(path: Path, key: str, cell: dict, machine: dict) -> dict:
    """Add one finished cell to the results file and return everything in it.

    Why re-read under a lock: two benchmark commands may run side by side on one results file (say,
    one dataset each); writing back the cells read at start-up would drop the other command's cells.
    """
    import fcntl  # lazy: platform-specific module

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        results = json.loads(path.read_text()) if path.exists() else {}
        results.setdefault("cells", {})[key] = cell
        results["machine"] = machine
        results["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        _write_json(path, results)
    return results


def _training_setup(cell: dict) -> tuple[int, int, int]:
    """Coreset clips, samples seen per evaluation model and the batch training actually used.

    Old cells may lack ``n_coreset`` (every benchmark dataset has 10 classes) or the budget (they all
    ran at the default)."""
    config = cell.get("train_config") or {}
    n_clips = cell.get("n_coreset") or (cell["ipc"] or 0) * 10
    samples = config.get("max_samples") or (cell.get("settings") or {}).get("max_samples") or DEFAULT_MAX_SAMPLES
    batch = config.get("batch_size")
    return n_clips, samples, (min(batch, n_clips) if batch else coreset_batch(n_clips))


def _old_batch(cell: dict) -> bool:
    """A coreset of more than FULL_BATCH_UP_TO clips trained at the old fixed batch of 256 on the
    16 000-sample budget: 63 optimiser steps. A larger budget at that batch (say 150 000 samples,
    585 steps) is a deliberate choice, not the old rule, and is not flagged."""
    n_clips, samples, batch = _training_setup(cell)
    return n_clips > FULL_BATCH_UP_TO and batch > LARGE_SET_BATCH and samples // batch < 100


def _training_budget(cell: dict) -> str:
    """How the evaluation networks of a cell were trained: samples seen per model and batch."""
    _, samples, batch = _training_setup(cell)
    return f"{samples:,} samples at batch {batch}".replace(",", " ")


def budget_note(cells: list[dict], ipcs: list[int]) -> str:
    """One line per dataset saying each column's training budget, naming methods where a column mixes budgets.

    Why: a larger budget raises every method at 50/class, so a column is only comparable when its
    cells share one; the table says so instead of leaving it to the JSON.
    """
    parts = []
    for ipc in ipcs:
        groups: dict[str, list[str]] = {}
        for cell in (c for c in cells if c["ipc"] == ipc):
            groups.setdefault(_training_budget(cell), []).append(cell["method"])
        if len(groups) == 1:
            parts.append(f"{ipc}/class {next(iter(groups))}")
        else:
            parts.append(f"{ipc}/class " + "; ".join(f"{b} ({', '.join(sorted(m))})" for b, m in groups.items()))
    return "Evaluation training per model: " + ", ".join(parts) + "."


def cv_note(cells: list[dict]) -> str:
    """What a cross-validation table's ± means and which budgets its cells ran at, next to the defaults.

    Why: a k-fold grid costs k times a single split, so its budgets are often cut to fit; the table
    says by how much instead of leaving it to the JSON."""
    protocols = sorted({c.get("protocol", "") for c in cells} - {""})
    settings = [c.get("settings") or {} for c in cells]
    budgets = sorted({s.get("time_budget_s") for s in settings}, key=lambda b: (b is None, b or 0))
    seeds = sorted({len(s.get("seeds") or []) for s in settings})
    time_text = ", ".join("each method's own" if b is None else f"{b:g} s" for b in budgets)
    default_samples = f"{DEFAULT_MAX_SAMPLES:,}".replace(",", " ")
    return (
        f"Cross-validation: {'; '.join(protocols) or 'mean ± std over folds'}. Budgets of these cells: "
        f"distillation time budget ({', '.join(ITERATIVE)}) {time_text} per fold, "
        f"{'/'.join(map(str, seeds))} training seed(s) per fold (benchmark defaults: each method's own budget "
        f"of about 280 s, 3 seeds, {default_samples} training samples per model; the samples these cells "
        "trained on are in the line above)."
    )


def _method_row(cells: dict[str, dict], dataset: str, method: str, ipcs: list[int], width: int) -> list[str] | None:
    """One method's row: accuracy per ipc (best of the column in bold, † measured at the old batch),
    distill seconds per ipc and the largest peak RSS; None when the method has no cell here."""
    row = [c for c in cells.values() if c["dataset"] == dataset and c["method"] == method]
    if not row:
        return None
    if method == "full":
        c = row[0]
        return [
            f"full training data ({c.get('n_train')})",
            f"{c['accuracy_mean']:.1f} ± {c['accuracy_std']:.1f}",
            *[""] * (width - 1),
            "–",
            "–",
        ]
    by_ipc = {c["ipc"]: c for c in row}
    best = {
        i: max((c["accuracy_mean"] for c in cells.values() if c["dataset"] == dataset and c["ipc"] == i), default=None)
        for i in ipcs
    }
    accs = []
    for i in ipcs:
        if i not in by_ipc:
            accs.append("–")
            continue
        text = f"{by_ipc[i]['accuracy_mean']:.1f} ± {by_ipc[i]['accuracy_std']:.1f}" + (
            "†" if _old_batch(by_ipc[i]) else ""
        )
        accs.append(f"**{text}**" if by_ipc[i]["accuracy_mean"] == best[i] else text)
    times = " / ".join(f"{by_ipc[i]['distill_s']:.0f}" if i in by_ipc else "–" for i in ipcs)
    known = [by_ipc[i]["peak_rss_mb"] for i in by_ipc if by_ipc[i].get("peak_rss_mb") is not None]
    return [method, *accs, times, f"{max(known):.0f}" if known else "–"]


def markdown(cells: dict[str, dict], machine: dict) -> str:
    """Accuracy table (method × ipc per dataset) plus distillation cost."""
    lines = [
        f"# Distillation benchmark\n\nMachine: {machine.get('cpu')}, {machine.get('cores')} cores, "
        f"{machine.get('memory_gb')} GB, torch {machine.get('torch')}. ConvNet (width 128, instance norm) test "
        "accuracy in %, mean ± std over training seeds; distill time and peak RSS of the distilling process. "
        "Each cell's own settings (time budget, training samples, seeds) are in the JSON file.\n"
    ]
    for dataset in [d for d in DATASETS if any(c["dataset"] == d for c in cells.values())]:
        ipcs = sorted({c["ipc"] for c in cells.values() if c["dataset"] == dataset and c["ipc"] is not None})
        lines.append(f"\n## {DATASETS[dataset]['title']}\n")
        headers = [f"{i}/class" for i in ipcs] or ["accuracy"]
        rows = [_method_row(cells, dataset, method, ipcs, len(headers)) for method in (*METHODS, "full")]
        lines.append(markdown_table(["method", *headers, "distill s (per ipc)", "peak RSS MB"], filter(None, rows)))
        if ipcs:
            lines.append("\n" + budget_note([c for c in cells.values() if c["dataset"] == dataset], ipcs))
        if DATASETS[dataset].get("folds"):
            lines.append("\n" + cv_note([c for c in cells.values() if c["dataset"] == dataset]))
    if any(_old_batch(c) for c in cells.values() if c["method"] != "full"):
        lines.append(
            "\n† measured before the batch rule (`TrainConfig(batch_size=None)`): trained at batch 256, i.e. "
            "63 optimiser steps "
            f"on the 16 000-sample budget; coresets of more than {FULL_BATCH_UP_TO} clips now train at batch "
            f"{LARGE_SET_BATCH}. Re-run with `--force` to replace."
        )
    return "\n".join(lines) + "\n"


def plot(cells: dict[str, dict], path: Path) -> None:
    """Accuracy vs samples per class, one line per method, error bars = std over seeds."""
    import matplotlib  # lazy: matplotlib only when used

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: matplotlib only when used

    datasets = [d for d in DATASETS if any(c["dataset"] == d for c in cells.values())]
    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4.4), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        for method in METHODS:
            row = sorted(
                (c for c in cells.values() if c["dataset"] == dataset and c["method"] == method), key=lambda c: c["ipc"]
            )
            if row:
                ax.errorbar(
                    [c["ipc"] for c in row],
                    [c["accuracy_mean"] for c in row],
                    yerr=[c["accuracy_std"] for c in row],
                    marker="o",
                    capsize=3,
                    label=method,
                )
        full = [c for c in cells.values() if c["dataset"] == dataset and c["method"] == "full"]
        if full:
            ax.axhline(full[0]["accuracy_mean"], color="k", ls="--", lw=1, label="full data")
        ax.set_xscale("log")
        ticks = sorted({c["ipc"] for c in cells.values() if c["dataset"] == dataset and c["ipc"] is not None})
        if ticks:
            ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.set_xlabel("samples per class")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(DATASETS[dataset]["title"])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    from kit.report.plots import save_figure  # lazy: pulls in matplotlib

    save_figure(fig, path, dpi=110)


def positive_int(text: str) -> int:
    """argparse type: a whole number above zero, else a one-line usage error."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _cell_folds(args: argparse.Namespace, dataset: str) -> list[int] | None:
    """``--folds all`` -> every fold of a cross-validation dataset; ``--folds 1,2`` -> those (smoke runs)."""
    official = DATASETS[dataset].get("folds")
    chosen = getattr(args, "folds", None)  # absent in callers that predate --folds
    if not official or not chosen or chosen.strip().lower() in ("all", "cv"):
        return None
    folds = [int(f) for f in chosen.split(",")]
    bad = [f for f in folds if f not in official]
    if bad:
        raise SystemExit(f"error: --folds: fold {bad[0]} is out of range for {dataset} (folds {list(official)})")
    return folds


def build_specs(args: argparse.Namespace, cells: dict[str, dict]) -> list[dict[str, Any]]:
    """The cells still to run for the requested grid (cells already in the results are skipped)."""
    specs = []
    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise SystemExit(f"error: unknown method(s) {', '.join(unknown)} (choose from {', '.join(METHODS)})")
    for dataset in [d for d in args.datasets.split(",") if d]:
        if getattr(args, "folds", None):
            if dataset not in CV_VARIANT and not DATASETS.get(dataset, {}).get("folds"):
                raise SystemExit(
                    f"error: --folds: benchmark dataset '{dataset}' has no k-fold protocol here "
                    f"(only {', '.join(CV_VARIANT)})"
                )
            dataset = CV_VARIANT.get(dataset, dataset)
        if dataset not in DATASETS:
            raise SystemExit(f"error: unknown dataset '{dataset}' (choose from {', '.join(DATASETS)})")
        if args.quick:
            ipcs = [QUICK_IPC[dataset]]
        elif args.ipcs:
            ipcs = [int(i) for i in args.ipcs.split(",")]
        else:
            ipcs = list(DATASETS[dataset]["ipcs"])
        grid: list[tuple[str, int | None]] = [(m, i) for i in ipcs for m in methods]
        if not args.no_full:
            grid.append(("full", None))
        for method, ipc in grid:
            key = cell_key(dataset, method, ipc)
            if key in cells and not args.force:
                continue
            specs.append(
                {
                    "key": key,
                    "dataset": dataset,
                    "method": method,
                    "ipc": ipc,
                    "seed": args.distill_seed,
                    "seeds": [int(s) for s in args.seeds.split(",")],
                    "max_samples": args.max_samples,
                    "full_max_samples": args.full_max_samples,
                    "time_budget_s": args.time_budget,
                    "train_batch": args.train_batch,
                    "params": json.loads(args.params) if args.params else {},
                    "data_dir": args.data_dir,
                    **({"folds": folds} if (folds := _cell_folds(args, dataset)) else {}),
                    **(
                        {"limit_per_class": getattr(args, "limit_per_class", None)}
                        if getattr(args, "limit_per_class", None)
                        else {}
                    ),
                }
            )
    # long cells first so the workers finish together
    specs.sort(key=lambda s: (s["method"] != "full", s["method"] not in ITERATIVE, -(s["ipc"] or 0)))
    return specs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="fsdd,kws10,esc10", help=f"comma list of {', '.join(DATASETS)}")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--ipcs", default=None, help="samples per class (default: the dataset's grid)")
    parser.add_argument("--seeds", default="0,1,2", help="training seeds per cell")
    parser.add_argument("--distill-seed", type=int, default=0)
    parser.add_argument("--no-full", action="store_true", help="skip the full-training-data cells")
    parser.add_argument(
        "--max-samples", type=positive_int, default=DEFAULT_MAX_SAMPLES, help="training budget (samples seen) per model"
    )
    parser.add_argument(
        "--train-batch",
        type=positive_int,
        default=None,
        help="training batch of the evaluation network (default: the whole coreset up to "
        f"{FULL_BATCH_UP_TO} clips, else {LARGE_SET_BATCH})",
    )
    parser.add_argument("--full-max-samples", type=positive_int, default=60000, help="training budget for full data")
    parser.add_argument(
        "--time-budget",
        type=float,
        default=None,
        help="time budget per distillation (s); default: each method's own (about 280 s)",
    )
    parser.add_argument(
        "--params", default=None, help='per-method parameters as JSON, e.g. \'{"mtt": {"syn_steps": 20}}\''
    )
    parser.add_argument("--jobs", type=int, default=2, help="cells run at once (each uses one thread)")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results JSON (default bench/results/distill.json, or distill-quick.json with --quick)",
    )
    parser.add_argument("--force", action="store_true", help="re-run cells already in the results file")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="one size per dataset (10/class, ESC-10 5/class), "
        "one seed, 40-s distillation budget, 6000 training samples: about 20 minutes on 2 cores",
    )
    parser.add_argument("--report-only", action="store_true", help="rewrite the table and plot from the JSON")
    parser.add_argument(
        "--folds",
        default=None,
        help="all: run datasets with an official k-fold protocol (esc10) "
        "under it, every cell once per fold, mean ± std over folds; 1,2: those folds only (smoke runs)",
    )
    parser.add_argument(
        "--limit-per-class",
        type=positive_int,
        default=None,
        help="smoke runs only: at most N training/test clips per class",
    )
    parser.add_argument("--cell", help=argparse.SUPPRESS)  # internal: run one cell spec (JSON) and print JSON
    args = parser.parse_args(argv)

    if args.cell:
        print("CELL-RESULT " + json.dumps(run_cell(json.loads(args.cell)), default=str), flush=True)
        return 0

    if args.quick:
        args.seeds, args.time_budget = "0", args.time_budget or 40.0
        args.max_samples, args.full_max_samples = 6000, 12000
    out: Path = args.out or RESULTS_DIR / ("distill-quick.json" if args.quick else "distill.json")

    console = Console(stderr=True)
    results = json.loads(out.read_text()) if out.exists() else {}
    cells: dict[str, dict] = results.get("cells", {})
    results["machine"] = machine_info()
    specs = [] if args.report_only else build_specs(args, cells)
    console.print(f"{len(specs)} cells to run ({len(cells)} already in {out})")

    def launch(spec: dict) -> dict:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        started = time.time()
        proc = subprocess.run(
            [sys.executable, "-m", "bench", "--cell", json.dumps(spec)], capture_output=True, text=True, env=env
        )
        line = next((out for out in proc.stdout.splitlines() if out.startswith("CELL-RESULT ")), None)
        if proc.returncode != 0 or line is None:
            raise RuntimeError(f"cell {spec['key']} failed:\n{proc.stderr[-3000:]}")
        result = json.loads(line[len("CELL-RESULT ") :])
        result["wall_s"] = round(time.time() - started, 1)
        result["settings"] = {
            k: spec[k]
            for k in ("seeds", "max_samples", "full_max_samples", "train_batch", "time_budget_s", "params", "seed")
        }
        return result

    failures = 0
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("distillation benchmark", total=len(specs))
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            futures = {pool.submit(launch, spec): spec for spec in specs}
            for future in as_completed(futures):
                spec = futures[future]
                try:
                    result = future.result()
                except RuntimeError as exc:
                    failures += 1
                    console.print(f"[red]{exc}[/]")
                else:
                    results = merge_cell(out, spec["key"], result, results["machine"])
                    cells = results["cells"]
                    progress.console.print(
                        f"{spec['key']}: {result['accuracy_mean']:.1f} ± {result['accuracy_std']:.1f} % "
                        f"(distill {result['distill_s']:.0f} s, {result['peak_rss_mb']:.0f} MB)"
                    )
                progress.advance(task)
    if cells:
        atomic_write_text(out.with_suffix(".md"), markdown(cells, results["machine"]))
        plot(cells, out.with_suffix(".png"))
        written = ([] if args.report_only else [str(out)]) + [str(out.with_suffix(".md")), str(out.with_suffix(".png"))]
        console.print("wrote " + ", ".join(written))
    return 1 if failures else 0
