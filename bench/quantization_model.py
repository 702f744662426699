"""Int8 that keeps the answer: a trained model's int8 ONNX and TFLite under three calibrations.

Why a second quantisation benchmark: ``bench/quantization.py`` trains its own small model and
calibrates on a random coreset; the issue's target (int8 top-1 agreement with fp32 >= 99 %, accuracy
drop <= 0.5 points, for TFLite and ONNX) is about the production model ``kit train DATASET``
writes. This one takes that model file and compares, on the real test split of its own dataset:

* ``coreset``: a random selection of ``--ipc`` training clips per class (what ``kit bundle --int8``
  used before), as calibration;
* ``training clips``: ``--clips`` real training clips, half augmented by the recipe
  (``kit.training.calibration``, what ``--calibration-data auto`` uses);
* ``QAT + training clips``: ``--qat-epochs`` epochs of fake-quant fine-tuning
  (``kit.training.qat``) on the training split, then the training-clip calibration.

    python -m bench.quantization_model runs/kws12-convnet-mcu/model.kit --tag kws12_convnet_mcu

Writes ``<out-dir>/quantization_model_<tag>.{json,md}``; exported files go to ``<work>/quantization_<tag>/``.
"""

from __future__ import annotations

import argparse
import copy
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
from deploy.runtime.compat import renormalize
from deploy.runtime.models import open_model
from kit.report.tables import markdown_table


