"""Cross-architecture benchmark (DDFAD Table II): distil with A, train B, for A, B in the model zoo.

Full setting: DM at 10 clips per class, one distillation per architecture A (ConvNet, ResNet-18,
VGG11, DS-CNN small; 280-s budget each), every architecture B trained on every coreset over
seeds 0, 1, 2 (16 000 clips seen per training, the benchmark's evaluation budget), plus random
real clips as the reference row. The work happens in a resumable run folder
(``bench/results/cross_arch_<dataset>/``, the same ``RunDir`` as ``kit xarch``), so an
interrupted benchmark continues; at the end ``bench/results/cross_arch.{json,md,png}`` are
written with the machine information.

Usage: ``python -m bench.cross_arch [--dataset fsdd|kws10] [--method dm] [--ipc 10] [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from deploy.runtime.artifact import atomic_write_bytes, atomic_write_text
from kit.experiments import RunDir, load_results
from kit.experiments.cross_arch import CrossArchSettings, loader_options, run_config, run_cross_arch
from kit.pipeline import load_training_set
from kit.report.tables import markdown_tables

from .distill import DEFAULT_DATA_DIR, RESULTS_DIR, results_stem
from .machine import machine_info

DATASETS: dict[str, dict[str, Any]] = {
    "fsdd": {"dataset": "fsdd", "split": "official", "title": "FSDD, official split"},
    "kws10": {"dataset": "speech_commands", "task": "kws10", "title": "Speech Commands kws10"},
}


def markdown(results: dict[str, Any], title: str, machine: dict[str, Any], config: dict[str, Any]) -> str:
    """The matrix and the network table as Markdown, with the machine and the settings."""
    lines = [
        f"# Cross-architecture transfer: {title}",
        "",
        results.get("summary", ""),
        "",
        markdown_tables(results["tables"]),
        "",
    ]
    lines += [
        "Headline: `" + json.dumps(results.get("headline", {})) + "`",
        "",
        f"Machine: {machine.get('cpu')}, {machine.get('cores')} cores, torch {machine.get('torch')}; "
        f"settings: `{json.dumps(config)}`",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cross_arch", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="fsdd")
    parser.add_argument("--method", default="dm", help="distiller that takes a network: dm, dc, dsa, mtt")
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--archs", default="convnet,resnet18,vgg11,dscnn")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--time-budget", type=float, default=280.0, help="seconds per distillation")
    parser.add_argument("--max-samples", type=int, default=16_000, help="clips seen per evaluation training")
    parser.add_argument("--train-batch", type=int, default=256, help="batch size of the evaluation trainings")
    parser.add_argument("--quick", action="store_true", help="the tests' small setting (2/class, 30 clips per class)")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--out-dir", default=str(RESULTS_DIR))
    parser.add_argument(
        "--run-dir",
        default=None,
        help="resumable run folder (default runs/bench-cross_arch-<dataset>; "
        "a kit xarch folder with the same settings is resumed as it is)",
    )
    args = parser.parse_args(argv)

    spec = DATASETS[args.dataset]
    seeds = tuple(int(s) for s in args.seeds.split(",") if s.strip())
    archs = tuple(a.strip() for a in args.archs.split(",") if a.strip())
    if args.quick:
        settings = CrossArchSettings.quick(method=args.method, archs=archs, seed=args.seed)
        limit = 30
    else:
        settings = CrossArchSettings(
            method=args.method,
            ipc=args.ipc,
            archs=archs,
            seed=args.seed,
            seeds=seeds,
            distill_params={"time_budget_s": args.time_budget},
            train={"max_samples": args.max_samples, "batch_size": args.train_batch},
        )
        limit = None
    settings.check()
    out_dir = Path(args.out_dir)
    run_path = (
        Path(args.run_dir)
        if args.run_dir
        else Path("runs") / f"bench-cross_arch-{args.dataset}{'-quick' if args.quick else ''}"
    )
    data = loader_options(
        spec["dataset"],
        args.data_dir,
        split=spec.get("split", "official"),
        task=spec.get("task", "kws10"),
        limit_per_class=limit,
    )
    config = run_config(settings, data, args.quick)
    run = RunDir(run_path, "cross_arch", config, title=f"Cross-architecture transfer, {spec['title']}")
    started = time.time()
    fs, loader = load_training_set(
        spec["dataset"], args.data_dir, split=data["split"], task=data["task"], limit_per_class=limit, progress=True
    )
    result = run_cross_arch(fs, loader, settings, run, progress=True)
    results = load_results(run_path)
    machine = machine_info()
    stem = out_dir / results_stem("cross_arch", args.dataset)
    payload = {
        "benchmark": "cross_arch",
        "dataset": args.dataset,
        "title": spec["title"],
        "config": config,
        "machine": machine,
        "wall_s": round(time.time() - started, 1),
        "run_dir": str(run_path),
        "matrix": result["matrix"],
        "distill": result["distill"],
        "headline": result["headline"],
        "tables": results["tables"],
        "summary": results["summary"],
    }
    atomic_write_text(stem.with_suffix(".json"), json.dumps(payload, indent=1, default=str) + "\n")
    atomic_write_text(stem.with_suffix(".md"), markdown(results, spec["title"], machine, config))
    atomic_write_bytes(stem.with_suffix(".png"), (run_path / results["figures"][0]["file"]).read_bytes())
    print(markdown(results, spec["title"], machine, config))


if __name__ == "__main__":
    main()
