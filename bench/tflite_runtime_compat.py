"""Do the kit's .tflite exports run on the old ``tflite-runtime`` that many devices still carry?

Why this check exists: ``tflite-runtime`` is abandoned (last release 2.14.0, October 2023) and
needs numpy < 2, so it cannot live in the kit's own environment (numpy 2). Raspberry Pi OS images
and older phone Python stacks still ship it, and ``deploy.runtime.tflite_model.TfliteModel`` falls
back to it when ai-edge-litert is missing. This script builds a separate virtual environment with
``tflite-runtime`` and ``numpy<2`` (cached under ``--cache``), copies ``deploy/runtime`` there as
``kit_runtime`` (as ``kit deploy`` does), runs each model through ``TfliteModel``'s fallback
in that environment and compares the outputs with ai-edge-litert's in this one.

    python -m bench.tflite_runtime_compat [MODEL.tflite ...] [--cache DIR] [--out FILE.json]

Without model files it trains a small FSDD ConvNet, exports it as fp32 and int8 TFLite and uses
real FSDD test clips as inputs. The JSON records versions, the config and per-model differences.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from deploy.runtime.artifact import atomic_write_text
from deploy.runtime.tflite_model import TfliteModel

REPO = Path(__file__).resolve().parents[1]
#: the last tflite-runtime release and the last numpy 1.x it was built against
REQUIREMENTS = ("tflite-runtime==2.14.0", "numpy==1.26.4")
#: where the venv is kept between runs ($KIT_TFLITE_RUNTIME_VENV overrides)
DEFAULT_CACHE = Path(
    os.environ.get("KIT_TFLITE_RUNTIME_VENV") or Path.home() / ".cache" / "audio-distill-kit" / "tflite-runtime-venv"
)
# fp32: both runtimes use XNNPACK float kernels; measured identical outputs, allow float noise.
FP32_ATOL = 1e-4
# int8: outputs are int8 codes; an old kernel may round one step differently, never more.
INT8_MAX_STEPS = 1.0

_RUNNER = r"""
import json, sys
import numpy as np
import kit_runtime
from kit_runtime.tflite_model import TfliteModel
import tflite_runtime
result = {"numpy": np.__version__, "tflite_runtime": getattr(tflite_runtime, "__version__", "?"), "models": {}}
for name in sys.argv[1:]:
    x = np.load(name + ".inputs.npy")
    for xnnpack in (True, False):
        model = TfliteModel(name + ".tflite", xnnpack=xnnpack)
        np.savez(name + (".default" if xnnpack else ".builtin") + ".npz", **model.run(x))
    result["models"][name] = {"runtime": model.runtime, "quantized": model.quantized}
