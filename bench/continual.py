"""Continual-learning benchmark (DDFAD §5.1): rehearsal memory filled by distillation vs herding vs random.

``python -m bench.continual`` writes ``bench/results/continual.{json,md,png}``; the run itself
(cells, checkpoints, config) lives under ``--work`` and resumes there when interrupted.

Full setting: FSDD official split, the 10 digits in 5 tasks of 2 (class order seed 0), memory 20
per old class, ConvNet width 128 continued from task to task (one 10-way head, unseen classes
masked), 8 000 clips seen per task with class-balanced batches, DM with 200 steps per task for
``distill``; seeds 0, 1, 2; joint training and memory-less fine-tuning as bounds. ``--quick`` is
the test setting (30 clips per class, width 16, memory 10). The experiment is
``kit.experiments.continual`` (the same code as ``kit cl``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from bench.machine import command_line, machine_info
from bench.paths import DEFAULT_DATA_DIR, RESULTS_DIR
from deploy.runtime.artifact import atomic_write_bytes, atomic_write_text
from kit.options import parse_seeds
from kit.report.tables import markdown_tables

DEFAULT_WORK = Path(__file__).resolve().parents[1] / "runs" / "bench_continual"


def markdown(run: Any, machine: dict[str, Any], command: str, png_name: str) -> str:
    """The run's tables as Markdown, with its summary, the command and the machine."""
    lines = [f"# {run.title}", "", run.summary, "", markdown_tables(run.tables), ""]
    for figure in run.figures[:1]:
        lines += [f"![{figure['caption']}]({png_name})", ""]
    lines += [
        f"Command: `{command}`",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gb']} GB, torch {machine['torch']}, "
        f"load average {machine.get('load_average')} at the end.",
        "",
    ]
    return "\n".join(lines)


def report_run(run: Any, args: argparse.Namespace, started: float) -> int:
    """Export a finished run (``--name``, ``--results-dir``) with its wall time and print where and what."""
    for path in export_run(run, args.name, args.results_dir, {"wall_s": round(time.time() - started, 1)}):
        print(f"wrote {path}")
    print(run.summary)
    return 0


def export_run(run: Any, name: str, results_dir: Path, extra: dict[str, Any] | None = None) -> list[Path]:
    """Copy an experiment run folder's results to ``results_dir/name.{json,md,png}`` with the machine info."""
    from kit.experiments.rundir import load_results, to_jsonable  # lazy: pulls in soundfile

    machine = machine_info()
    machine["load_average"] = [round(v, 2) for v in os.getloadavg()]
    module = f"bench.{Path(sys.argv[0]).stem}" if sys.argv and sys.argv[0].endswith(".py") else f"bench.{name}"
    command = command_line(module)
    results_dir.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": name,
        "command": command,
        "machine": machine,
        "run_dir": str(run.path),
        "config": json.loads((run.path / "config.json").read_text())["config"],
        "results": load_results(run.path),
        "cells": run.cells,
        **(extra or {}),
    }
    written = [results_dir / f"{name}.json", results_dir / f"{name}.md"]
    atomic_write_text(written[0], json.dumps(to_jsonable(payload), indent=1) + "\n")
    atomic_write_text(written[1], markdown(run, machine, command, f"{name}.png"))
    if run.figures:
        written.append(results_dir / f"{name}.png")
        atomic_write_bytes(written[-1], (run.path / run.figures[0]["file"]).read_bytes())
    return written


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.continual", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="fsdd")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="run folder (resumable)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--name", default="continual", help="results file stem")
    parser.add_argument("--fills", default="distill,herding,random")
    parser.add_argument("--no-bounds", action="store_true")
    parser.add_argument("--memory", type=int, default=20)
    parser.add_argument("--task-size", type=int, default=2)
    parser.add_argument("--distill-method", default="dm")
    parser.add_argument("--distill-steps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0, help="class order")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--max-samples", type=int, default=8000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="the test setting (small, under a minute)")
    return parser


def main(argv: list[str] | None = None) -> int:
    from kit.experiments.continual import ContinualSettings, quick_settings, run_continual  # lazy: pulls in soundfile

    args = build_parser().parse_args(argv)
    options = dict(
        fills=tuple(f for f in args.fills.split(",") if f),
        bounds=not args.no_bounds,
        task_size=args.task_size,
        distill_method=args.distill_method,
        order_seed=args.seed,
        seeds=tuple(parse_seeds(args.seeds)),
    )
    if args.quick:
        settings = quick_settings(**options)
    else:
        settings = ContinualSettings(
            memory=args.memory,
            distill_steps=args.distill_steps,
            width=args.width,
            max_samples=args.max_samples,
            batch_size=args.batch_size,
            **options,
        )
    started = time.time()
    return report_run(run_continual(args.dataset, args.work, settings, data_dir=args.data_dir), args, started)


if __name__ == "__main__":
    sys.exit(main())
