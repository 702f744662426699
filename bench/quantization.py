"""fp32 vs int8 exports on a real test split: size, ops, parity, top-1 agreement, accuracy, latency.

Why: the edge formats trade accuracy for size and speed, and the trade depends on the data and the
model; this measures it end to end on real recordings with the kit's own exporters and runtime
classes (``open_model``), so the figures are the ones a device would see.

    python -m bench.quantization --dataset fsdd
    python -m bench.quantization --dataset speech_commands --task kws10 --split speaker

Writes ``<out-dir>/quantization_<name>.json`` (config, machine, per-export figures) and ``.md``;
the exported files go to ``<work>/quantization_<name>/``.
Latency is the median of single-clip calls (batch 1, one thread) after a warm-up; on a shared
machine it is only comparable within one run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.machine import machine_info
from deploy.export_onnx import export_onnx
from deploy.model_report import model_report
from deploy.quantize_onnx import quantize_onnx
from deploy.runtime.artifact import atomic_write_text
from deploy.runtime.models import open_model
from deploy.runtime.tflite_model import TfliteModel
from kit.report.tables import markdown_table


def _latency_ms(model: Any, x: np.ndarray, repeats: int) -> float:
    for clip in x[:10]:
        model.predict(clip)
    times = []
    for i in range(repeats):
        clip = x[i % len(x)]
        start = time.perf_counter()
        model.predict(clip)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch  # lazy: torch only when used

    from deploy.export_tflite import export_tflite  # lazy: pulls in torch
    from distill import make_distiller  # lazy: pulls in torch, soundfile
    from kit.features import load_feature_set  # lazy: pulls in soundfile
    from kit.training import TrainConfig, train_model  # lazy: pulls in torch, soundfile

    torch.set_num_threads(1)
    name = args.dataset if args.dataset != "speech_commands" else f"speech_commands_{args.task}"
    work = args.work / f"quantization_{name}"  # model files: outside bench/results (not committed)
    work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    fs = load_feature_set(
        args.dataset,
        args.data_dir,
        task=args.task,
        split=args.split,
        progress=True,
        limit_per_class=args.limit_per_class,
        seed=args.seed,
    )
    config = TrainConfig(
        arch_kwargs={"width": args.width}, max_samples=args.max_samples, batch_size=args.batch_size, seed=args.seed
    )
    print(
        f"training on {len(fs.x_train)} clips ({config.max_samples} samples), testing on {len(fs.x_test)}", flush=True
    )
    model = train_model(fs.x_train, fs.y_train, fs.n_classes, config, progress=True).eval()
    selector = make_distiller("random", ipc=args.ipc, seed=args.seed).fit(
        fs.x_train, fs.y_train, n_classes=fs.n_classes
    )
    calibration = np.ascontiguousarray(selector.features_)
    meta = {"classes": fs.classes, "feature_config": fs.config, "normalizer": fs.normalizer, "source": fs.source}
    with torch.no_grad():
        ref_logits, ref_embedding = (t.numpy() for t in model.forward_with_embedding(torch.from_numpy(fs.x_test)))
    ref_acc = float((ref_logits.argmax(1) == fs.y_test).mean())

    exports: dict[str, Path] = {}
    timings: dict[str, float] = {}

    def timed(key: str, make) -> None:
        t = time.time()
        exports[key] = make()
        timings[key] = round(time.time() - t, 1)
        print(f"exported {key} in {timings[key]} s", flush=True)

    timed("fp32.tflite", lambda: export_tflite(model, work / "model.fp32.tflite", meta=meta))
    timed(
        "int8.tflite",
        lambda: export_tflite(model, work / "model.int8.tflite", int8=True, calibration=calibration, meta=meta),
    )
    timed("fp32.onnx", lambda: export_onnx(model, work / "model.fp32.onnx", meta))
    for act, tag in (("uint8", "u8act"), ("int8", "s8act")):  # QDQ activation type (weights int8 in both)
        timed(
            f"int8-{tag}.onnx",
            lambda act=act, tag=tag: quantize_onnx(
                exports["fp32.onnx"], work / f"model.int8_{tag}.onnx", calibration, activation_type=act
            ),
        )
    results: dict[str, Any] = {}
    variants = [(key, open_model(path)) for key, path in exports.items()]
    variants.append(("int8.tflite (built-in kernels, no XNNPACK)", TfliteModel(exports["int8.tflite"], xnnpack=False)))
    for key, runtime in variants:
        out = runtime.run(fs.x_test)
        report = model_report(exports[key.split(" ")[0]])
        results[key] = {
            "size_bytes": report.size_bytes,
            "ops": report.ops,
            "tensor_types": report.tensor_types,
            "integer_only": report.integer_only,
            "max_abs_diff_logits": float(np.abs(out["logits"] - ref_logits).max()),
            "max_abs_diff_embedding": float(np.abs(out["embedding"] - ref_embedding).max()),
            "top1_agreement": float((out["logits"].argmax(1) == ref_logits.argmax(1)).mean()),
            "accuracy": float((out["logits"].argmax(1) == fs.y_test).mean()),
            "latency_ms_per_clip": _latency_ms(runtime, fs.x_test, args.repeats),
            "export_seconds": timings.get(key.split(" ")[0]),
        }
        print(
            f"{key}: {json.dumps({k: v for k, v in results[key].items() if k not in ('ops', 'tensor_types')})}",
            flush=True,
        )
    return {
        "config": {
            **vars(args),
            "data_dir": str(args.data_dir),
            "out_dir": str(args.out_dir),
            "work": str(args.work),
            "train": config.to_dict(),
            "calibration": f"random coreset, {args.ipc} per class ({len(calibration)} clips)",
        },
        "machine": machine_info(),
        "dataset": {
            "name": name,
            "classes": fs.classes,
            "n_train": int(len(fs.x_train)),
            "n_test": int(len(fs.x_test)),
            "source": fs.source,
        },
        "pytorch": {"accuracy": ref_acc, "parameters": int(sum(p.numel() for p in model.parameters()))},
        "exports": results,
        "seconds": round(time.time() - started, 1),
    }


def markdown(record: dict[str, Any]) -> str:
    d, torch_acc = record["dataset"], record["pytorch"]["accuracy"]
    lines = [
        f"# fp32 vs int8 exports: {d['name']} ({d['n_test']} real test clips)",
        "",
        f"ConvNet width {record['config']['width']}, {record['pytorch']['parameters']} parameters, PyTorch accuracy "
        f"{100 * torch_acc:.1f} %; calibration: {record['config']['calibration']}; seed {record['config']['seed']}.",
        "",
        markdown_table(
            [
                "export",
                "bytes",
                "max abs diff logits",
                "top-1 agreement",
                "accuracy (%)",
                "drop (points)",
                "ms/clip",
                "integer-only",
            ],
            [
                [
                    key,
                    r["size_bytes"],
                    f"{r['max_abs_diff_logits']:.2g}",
                    f"{100 * r['top1_agreement']:.1f} %",
                    f"{100 * r['accuracy']:.1f}",
                    f"{100 * (torch_acc - r['accuracy']):.1f}",
                    f"{r['latency_ms_per_clip']:.3f}",
                    "yes" if r["integer_only"] else "no",
                ]
                for key, r in record["exports"].items()
            ],
        ),
        "",
        "Ops:",
        "",
    ]
    for key, r in record["exports"].items():
        if "(" not in key:
            lines.append(f"- {key}: " + ", ".join(f"{op} x{n}" for op, n in r["ops"].items()))
    lines += [
        "",
        f"Machine: {record['machine']['cpu']}, {record['machine']['cores']} cores (shared; "
        "latency comparable within this table only).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.quantization", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="fsdd")
    parser.add_argument("--task", default="kws10")
    parser.add_argument("--split", default="official")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--limit-per-class", type=int, default=None)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--max-samples", type=int, default=40000, help="training budget in samples")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--ipc", type=int, default=10, help="calibration coreset clips per class (random selection)")
    parser.add_argument("--repeats", type=int, default=300, help="single-clip calls timed per export")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=Path("bench/results"), help="where the JSON and Markdown go")
    parser.add_argument("--work", type=Path, default=Path("runs"), help="where the exported model files go")
    args = parser.parse_args(argv)

    record = run(args)
    stem = args.out_dir / f"quantization_{record['dataset']['name']}"
    atomic_write_text(stem.with_suffix(".json"), json.dumps(record, indent=1, default=str) + "\n")
    atomic_write_text(stem.with_suffix(".md"), markdown(record))
    print(markdown(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