print(json.dumps(result))
"""


class CompatUnavailable(RuntimeError):
    """The tflite-runtime environment cannot be built here (offline, no wheel for this platform)."""


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def build_venv(cache: Path = DEFAULT_CACHE, timeout_s: float = 300) -> Path:
    """A virtual environment with tflite-runtime and numpy<2 at ``cache`` (reused when ready)."""
    cache = Path(cache)
    stamp = cache / ".kit-requirements"
    python = _venv_python(cache)
    if stamp.is_file() and stamp.read_text() == "\n".join(REQUIREMENTS) and python.is_file():
        check = subprocess.run(
            [str(python), "-c", "import tflite_runtime.interpreter"], capture_output=True, timeout=60
        )
        if check.returncode == 0:
            return python
    if cache.exists():
        if any(cache.iterdir()) and not (cache / "pyvenv.cfg").is_file():
            raise CompatUnavailable(f"{cache} exists and is not a virtual environment; choose another --cache")
        shutil.rmtree(cache)  # a stale or broken venv of ours
    base = getattr(sys, "_base_executable", None) or sys.executable
    steps = [
        [base, "-m", "venv", str(cache)],
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", *REQUIREMENTS],
    ]
    for command in steps:
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise CompatUnavailable(f"{' '.join(command[:4])} failed: {exc}") from None
        if done.returncode != 0:
            tail = " ".join((done.stderr or done.stdout).split())[-300:]
            raise CompatUnavailable(f"cannot build the tflite-runtime environment ({' '.join(command[2:5])}): {tail}")
    stamp.write_text("\n".join(REQUIREMENTS))
    return python


def _steps(name: str, outputs: dict[str, np.ndarray], model: Any) -> dict[str, float]:
    """Largest difference per output in int8 steps (output scale), for quantised models."""
    quant = json.loads(model.metadata.props.get("kit.quantization", "{}")).get("outputs", {})
    return {k: float(v) / quant[k]["scale"] for k, v in outputs.items() if k in quant and quant[k]["scale"]}


def run_compat(
    models: list[Path],
    work: Path,
    cache: Path = DEFAULT_CACHE,
    inputs: dict[str, np.ndarray] | None = None,
    seed: int = 0,
    n: int = 32,
) -> dict[str, Any]:
    """Run ``models`` on tflite-runtime (separate venv) and ai-edge-litert (here); compare outputs."""
    started = time.time()
    python = build_venv(cache)
    work = Path(work)
    marker = work / ".kit-compat-work"
    if work.exists() and any(work.iterdir()):
        if not marker.is_file():
            raise ValueError(f"{work} is not empty and not a previous compat work folder; choose another --work")
        shutil.rmtree(work)  # our own scratch folder from an earlier run
    (work / "kit_runtime").mkdir(parents=True)
    marker.write_text("scratch folder of bench/tflite_runtime_compat.py\n")
    for source in (REPO / "deploy" / "runtime").glob("*.py"):
        shutil.copy2(source, work / "kit_runtime" / source.name)
    names, reference = [], {}
    for i, path in enumerate(models):
        name = f"m{i}"
        shutil.copy2(path, work / f"{name}.tflite")
        model = TfliteModel(path, runtime="ai_edge_litert")
        x = (inputs or {}).get(str(path))
        if x is None:
            x = np.random.default_rng(seed + i).standard_normal((n, *model.input_shape)).astype(np.float32)
        x = np.ascontiguousarray(x, dtype=np.float32)
        np.save(work / f"{name}.inputs.npy", x)
        builtin = TfliteModel(path, runtime="ai_edge_litert", xnnpack=False)
        reference[name] = (path, model, {"default": model.run(x), "builtin": builtin.run(x)})
        names.append(name)
    done = subprocess.run([str(python), "-c", _RUNNER, *names], cwd=work, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        tail = " ".join(done.stderr.split())[-400:]
        raise RuntimeError(f"TfliteModel failed under tflite-runtime: {tail}")
    remote = json.loads(done.stdout.strip().splitlines()[-1])
    import ai_edge_litert  # lazy: ai_edge_litert only when used

    record: dict[str, Any] = {
        "tflite_runtime": remote["tflite_runtime"],
        "tflite_runtime_numpy": remote["numpy"],
        "ai_edge_litert": getattr(ai_edge_litert, "__version__", "?"),
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "requirements": list(REQUIREMENTS),
        "tolerances": {
            "fp32_max_abs": FP32_ATOL,
            "int8_max_steps": INT8_MAX_STEPS,
            "applied_to": "built-in kernels on both sides (xnnpack=False)",
        },
        "models": {},
    }
    passed = True
    for name in names:
        path, model, ours = reference[name]
        entry: dict[str, Any] = {
            "runtime_used": remote["models"][name]["runtime"],
            "quantized": model.quantized,
            "n_inputs": int(len(ours["default"]["logits"])),
        }
        for kernels in ("builtin", "default"):
            with np.load(work / f"{name}.{kernels}.npz") as theirs_file:
                theirs = {k: theirs_file[k] for k in theirs_file.files}
            diffs = {k: float(np.abs(ours[kernels][k] - theirs[k]).max()) for k in ours[kernels]}
            entry[kernels] = {
                "max_abs_diff": diffs,
                "max_diff_in_int8_steps": _steps(name, diffs, model) if model.quantized else {},
                "top1_agreement": float((ours[kernels]["logits"].argmax(1) == theirs["logits"].argmax(1)).mean()),
            }
        matched = entry["builtin"]
        ok = (
            (max(matched["max_diff_in_int8_steps"].values()) <= INT8_MAX_STEPS)
            if model.quantized
            else (max(matched["max_abs_diff"].values()) <= FP32_ATOL)
        )
        entry["ok"] = bool(ok and entry["runtime_used"] == "tflite_runtime")
        passed &= entry["ok"]
        record["models"][Path(path).name] = entry
    record["passed"] = bool(passed)
    record["seconds"] = round(time.time() - started, 1)
    return record


def _demo_models(
    work: Path, data_dir: str | None, seed: int
) -> tuple[list[Path], dict[str, np.ndarray], dict[str, Any]]:
    """Train a small FSDD ConvNet and export it as fp32 and int8 TFLite (the default inputs)."""
    import torch  # lazy: torch only when used

    from deploy.export_tflite import export_tflite  # lazy: pulls in torch
    from distill import make_distiller  # lazy: pulls in torch, soundfile
    from kit.features import load_feature_set  # lazy: pulls in soundfile
    from kit.training import TrainConfig, train_model  # lazy: pulls in torch, soundfile

    torch.set_num_threads(1)
    fsdd = load_feature_set("fsdd", data_dir, limit_per_class=20, progress=False)
    config = TrainConfig(arch_kwargs={"width": 32}, max_samples=3000, batch_size=32, augment=False, seed=seed)
    model = train_model(fsdd.x_train, fsdd.y_train, fsdd.n_classes, config, progress=False)
    calibration = (
        make_distiller("random", ipc=5, seed=seed).fit(fsdd.x_train, fsdd.y_train, n_classes=fsdd.n_classes).features_
    )
    meta = {"classes": fsdd.classes, "feature_config": fsdd.config, "normalizer": fsdd.normalizer}
    work.mkdir(parents=True, exist_ok=True)
    fp32 = export_tflite(model, work / "fsdd.fp32.tflite", meta=meta)
    int8 = export_tflite(model, work / "fsdd.int8.tflite", int8=True, calibration=calibration, meta=meta)
    x = fsdd.x_test[:64]
    setup = {
        "dataset": "fsdd",
        "limit_per_class": 20,
        "train": config.to_dict(),
        "calibration": "random coreset, 5 per class",
        "inputs": f"{len(x)} real FSDD test clips",
    }
    return [fp32, int8], {str(fp32): x, str(int8): x}, setup


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tflite_runtime_compat", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "models", nargs="*", type=Path, help=".tflite files (default: train and export a small FSDD model)"
    )
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where the tflite-runtime venv is kept")
    parser.add_argument("--work", type=Path, default=Path("runs/tflite_runtime_compat"), help="scratch folder")
    parser.add_argument("--out", type=Path, default=Path("bench/results/tflite_runtime_compat.json"))
    parser.add_argument("--data-dir", default=None, help="datasets folder (default: $KIT_DATA_DIR)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-n", type=int, default=32, help="random inputs per given model")
    args = parser.parse_args(argv)

    setup: dict[str, Any] = {
        "models": [str(m) for m in args.models],
        "inputs": f"{args.n} standard-normal feature maps",
    }
    inputs = None
    models = list(args.models)
    if not models:
        models, inputs, setup = _demo_models(args.work.with_name(args.work.name + "_models"), args.data_dir, args.seed)
    try:
        record = run_compat(models, args.work, args.cache, inputs=inputs, seed=args.seed, n=args.n)
    except CompatUnavailable as exc:
        record = {"passed": None, "unavailable": str(exc), "requirements": list(REQUIREMENTS)}
    record["config"] = {**setup, "seed": args.seed, "cache": str(args.cache)}
    atomic_write_text(args.out, json.dumps(record, indent=1, sort_keys=True) + "\n")
    print(json.dumps({k: record[k] for k in ("passed",) if k in record} | {"out": str(args.out)}))
    for name, entry in record.get("models", {}).items():
        for kernels in ("builtin", "default"):
            e = entry[kernels]
            print(
                f"{name} [{kernels} kernels]: runtime {entry['runtime_used']}, max |diff| {e['max_abs_diff']}, "
                f"int8 steps {e['max_diff_in_int8_steps']}, top-1 agreement {e['top1_agreement']:.3f}"
            )
    return 0 if record.get("passed") else 1


if __name__ == "__main__":
    sys.exit(main())
