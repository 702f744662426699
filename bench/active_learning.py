"""Active-learning baselines vs distilled coresets, full setting: ``python -m bench.active_learning``.

Runs ``kit.experiments.active_learning`` (the code behind ``kit al``) on a whole dataset:
random / max entropy / variation ratios / BALD acquisition at 20, 30, 40, 60 % of the training
pool and at the coreset sizes 1, 10, 50 per class, 3 seeds, the evaluation ConvNet of
``bench/distill.py`` (width 128, 16 000 training samples per model, full data 60 000). The
distilled-coreset rows are read from ``bench/results/distill.json`` (same ConvNet, same training
budget, same seeds), plus any ``--coreset`` files, which are re-scored here.

Writes ``bench/results/active_learning.{json,md,png}`` (with the machine info); the resumable run
folder (``--run-dir``, default ``runs/bench-active-learning-<dataset>``) keeps every finished cell,
so an interrupted benchmark continues where it stopped. Expect hours on 2 shared cores; the
options below shrink it (e.g. ``--budgets 20,40 --tiny 10 --seeds 0``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from bench.distill import DATASETS, DEFAULT_DATA_DIR, RESULTS_DIR, results_stem
from bench.machine import machine_info
from deploy.runtime.artifact import atomic_write_text
from kit.experiments import RunDir, to_jsonable
from kit.experiments.active_learning import (
    COLUMNS,
    EXPERIMENT,
    TITLE,
    ALSettings,
    experiment_config,
    load_coresets,
    parse_methods,
    plot,
    run_active_learning,
    table_rows,
)
from kit.options import parse_floats, parse_ints, parse_seeds
from kit.pipeline import load_training_set
from kit.report.tables import markdown_table

#: benchmark dataset name -> the distill-benchmark dataset whose coreset cells become extra rows
DATASET_CHOICES = ("fsdd", "kws10")


def distill_rows(dataset: str, n_pool: int, n_classes: int, distill_json: Path) -> list[dict[str, Any]]:
    """Coreset cells of the distillation benchmark for ``dataset`` as table rows (same protocol)."""
    if not distill_json.exists():
        return []
    cells = json.loads(distill_json.read_text()).get("cells", {})
    rows = []
    for key, cell in sorted(cells.items()):
        name, method, ipc = key.split("/")
        if name != dataset or method == "full" or "accuracy_mean" not in cell:
            continue
        n = int(ipc) * n_classes
        rows.append(
            {
                "label": f"distilled ({method}, {ipc}/class)",
                "n": n,
                "percent": 100.0 * n / n_pool,
                "mean": cell["accuracy_mean"],
                "std": cell["accuracy_std"],
                "source": f"{distill_json.name}:{key}",
            }
        )
    return rows


def plotted_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For a readable legend: per coreset size the best distillation cell and the random selection."""
    keep = []
    for n in sorted({r["n"] for r in rows}):
        same = [r for r in rows if r["n"] == n]
        best = max(same, key=lambda r: r["mean"])
        keep.append(best)
        keep += [r for r in same if r["label"].startswith("distilled (random,") and r is not best]
    return keep


