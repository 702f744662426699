"""Griffin-Lim audio benchmark: ``python -m bench.render`` -> bench/results/render.{json,md,png}.

Full setting: an FSDD DM coreset of 10 clips per class (60-s distillation budget, made once and
kept under ``--work``, or ``--coreset FILE``), rendered with 64 Griffin-Lim iterations; round trip
of the re-extracted features and ConvNet accuracy (3 seeds, 16 000 clips per run, the whole
official test split) on the coreset vs on features re-extracted from the rendered audio. The run
folder (``--work``/render) is a ``kit render`` run folder: resumable cell by cell, readable by
``kit report``. ``--quick`` is the tests' setting. The JSON records the machine and its load.

The helpers here (coreset preparation, results files) are shared with ``bench.noise_robustness``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from bench.distill import DATASETS, results_stem
from bench.machine import command_line, machine_info
from bench.paths import DEFAULT_DATA_DIR, RESULTS_DIR
from deploy.runtime.artifact import atomic_write_bytes, atomic_write_text
from deploy.runtime.coreset import Coreset
from kit.experiments.render_audio import RenderSettings, run_render
from kit.experiments.rundir import load_results
from kit.options import parse_seeds
from kit.pipeline import distill_coreset, load_training_set
from kit.report.tables import markdown_tables

DEFAULT_WORK = Path(__file__).resolve().parents[1] / "runs" / "bench_render"
DATASET_CHOICES = ("fsdd", "kws10")


def ensure_coreset(
    path: Path,
    *,
    data_dir: str,
    method: str,
    ipc: int,
    budget_s: float,
    seed: int,
    limit_per_class: int | None = None,
    dataset: str = "fsdd",
) -> Path:
    """The benchmark's coreset of ``dataset`` (a bench.distill dataset key): made once with the kit's
    pipeline (as ``kit distill``), then reused."""
    if path.exists():
        coreset = Coreset.load(path)
        if coreset.method == method and coreset.ipc == ipc and coreset.seed == seed:
            return path
    spec = DATASETS[dataset]
    fs, loader = load_training_set(
        spec["dataset"],
        data_dir,
        split=spec.get("split", "official"),
        task=spec.get("task", "kws10"),
        test_fold=spec.get("test_fold", 5),
        limit_per_class=limit_per_class,
        progress=True,
    )
    params: dict[str, Any] = (
        {"time_budget_s": budget_s, "progress": True} if method in ("dm", "dc", "dsa", "rfad", "mtt") else {}
    )
    coreset, _, summary = distill_coreset(fs, loader, method, ipc, seed=seed, **params)
    path.parent.mkdir(parents=True, exist_ok=True)
    coreset.save(path)
    print(f"distilled {path} ({method}, {ipc}/class) in {summary.get('fit_time_s')} s", file=sys.stderr)
    return path


def add_shared_options(parser: argparse.ArgumentParser, *, subject: str) -> None:
    """The options bench.render and bench.noise_robustness share: the coreset (given or made once
    per dataset), the run folder, results and seeds. ``subject`` says what the coreset is used for."""
    parser.add_argument("--quick", action="store_true", help="the tests' small setting (seconds to a minute)")
    parser.add_argument(
        "--coreset", type=Path, default=None, help=f"{subject} this coreset instead of the benchmark's own"
    )
    parser.add_argument("--method", default="dm", help="method of the benchmark coreset (default dm)")
    parser.add_argument("--ipc", type=int, default=10, help="clips per class of the benchmark coreset")
    parser.add_argument("--budget", type=float, default=60.0, help="distillation time budget, s")
    parser.add_argument("--iterations", type=int, default=None, help="Griffin-Lim iterations (default 64, quick 16)")
    parser.add_argument("--seeds", default=None, help="training seeds (default 0,1,2; quick 0)")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    parser.add_argument(
        "--dataset",
        choices=DATASET_CHOICES,
        default="fsdd",
        help="benchmark dataset of the made coreset (fsdd official split or Speech Commands kws10)",
    )
    parser.add_argument(
        "--work",
        type=Path,
        default=None,
        help="coreset and run folder (default runs/bench_render, runs/bench_render_<dataset> "
        "for other datasets; shared by bench.render and bench.noise_robustness)",
    )
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="discard a previous run folder with other settings")


def shared_changes(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the shared options change (``--seed``, and ``--iterations``/``--seeds`` when given)."""
    changes: dict[str, Any] = {"seed": args.seed}
    if args.iterations is not None:
        changes["n_iter"] = args.iterations
    if args.seeds is not None:
        changes["train_seeds"] = tuple(parse_seeds(args.seeds))
    return changes