def _score(path: Path, x: np.ndarray, y: np.ndarray, ref: np.ndarray) -> dict[str, Any]:
    logits = open_model(path).run(x)["logits"]
    return {
        "size_bytes": model_report(path).size_bytes,
        "top1_agreement": float((logits.argmax(1) == ref.argmax(1)).mean()),
        "accuracy": float((logits.argmax(1) == y).mean()),
        "max_abs_diff_logits": float(np.abs(logits - ref).max()),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch  # lazy: torch only when used

    from deploy.export_tflite import export_tflite  # lazy: pulls in torch
    from distill import make_distiller  # lazy: pulls in torch, soundfile
    from kit.models import load_model  # lazy: pulls in torch
    from kit.training.calibration import calibration_set  # lazy: pulls in torch, soundfile
    from kit.training.qat import qat_finetune  # lazy: pulls in torch, soundfile
    from kit.training.source import load_model_feature_set  # lazy: pulls in soundfile

    torch.set_num_threads(args.threads)
    started = time.time()
    model, meta = load_model(args.model)
    model.eval()
    source = meta.get("source") or {}
    fs, space = load_model_feature_set(meta, args.data_dir, "bench.quantization_model")
    x_test = renormalize(fs.x_test, fs.normalizer, space.normalizer)
    x_train = renormalize(fs.x_train, fs.normalizer, space.normalizer)
    with torch.no_grad():
        ref = model(torch.from_numpy(x_test)).numpy()
    fp32_acc = float((ref.argmax(1) == fs.y_test).mean())
    work = args.work / f"quantization_{args.tag}"
    work.mkdir(parents=True, exist_ok=True)
    export_meta = {k: meta.get(k) for k in ("classes", "feature_config", "normalizer", "seed", "metrics", "source")}
    coreset = make_distiller("random", ipc=args.ipc, seed=args.seed).fit(x_train, fs.y_train, n_classes=fs.n_classes)
    clips = calibration_set(meta, args.data_dir, n=args.clips, seed=args.seed)
    qat_model = copy.deepcopy(model)
    rng = np.random.default_rng(args.seed)
    pick = rng.permutation(len(x_train))[: args.qat_clips]
    t = time.time()
    qat = qat_finetune(
        qat_model, x_train[pick], fs.y_train[pick], epochs=args.qat_epochs, lr=args.qat_lr, seed=args.seed
    )
    qat["seconds"] = round(time.time() - t, 1)
    with torch.no_grad():
        qat_ref = qat_model(torch.from_numpy(x_test)).numpy()
    # agreement is against the fp32 model the int8 file was made from (after QAT: the fine-tuned one, the
    # model a user would ship); the accuracy drop is always against the model kit train wrote
    variants = {
        "coreset": (model, np.ascontiguousarray(coreset.features_), ref),
        "training clips": (model, clips, ref),
        "QAT + training clips": (qat_model, clips, qat_ref),
    }
    rows: dict[str, Any] = {}
    for name, (net, cal, own_ref) in variants.items():
        slug = name.replace(" + ", "_").replace(" ", "_")
        fp32 = export_onnx(net, work / f"{slug}.fp32.onnx", export_meta)
        files = {
            "int8 ONNX": quantize_onnx(fp32, work / f"{slug}.int8.onnx", cal),
            "int8 TFLite": export_tflite(
                net, work / f"{slug}.int8.tflite", int8=True, calibration=cal, meta=export_meta
            ),
        }
        for fmt, path in files.items():
            rows[f"{fmt}, {name}"] = {
                "format": fmt,
                "calibration": name,
                "n_calibration": int(len(cal)),
                **_score(Path(path), x_test, fs.y_test, own_ref),
            }
            print(f"{fmt}, {name}: {json.dumps(rows[f'{fmt}, {name}'])}", flush=True)
    return {
        "kind": "model_quantization",
        "config": {
            "model": str(args.model),
            "tag": args.tag,
            "ipc": args.ipc,
            "clips": args.clips,
            "qat_epochs": args.qat_epochs,
            "qat_lr": args.qat_lr,
            "qat_clips": args.qat_clips,
            "seed": args.seed,
            "threads": args.threads,
            "data_dir": str(args.data_dir),
        },
        "machine": machine_info(),
        "dataset": {
            "name": source.get("dataset_path"),
            "task": source.get("task"),
            "n_test": int(len(x_test)),
            "classes": fs.classes,
            "test_split": source.get("description"),
        },
        "model": {
            "arch": model.arch,
            "arch_kwargs": model.arch_kwargs,
            "parameters": int(sum(p.numel() for p in model.parameters())),
        },
        "fp32_accuracy": fp32_acc,
        "qat": {**qat, "fp32_accuracy_after": float((qat_ref.argmax(1) == fs.y_test).mean())},
        "exports": rows,
        "seconds": round(time.time() - started, 1),
    }


def markdown(record: dict[str, Any]) -> str:
    cfg, d, acc = record["config"], record["dataset"], record["fp32_accuracy"]
    lines = [
        f"# Int8 that keeps the answer: {cfg['tag']} ({d['n_test']} real test clips)",
        "",
        f"Model `{cfg['model']}` ({record['model']['arch']}, {record['model']['parameters']} parameters), "
        f"fp32 accuracy {100 * acc:.1f} %. Agreement is against the fp32 model each int8 file was made from (for "
        f"QAT rows the fine-tuned one); the drop is against the model `kit train` wrote. "
        f"Calibration: a random coreset of {cfg['ipc']} "
        f"training clips per class; {cfg['clips']} real training clips, half with the recipe's augmentation; QAT: "
        f"{cfg['qat_epochs']} epochs of fake-quant fine-tuning (lr {cfg['qat_lr']:g}) on {record['qat']['n']} "
        f"training clips ({record['qat']['seconds']} s), fp32 accuracy after it "
        f"{100 * record['qat']['fp32_accuracy_after']:.1f} %. "
        f"Seed {cfg['seed']}. Targets: agreement >= 99 %, drop <= 0.5 points.",
        "",
        markdown_table(
            ["export", "calibration", "bytes", "top-1 agreement", "accuracy (%)", "drop (points)", "meets targets"],
            [
                [
                    r["format"],
                    f"{r['calibration']} ({r['n_calibration']})",
                    r["size_bytes"],
                    f"{100 * r['top1_agreement']:.1f} %",
                    f"{100 * r['accuracy']:.1f}",
                    f"{100 * (acc - r['accuracy']):.1f}",
                    "yes" if r["top1_agreement"] >= 0.99 and acc - r["accuracy"] <= 0.005 else "no",
                ]
                for r in record["exports"].values()
            ],
        ),
        "",
        f"Machine: {record['machine']['cpu']}, {record['machine']['cores']} cores; {record['seconds']} s in all.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.quantization_model", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="a model file written by kit train")
    parser.add_argument("--tag", required=True, help="names the results: quantization_model_<tag>.{json,md}")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--ipc", type=int, default=10, help="random-coreset calibration clips per class")
    parser.add_argument("--clips", type=int, default=400, help="real training clips for calibration")
    parser.add_argument("--qat-epochs", type=int, default=2)
    parser.add_argument("--qat-lr", type=float, default=1e-4)
    parser.add_argument("--qat-clips", type=int, default=8000, help="training clips the fake-quant step sees")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=Path("bench/results"))
    parser.add_argument("--work", type=Path, default=Path("runs"))
    args = parser.parse_args(argv)

    record = run(args)
    stem = args.out_dir / f"quantization_model_{args.tag}"
    atomic_write_text(stem.with_suffix(".json"), json.dumps(record, indent=1, default=str) + "\n")
    atomic_write_text(stem.with_suffix(".md"), markdown(record))
    print(markdown(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
