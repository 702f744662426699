"""Noise robustness benchmark (DDFAD Fig. 7): ``python -m bench.noise_robustness``.

Writes bench/results/noise_robustness.{json,md,png}. Full setting: the FSDD DM 10-per-class
coreset of ``bench.render`` (shared work folder, made once), rendered with 64 Griffin-Lim
iterations, vs 10 random real clips per class; SNRs clean, 30, 20, 10, 5, 0 dB on training and
test audio; 3 training seeds, 16 000 clips per run, the whole official test split. Resumable cell
by cell (``--work``/noise is a ``kit noise`` run folder). ``--quick`` is the tests' setting.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from bench.distill import results_stem
from bench.render import add_shared_options, count_cells, prepared_coreset, shared_changes, work_folder, write_results
from deploy.runtime.coreset import Coreset
from kit.experiments.noise_robustness import NoiseSettings, parse_snrs, run_noise_robustness


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.noise_robustness", description=__doc__.split("\n\n")[0])
    add_shared_options(parser, subject="use")
    parser.add_argument("--snrs", default="clean,30,20,10,5,0", help="SNRs in dB ('clean' = no noise)")
    parser.add_argument("--max-samples", type=int, default=None, help="clips seen per training run (default 16000)")
    parser.add_argument("--test-limit", type=int, default=None, help="test clips per class (default all; quick 10)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started, load_before = time.time(), os.getloadavg()
    work = work_folder(args)
    coreset_path = prepared_coreset(args, work)
    changes: dict[str, Any] = {"snrs": tuple(parse_snrs(args.snrs)), **shared_changes(args)}
    if args.max_samples is not None:
        changes["max_samples"] = args.max_samples
    if args.test_limit is not None:
        changes["test_limit"] = args.test_limit
    settings = NoiseSettings.quick(**changes) if args.quick else NoiseSettings(**changes)
    cells_before = 0 if args.overwrite else count_cells(work / "noise")
    run = run_noise_robustness(
        Coreset.load(coreset_path),
        work / "noise",
        settings,
        coreset_path=str(coreset_path),
        data_dir=args.data_dir,
        overwrite=args.overwrite,
    )
    stem = results_stem("noise_robustness", args.dataset, args.quick)
    path = write_results(
        run.path, stem, args.results_dir, args, started, load_before, cells_before, module="noise_robustness"
    )
    print(json.dumps(run.headline, indent=1))
    print(f"wrote {path} and .md/.png", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
