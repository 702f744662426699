"""NAS-proxy benchmark (DDFAD §5.2): rank correlation of cheap proxies with full-data training.

``python -m bench.nas_proxy`` runs the full setting on FSDD (official split): the 72-variant
ConvNet grid (depth 2-4 x width 32/64 x instance/batch/no norm x avg/max pooling x ReLU/leaky
ReLU), proxies = DM-distilled / random / herding sets of 20 clips per class (2 000 clips seen per
training) and the full training data stopped early (2 000 clips seen), ground truth = the full
data with 30 000 clips seen (~11 epochs). That is 72 x (4 x 2 000 + 30 000) = 2.7 M clips seen:
about 1.5 h on one free core (~500 clips/s for width 32-64), longer on shared cores.
``--grid medium --proxy-samples 1500 --early-samples 1500 --truth-samples 8000`` is the 48-variant
setting measured on shared cores (~30 minutes with a 280-s DM distillation). Every cell is resumable
(the run folder, ``--run-dir``), and
the results go to ``bench/results/nas_proxy.{json,md,png}`` (the setting used is in the JSON and
the Markdown, with the machine).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

from rich.console import Console

from bench.machine import command_line, machine_info
from bench.paths import DEFAULT_DATA_DIR, RESULTS_DIR
from deploy.runtime.artifact import atomic_write_text
from kit.report.tables import markdown_table


def dataset_label(settings: dict) -> str:
    """``fsdd (official split)``; Speech Commands runs the kws10 task on its speaker-disjoint lists."""
    if settings["dataset"] == "speech_commands":
        return f"speech_commands {settings.get('task', 'kws10')} (speaker-disjoint official lists)"
    return f"{settings['dataset']} ({settings['split']} split)"


def markdown(result: dict, settings: dict, machine: dict, load: str) -> str:
    """The rank-agreement table plus the setting and machine it was measured with."""
    lines = [
        "# NAS proxy (DDFAD §5.2)\n",
        f"Dataset {dataset_label(settings)}, {len(result['variants'])} ConvNet variants "
        f"({settings['grid']} grid), coreset proxies of {settings['ipc']} clips per class "
        f"(distilled: {settings['distill']}), {settings['proxy_samples']} clips seen per proxy training, "
        f"{settings['early_samples']} for the early-stopped full data (batch {settings['batch_size']} for both), "
        f"{settings['truth_samples']} for the ground truth (batch {settings['truth_batch_size']}); one training seed "
        f"({settings['seed']}) per cell.\n",
        f"Machine: {machine.get('cpu')}, {machine.get('cores')} cores, torch {machine.get('torch')}; load average "
        f"at the start: {load}. Times are train + evaluate, summed over the variants, one thread.\n",
        *([f"Command: `{settings['command']}`\n"] if settings.get("command") else []),
        "Ground-truth accuracy ranges over the grid from "
        f"{100 * min(result['accuracy']['full data (ground truth)']):.1f} to "
        f"{100 * max(result['accuracy']['full data (ground truth)']):.1f} %; per-variant figures are in the JSON.\n",
    ]
    rows = [
        [
            proxy,
            "–" if a["spearman"] != a["spearman"] else f"{a['spearman']:.3f}",
            f"{a['top_k_overlap']:.2f}",
            f"{a['seconds']:.0f}",
            f"{a['speedup']:.1f}",
        ]
        for proxy, a in result["agreement"].items()
    ]
    rows.append(["full data (ground truth)", 1, 1, f"{result['seconds']['full data (ground truth)']:.0f}", "1.0"])
    lines.append(
        markdown_table(["proxy", "Spearman rho", "top-5 overlap", "seconds", "speed-up vs ground truth"], rows)
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.nas_proxy", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fsdd")
    parser.add_argument("--split", default="official")
    parser.add_argument("--grid", default="full", choices=("full", "medium", "quick"))
    parser.add_argument("--ipc", type=int, default=20)
    parser.add_argument("--distill-method", default="dm")
    parser.add_argument("--distill-budget", type=float, default=280.0, help="seconds for the in-run distillation")
    parser.add_argument("--coreset", default=None, help="use this distilled coreset file instead of distilling")
    parser.add_argument("--proxy-samples", type=int, default=2000)
    parser.add_argument("--early-samples", type=int, default=2000)
    parser.add_argument("--truth-samples", type=int, default=30000)
    parser.add_argument("--batch-size", type=int, default=32, help="batch of the proxy trainings")
    parser.add_argument("--truth-batch-size", type=int, default=64, help="batch of the ground-truth trainings")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    parser.add_argument(
        "--run-dir", type=Path, default=None, help="resumable run folder (default runs/bench-nas_proxy-GRID)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "nas_proxy.json")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="the tests' setting: 5 variants, 30 clips per class, tiny budgets (overrides the grid and budget options)",
    )
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    import torch  # lazy: torch only when used

    from kit.experiments.nas_proxy import (
        QUICK_LIMIT_PER_CLASS,
        NASSettings,
        open_run,
        run_nas_proxy,
    )  # lazy: pulls in torch, scipy
    from kit.pipeline import load_training_set  # lazy: pulls in soundfile

    torch.set_num_threads(1)
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    files = {"distill": args.coreset} if args.coreset else {}
    if args.quick:
        settings = NASSettings.quick(seed=args.seed, distill_method=args.distill_method, coreset_files=files)
    else:
        settings = NASSettings(
            grid=args.grid,
            ipc=args.ipc,
            distill_method=args.distill_method,
            distill_time_budget_s=args.distill_budget,
            proxy_samples=args.proxy_samples,
            early_samples=args.early_samples,
            truth_samples=args.truth_samples,
            seed=args.seed,
            batch_size=args.batch_size,
            truth_batch_size=args.truth_batch_size,
            coreset_files=files,
        )
    limit = QUICK_LIMIT_PER_CLASS if args.quick else None
    run_dir = args.run_dir or Path("runs") / f"bench-nas_proxy-{'quick' if args.quick else args.grid}"
    run = open_run(
        run_dir, settings, dataset=args.dataset, data_dir=args.data_dir, split=args.split, limit_per_class=limit
    )
    if not run.has("bench_start"):  # the load when the grid was first started, not when a resumed run finished it
        run.record("bench_start", {"load_average": load, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    load = run.get("bench_start")["load_average"]
    started = time.time()
    fs, loader = load_training_set(
        args.dataset, args.data_dir, split=args.split, limit_per_class=limit, progress=not args.no_progress
    )
    result = run_nas_proxy(fs, loader, settings, run, progress=not args.no_progress)
    machine = machine_info()
    record = {
        "settings": {
            **settings.to_dict(),
            "dataset": args.dataset,
            "split": args.split,
            "task": "kws10" if args.dataset == "speech_commands" else None,
            "limit_per_class": limit,
            "command": command_line("bench.nas_proxy", argv),
            "distill": args.coreset
            or (
                f"{settings.distill_method}, {settings.distill_steps} steps"
                if settings.distill_steps
                else f"{settings.distill_method}, {settings.distill_time_budget_s:.0f} s budget"
            ),
        },
        "machine": machine,
        "load_average_at_start": load,
        "started": run.get("bench_start")["time"],
        "wall_s_this_invocation": round(time.time() - started, 1),
        "compute_s": round(
            sum(result["seconds"].values()) + run.get("distilled")["summary"]["fit_time_s"]
            if run.has("distilled")
            else sum(result["seconds"].values()),
            1,
        ),
        "run_dir": str(run_dir),
        **result,
        "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out = args.out
    atomic_write_text(out, json.dumps(record, indent=1, default=str) + "\n")
    atomic_write_text(out.with_suffix(".md"), markdown(result, record["settings"], machine, load))
    tmp = out.with_suffix(".png.tmp")
    shutil.copyfile(run_dir / "nas_scatter.png", tmp)
    os.replace(tmp, out.with_suffix(".png"))
    Console(stderr=True).print(f"wrote {out}, {out.with_suffix('.md')}, {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
