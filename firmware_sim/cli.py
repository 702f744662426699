"""``python -m firmware_sim report|check``: the MCU view of a model without the kit installed.

Why argparse and a plain-text fallback: this runs where only numpy is guaranteed; ``rich`` draws the
layer table when it is installed. Every user error is one line on stderr and exit status 2; a
model over its budget exits 1 after printing the report.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from deploy.runtime.errors import KitError
from deploy.runtime.features import extract_features, resample
from deploy.runtime.inference import ModelMetadata
from deploy.runtime.wavio import read_wav

from .budget import budget_for
from .cost import target_names
from .interpreter import Interpreter
from .model import Model, features_to_input, load_model
from .reference import compare, have_tflm, tflm_run
from .report import report


def _kb(n: float) -> str:
    return f"{n / 1024:.1f} KB"


def print_report(rep: dict[str, Any]) -> None:
    headers = ["#", "op", "output", "MACs", "read B", "written B", "live arena B", "est. cycles"]
    rows = [
        [
            str(r["index"]),
            r["opcode"],
            "x".join(map(str, r["output_shape"])),
            f"{r['macs']:,}",
            f"{r['bytes_read']:,}",
            f"{r['bytes_written']:,}",
            f"{r['live_bytes']:,}",
            f"{r['cycles']:,}",
        ]
        for r in rep["layers"]
    ]
    try:
        from rich.console import Console  # lazy: optional, guarded by try
        from rich.table import Table  # lazy: optional, guarded by try

        table = Table(title=f"{rep['model']} on {rep['target']}")
        for h in headers:
            table.add_column(h, justify="left" if h in ("op", "output") else "right")
        for row in rows:
            table.add_row(*row)
        Console(width=None if sys.stdout.isatty() else 140).print(table)
    except ImportError:
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
        print("  ".join(h.rjust(w) for h, w in zip(headers, widths)))
        for row in rows:
            print("  ".join(c.rjust(w) for c, w in zip(row, widths)))
    cmsis = {True: "with CMSIS-NN", False: "reference kernels", None: rep["cost_source"]}[rep["cmsis_nn"]]
    print(
        f"flash    {_kb(rep['flash_bytes'])} (flatbuffer {_kb(rep['flatbuffer_bytes'])} + code estimate "
        f"{_kb(rep['code_bytes_estimate'])})"
    )
    print(
        f"arena    {_kb(rep['arena_bytes'])} (planned tensors {_kb(rep['arena_head_bytes'])} + persistent "
        f"{_kb(rep['arena_tail_bytes'])}; peak live {_kb(rep['peak_live_bytes'])})"
    )
    print(
        f"compute  {rep['macs']:,} MACs, {rep['cycles']:,} cycles at {rep['clock_mhz']:g} MHz ({cmsis}): "
        f"{rep['ms_per_inference']:.2f} ms per inference, duty cycle {rep['duty_cycle']:.1%} at a "
        f"{rep['hop_ms']:g} ms hop (estimate)"
    )
    print(f"verdict  {rep['verdict']}")


def clip_features(model: Model, clips: list[str]) -> np.ndarray:
    """Normalised features for the clips: .npy arrays (N, C, F, T) as they are, WAVs through the front-end."""
    meta = ModelMetadata.from_props({k: str(v) for k, v in model.kit_metadata.items()}, model.name)
    paths: list[Path] = []
    for clip in clips:
        p = Path(clip)
        if p.is_dir():
            paths += sorted(p.rglob("*.wav"))
        elif p.is_file():
            paths.append(p)
        else:
            raise KitError(f"{clip}: no such clip file or folder")
    if not paths:
        raise KitError("--clips: no .wav or .npy files found")
    rows = []
    for p in paths:
        if p.suffix == ".npy":
            x = np.load(p, allow_pickle=False)
            rows.extend(x if x.ndim == 4 else x[None])
            continue
        if meta.feature_config is None:
            raise KitError(f"{model.name}: has no kit feature configuration; pass features as .npy instead of WAVs")
        y, rate = read_wav(p)
        x = extract_features(resample(y, rate, meta.feature_config.sample_rate), meta.feature_config)
        rows.append(meta.normalizer.transform(x) if meta.normalizer is not None else x)
    return np.stack(rows).astype(np.float32)


def cmd_report(args: argparse.Namespace) -> int:
    model = load_model(args.model).require_int8()
    budget = budget_for(
        args.target,
        args.hop_ms,
        flash_bytes=None if args.flash_kb is None else int(args.flash_kb * 1024),
        sram_bytes=None if args.sram_kb is None else int(args.sram_kb * 1024),
        max_ms=args.max_ms,
    )
    rep = report(model, args.target, budget, cmsis_nn=not args.no_cmsis)
    if args.json:
        print(json.dumps(rep, indent=1, default=str))
    else:
        print_report(rep)
    return 0 if rep["fits"] else 1


def cmd_check(args: argparse.Namespace) -> int:
    model = load_model(args.model)
    interpreter = Interpreter(model)
    x = interpreter.quantize_input(features_to_input(model, clip_features(model, args.clips)))
    ours = interpreter.run(x)
    print(f"firmware_sim ran {len(x)} clips: outputs {', '.join(f'{k} {v.shape[1:]}' for k, v in ours.items())}")
    if not have_tflm():
        print("tflite-micro is not installed: no TFLM comparison (pip install 'audio-distill-kit[mcu]')")
        return 0
    result = compare(ours, tflm_run(model, x))
    print(
        f"bit-identical with TensorFlow Lite Micro: {result['identical']}/{result['clips']} clips "
        f"(largest difference {result['max_lsb_diff']} LSB)"
    )
    return 0 if result["identical"] == result["clips"] else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m firmware_sim", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("report", help="per-layer table, flash, arena, cycles, ms and the budget verdict")
    rep.add_argument("model", help=".tflite (int8) or a kit bundle")
    rep.add_argument("--target", default="cortex-m4f", choices=target_names())
    rep.add_argument("--hop-ms", type=float, default=20.0, help="one inference per hop (ms); the time budget")
    rep.add_argument("--max-ms", type=float, default=None, help="time budget per inference (default: the hop)")
    rep.add_argument("--flash-kb", type=float, default=None, help="flash budget (default: the target part's)")
    rep.add_argument("--sram-kb", type=float, default=None, help="SRAM budget for the arena (default: the part's)")
    rep.add_argument("--no-cmsis", action="store_true", help="TFLM reference kernels instead of CMSIS-NN")
    rep.add_argument("--json", action="store_true")
    rep.set_defaults(func=cmd_report)
    chk = sub.add_parser("check", help="run clips through firmware_sim and TFLM; count bit-identical outputs")
    chk.add_argument("model", help=".tflite (int8) or a kit bundle")
    chk.add_argument("--clips", nargs="+", required=True, help="WAV files, folders of WAVs, or .npy features")
    chk.set_defaults(func=cmd_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