def markdown(results: dict[str, Any], extra: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    rows = table_rows(results)
    full = rows.pop()
    rows += [
        [
            r["label"] + " †",
            f"{r['percent']:.2f}" if r["percent"] < 1 else f"{r['percent']:.1f}",
            r["n"],
            f"{r['mean']:.1f} ± {r['std']:.1f}",
        ]
        for r in sorted(extra, key=lambda r: (r["n"], -r["mean"]))
    ]
    rows.append(full)
    machine = meta["machine"]
    settings = meta["settings"]
    lines = [
        f"# Active learning vs distilled coresets: {meta['title']}",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gb']} GB, torch {machine['torch']}; "
        f"load average at start {meta['load_start']}, at end {meta['load_end']}; wall {meta['wall_s']:.0f} s.",
        "",
        f"ConvNet test accuracy in %, mean ± std over seeds {settings['seeds']}; {results['n_pool']} training clips. "
        f"Acquisition: class-balanced seed set of {settings['initial']}/class, "
        f"labelled set x{settings['growth']:g} per round, "
        f"MC dropout p={settings['dropout']} with T={settings['mc_passes']} passes, "
        "acquisition model retrained per round "
        f"({settings['acquisition_train']['max_samples']} training samples). Every subset, "
        "coreset and the full data is "
        f"scored with the same ConvNet ({settings['eval_train']['max_samples']} training samples; full data "
        f"{settings['full_max_samples']}). † rows come from bench/results/distill.json (same ConvNet, 16 000 training "
        "samples, seeds 0,1,2, the whole training split; its full-data row trained on 60 000 samples).",
        "",
        markdown_table(COLUMNS, rows),
    ]
    seconds = results["acquisition_seconds"]
    lines += [
        "",
        "Acquisition time per run (s, mean over seeds): " + ", ".join(f"{m} {v:.0f}" for m, v in seconds.items()),
        "",
    ]
    return "\n".join(lines)


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.active_learning", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=DATASET_CHOICES, default="fsdd")
    parser.add_argument("--methods", default="random,entropy,variation-ratios,bald")
    parser.add_argument("--budgets", default="20,30,40,60", help="percent of the training pool (comma list)")
    parser.add_argument("--tiny", default="1,10,50", help="samples per class ('none' for none)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-samples", type=int, default=16000, help="training samples per scored model")
    parser.add_argument("--acquisition-max-samples", type=int, default=4000, help="training samples per round")
    parser.add_argument("--full-max-samples", type=int, default=60000)
    parser.add_argument("--coreset", action="append", default=[], help="coreset file to re-score as a row")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--run-dir", type=Path, default=None)
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results JSON (default bench/results/active_learning.json, active_learning_<dataset>.json "
        "for other datasets)",
    )
    args = parser.parse_args(argv)

    spec = DATASETS[args.dataset]
    settings = ALSettings(
        methods=parse_methods(args.methods),
        budgets=parse_floats(args.budgets, "--budgets"),
        tiny=parse_ints(args.tiny, "--tiny", allow_none=True),
        seeds=tuple(parse_seeds(args.seeds)),
        seed=args.seed,
        full_max_samples=args.full_max_samples,
    )
    settings.eval_train = settings.eval_train.with_(max_samples=args.max_samples)
    settings.acquisition_train = settings.acquisition_train.with_(max_samples=args.acquisition_max_samples)
    started, load_start = time.time(), _load()
    fs, loader = load_training_set(
        spec["dataset"],
        args.data_dir,
        split=spec.get("split", "official"),
        task=spec.get("task", "kws10"),
        test_fold=spec.get("test_fold", 5),
    )
    coresets = load_coresets([Path(c) for c in args.coreset], fs)
    run_dir = args.run_dir or Path("runs") / f"bench-active-learning-{args.dataset}"
    run = RunDir(run_dir, EXPERIMENT, experiment_config(settings, loader, coresets), title=TITLE)
    results = run_active_learning(run, fs, settings, coresets)
    extra = distill_rows(args.dataset, results["n_pool"], len(fs.classes), RESULTS_DIR / "distill.json")
    meta = {
        "title": spec["title"],
        "machine": machine_info(),
        "settings": settings.to_dict(),
        "dataset": loader,
        "load_start": load_start,
        "load_end": _load(),
        "wall_s": time.time() - started,
        "run_dir": str(run_dir),
        "command": "python -m bench.active_learning " + " ".join(argv or []),
    }
    out: Path = args.out or RESULTS_DIR / f"{results_stem('active_learning', args.dataset)}.json"
    out.parent.mkdir(parents=True, exist_ok=True)

    atomic_write_text(
        out, json.dumps(to_jsonable({**meta, "results": results, "distill_rows": extra}), indent=1) + "\n"
    )
    atomic_write_text(out.with_suffix(".md"), markdown(results, extra, meta))
    # the figure of the run folder, with the distillation benchmark's coresets added as markers
    plot(
        {**results, "coresets": results["coresets"] + plotted_rows(extra)},
        out.with_suffix(".png"),
        f"Active learning vs distilled coresets ({spec['title']})",
    )
    print(out.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