def work_folder(args: argparse.Namespace) -> Path:
    """The run folder: ``--work`` or the dataset's default, with ``-quick`` for the tests' setting."""
    work = args.work or (
        DEFAULT_WORK if args.dataset == "fsdd" else DEFAULT_WORK.with_name(f"{DEFAULT_WORK.name}_{args.dataset}")
    )
    return work.with_name(work.name + "-quick") if args.quick else work


def prepared_coreset(args: argparse.Namespace, work: Path) -> Path:
    """``--coreset`` or the benchmark's own coreset of ``--dataset`` (made once under ``work``)."""
    if args.coreset:
        return args.coreset
    return ensure_coreset(
        work / f"{args.dataset}_{args.method}{args.ipc}.kit",
        data_dir=args.data_dir,
        method=args.method,
        ipc=args.ipc,
        budget_s=args.budget,
        seed=args.seed,
        dataset=args.dataset,
    )


def markdown(results: dict[str, Any], png_name: str | None, meta: dict[str, Any]) -> str:
    """A run folder's tables as Markdown, with the machine line and the command that made them."""
    lines = [f"# {results['title']}", "", results.get("summary", ""), "", markdown_tables(results["tables"]), ""]
    if png_name:
        lines += [f"![{results['figures'][0]['caption']}]({png_name})", ""]
    machine = meta["machine"]
    resumed = (
        f" (resumed: {meta['cells_resumed']} of {meta['n_cells']} cells done before)" if meta["cells_resumed"] else ""
    )
    lines += [
        f"Machine: {machine['cpu']}, {machine['cores']} cores, load average {meta['load_before']} before / "
        f"{meta['load_after']} after; wall {meta['wall_s']} s{resumed}; ConvNet training "
        f"{meta['train_seconds_total']} s over all cells; seed {meta['seed']}.",
        f"Command: `{meta['command']}`",
        "",
    ]
    return "\n".join(lines)


def count_cells(run_path: Path) -> int:
    """Finished cells already in a run folder (recorded so a resumed run's wall time is not misread)."""
    try:
        return len(json.loads((run_path / "cells.json").read_text()))
    except (OSError, json.JSONDecodeError):
        return 0


def write_results(
    run_path: Path,
    stem: str,
    results_dir: Path,
    args: argparse.Namespace,
    started: float,
    load_before: tuple[float, ...],
    cells_before: int = 0,
    module: str = "render",
) -> Path:
    """bench/results/<stem>.json (run results + config + machine), .md and .png (the run's first figure)."""
    results = load_results(run_path)
    config = json.loads((run_path / "config.json").read_text())
    cells = json.loads((run_path / "cells.json").read_text()) if (run_path / "cells.json").exists() else {}
    meta = {
        "machine": machine_info(),
        "load_before": [round(v, 2) for v in load_before],
        "load_after": [round(v, 2) for v in os.getloadavg()],
        "wall_s": round(time.time() - started, 1),
        # wall_s covers this invocation only; a resumed run reuses cells, so the training time of every
        # cell (whenever it ran) is summed here too
        "cells_resumed": cells_before,
        "n_cells": len(cells),
        "train_seconds_total": round(
            sum(c.get("train_seconds", 0.0) for c in cells.values() if isinstance(c, dict)), 1
        ),
        "seed": args.seed,
        "command": command_line(f"bench.{module}"),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "run_dir": str(run_path),
    }
    results_dir.mkdir(parents=True, exist_ok=True)
    png_name = None
    if results["figures"]:
        png_name = f"{stem}.png"
        atomic_write_bytes(results_dir / png_name, (run_path / results["figures"][0]["file"]).read_bytes())
    atomic_write_text(
        results_dir / f"{stem}.json",
        json.dumps({"results": results, "config": config["config"], **meta}, indent=1, default=str) + "\n",
    )
    atomic_write_text(results_dir / f"{stem}.md", markdown(results, png_name, meta))
    return results_dir / f"{stem}.json"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.render", description=__doc__.split("\n\n")[0])
    add_shared_options(parser, subject="render")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started, load_before = time.time(), os.getloadavg()
    work = work_folder(args)
    coreset_path = prepared_coreset(args, work)
    settings = RenderSettings.quick() if args.quick else RenderSettings()
    settings = RenderSettings(**{**settings.__dict__, **shared_changes(args), "evaluate": True})
    cells_before = 0 if args.overwrite else count_cells(work / "render")
    run = run_render(
        Coreset.load(coreset_path),
        work / "render",
        settings,
        coreset_path=str(coreset_path),
        data_dir=args.data_dir,
        overwrite=args.overwrite,
    )
    stem = results_stem("render", args.dataset, args.quick)
    path = write_results(run.path, stem, args.results_dir, args, started, load_before, cells_before)
    print(json.dumps(run.headline, indent=1))
    print(f"wrote {path} and .md/.png", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
