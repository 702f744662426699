"""Feature-ablation benchmark (DDFAD Fig. 5): FD-MFCC vs MFCC vs LPCC vs log-mel, distilled at 1/10/50.

``python -m bench.feature_ablation`` writes ``bench/results/feature_ablation.{json,md,png}``; the
run itself (cells, coresets, config) lives under ``--work`` and resumes there when interrupted.

Full setting: FSDD official split, DM with its measured defaults (the distillation benchmark's
protocol, 280-s budget per coreset), 1 / 10 / 50 samples per class, each coreset scored by the
width-128 ConvNet over training seeds 0, 1, 2 (``kit.pipeline.score_coreset``), random real clips
at the same budget as the reference. ``--quick`` is the test setting. The experiment is
``kit.experiments.feature_ablation`` (the same code as ``kit ablate``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bench.continual import DEFAULT_DATA_DIR, RESULTS_DIR, report_run
from kit.options import parse_ints, parse_seeds

DEFAULT_WORK = Path(__file__).resolve().parents[1] / "runs" / "bench_feature_ablation"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.feature_ablation", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="fsdd")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="run folder (resumable)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--name", default="feature_ablation", help="results file stem")
    parser.add_argument("--features", default="fd_mfcc,mfcc,lpcc,logmel")
    parser.add_argument("--method", default="dm")
    parser.add_argument("--ipcs", default="1,10,50")
    parser.add_argument("--distill-steps", type=int, default=None, help="default: the method's own steps and budget")
    parser.add_argument("--seed", type=int, default=0, help="distillation seed")
    parser.add_argument("--train-seeds", default="0,1,2")
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--max-samples", type=int, default=16_000)
    parser.add_argument("--limit-per-class", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="the test setting (small)")
    return parser


def main(argv: list[str] | None = None) -> int:
    from kit.experiments.feature_ablation import (
        AblationSettings,
        quick_settings,
        run_feature_ablation,
    )  # lazy: pulls in soundfile

    args = build_parser().parse_args(argv)
    options = dict(
        features=tuple(f for f in args.features.split(",") if f),
        method=args.method,
        ipcs=parse_ints(args.ipcs, "--ipcs"),
        seed=args.seed,
    )
    if args.quick:
        settings = quick_settings(**options)
    else:
        settings = AblationSettings(
            distill_steps=args.distill_steps,
            train_seeds=tuple(parse_seeds(args.train_seeds, "--train-seeds")),
            width=args.width,
            max_samples=args.max_samples,
            limit_per_class=args.limit_per_class,
            **options,
        )
    started = time.time()
    return report_run(run_feature_ablation(args.dataset, args.work, settings, data_dir=args.data_dir), args, started)


if __name__ == "__main__":
    sys.exit(main())
