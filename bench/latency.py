"""The latency benchmark: can the keyword spotter run in real time on one small CPU core?

``python -m bench.latency`` measures, with ONE thread everywhere:

* per-window inference latency (median, p90) of the ConvNet as fp32 / int8 x ONNX / TFLite, on a
  real 1-s feature window (``deploy.runtime.models.open_model``, what the device calls);
* front-end time per window (``extract_features`` + normaliser on a real 1-s clip);
* the streaming real-time factor (processing time / audio duration) of the device path, 100-ms
  chunks fed to ``deploy.runtime.stream.StreamRecognizer`` over a long held-out stream, in a
  separate process that imports only ``deploy.runtime`` (no torch, no kit: what a device runs),
  with that process's peak RSS, read inside it: ``VmHWM`` of /proc/self/status, because Linux
  carries the parent's RSS at fork time into the child's ``getrusage`` ``ru_maxrss`` across exec
  (measured here: 829 MB, the benchmark parent with torch loaded; ``ru_maxrss`` is recorded too);
* model file sizes and op lists (``deploy.model_report``) and bundle sizes.

Targets: int8 <= 1 ms per 1-s window, RTF <= 0.05, int8 model <= 64 KB; the results say which
are met. Writes ``bench/results/latency.{json,md,png}``.

The model is the full-data ConvNet of ``bench/streaming.py`` when that benchmark has run (its
work dir), else a ConvNet of the same shape trained briefly here (latency does not depend on the
weights; int8 calibration uses a random 10-per-class coreset either way).

Why this module imports only the standard library and numpy at the top: ``--rtf-child`` runs it
as the device process, and the child must not load torch or the kit (the child records which
heavy packages it found loaded, as a check).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core, as on the device (set before numpy loads)

import argparse
import json
import resource
import subprocess
import sys
import time
import wave
from pathlib import Path
from typing import Any, Callable

import numpy as np

from bench.machine import command_line
from bench.paths import DEFAULT_DATA_DIR, REPO, RESULTS_DIR

DEFAULT_WORK_DIR = REPO / "runs" / "bench-latency"
STREAMING_WORK_DIR = REPO / "runs" / "bench-streaming"
#: packages a device process must not need (their presence in the child is recorded as a failure)
NOT_ON_DEVICE = (
    "torch",
    "kit",
    "distill",
    "librosa",
    "scipy",
    "rich",
    "typer",
    "onnx",
    "litert_torch",
    "tensorflow",
    "matplotlib",
    "soundfile",
)
TARGET_INT8_MS = 1.0
TARGET_RTF = 0.05
TARGET_INT8_BYTES = 64 * 1024


def summarize_ms(samples_ms: list[float] | np.ndarray) -> dict[str, float]:
    """Median, p90, mean, min and count of timings in milliseconds."""
    a = np.asarray(samples_ms, dtype=np.float64)
    return {
        "median_ms": round(float(np.median(a)), 4),
        "p90_ms": round(float(np.percentile(a, 90)), 4),
        "mean_ms": round(float(a.mean()), 4),
        "min_ms": round(float(a.min()), 4),
        "n": int(len(a)),
    }


def time_calls(fn: Callable[[], Any], n: int, warmup: int = 20) -> list[float]:
    """Wall time of ``n`` calls of ``fn`` in milliseconds, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(n):
        start = time.perf_counter_ns()
        fn()
        times.append((time.perf_counter_ns() - start) / 1e6)
    return times


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _proc_status_mb(key: str) -> float | None:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process from /proc, in MB (None off Linux)."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


# The device process --------------------------------------------------------------------------------
def rtf_child(bundle_path: str, model_name: str, wav_path: str, chunk_ms: float) -> dict[str, Any]:
    """Stream a WAV file through the device path in this process; timings, RTF and memory.

    Imports only ``deploy.runtime`` (and numpy): this is what a Raspberry Pi or phone runs.
    """
    started = time.perf_counter()
    from deploy.runtime.audio_input import (
        PcmStreamSource,
    )  # lazy: the device-only process imports this module, so it loads the runtime only
    from deploy.runtime.bundle import (
        Bundle,
        BundleClassifier,
    )  # lazy: the device-only process imports this module, so it loads the runtime only
    from deploy.runtime.errors import (
        KitError,
    )  # lazy: the device-only process imports this module, so it loads the runtime only
    from deploy.runtime.stream import (
        StreamRecognizer,
    )  # lazy: the device-only process imports this module, so it loads the runtime only

    bundle = Bundle.load(bundle_path)
    classifier = BundleClassifier(bundle, model_name, threads=1)
    handle = wave.open(wav_path, "rb")
    if handle.getnchannels() != 1 or handle.getsampwidth() != 2:
        raise KitError(f"{wav_path}: the real-time-factor stream must be 16-bit mono PCM")
    rate = handle.getframerate()

    class _Frames:  # the WAV's PCM as a byte stream, read as a microphone would deliver it
        def read(self, n: int) -> bytes:
            return handle.readframes(n // 2)

    # PCM read chunk by chunk (the `listen --input -` path): the process never holds the whole
    # stream, so its peak RSS is the runtime's, not the test file's.
    source = PcmStreamSource(_Frames(), rate=rate, chunk_s=chunk_ms / 1000.0, name=wav_path)
    stream = StreamRecognizer(classifier, bundle.detector, rate=rate)
    startup_s = time.perf_counter() - started
    rss_ready = _proc_status_mb("VmRSS")
    per_hop_ms, detections, hops, samples = [], 0, 0, 0
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for chunk in source.chunks():
        t = time.perf_counter_ns()
        results = stream.feed(chunk)
        samples += len(chunk)
        if results:
            per_hop_ms.append((time.perf_counter_ns() - t) / 1e6 / len(results))
            hops += len(results)
            detections += sum(r.detection is not None for r in results)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    handle.close()
    audio_s = samples / rate
    loaded = sorted({m.split(".")[0] for m in sys.modules} & set(NOT_ON_DEVICE))
    return {
        "bundle": bundle_path,
        "model": model_name,
        "audio_s": round(audio_s, 2),
        "chunk_ms": chunk_ms,
        "hops": hops,
        "detections": detections,
        "processing_wall_s": round(wall, 3),
        "processing_cpu_s": round(cpu, 3),
        "rtf_wall": round(wall / audio_s, 5),
        "rtf_cpu": round(cpu / audio_s, 5),
        "per_hop": summarize_ms(per_hop_ms) if per_hop_ms else None,
        "startup_s": round(startup_s, 3),
        "rss_ready_mb": round(rss_ready, 1) if rss_ready else None,
        "peak_rss_mb": round(peak, 1) if (peak := _proc_status_mb("VmHWM")) else round(_peak_rss_mb(), 1),
        "ru_maxrss_mb": round(_peak_rss_mb(), 1),
        "non_device_modules_loaded": loaded,
        "runtime_modules": sorted(
            {m.split(".")[0] for m in sys.modules} & {"onnxruntime", "ai_edge_litert", "tflite_runtime"}
        ),
    }


def run_child(bundle: Path, model_name: str, wav: Path, chunk_ms: float) -> dict[str, Any]:
    """``rtf_child`` in a fresh interpreter (its own peak RSS, no torch inherited)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "bench.latency", "--rtf-child", str(bundle), model_name, str(wav), str(chunk_ms)]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"bundle": str(bundle), "model": model_name, "error": tail[0]}
    return json.loads(done.stdout.strip().splitlines()[-1])


# Preparing models ----------------------------------------------------------------------------------
def _write_wav(path: Path, y: np.ndarray, rate: int) -> None:
    from deploy.runtime.wavio import (
        write_wav,
    )  # lazy: the device-only process imports this module, so it loads the runtime only

    write_wav(path, y, rate)


def prepare(args: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    """Model + calibration coreset, exported files, bundles, a real feature window and a stream."""
    import torch  # lazy: torch only when used

    from bench.stream_builder import (
        StreamSpec,
        build_stream,
        load_material,
    )  # lazy: the device-only process imports this module, so it loads the runtime only
    from deploy.bundle_builder import (
        build_bundle,
    )  # lazy: the device-only process imports this module, so it loads the runtime only
    from kit.models import load_model  # lazy: pulls in torch
    from kit.pipeline import distill_coreset, load_training_set  # lazy: pulls in soundfile
    from kit.training import TrainConfig, train_and_save  # lazy: pulls in torch, soundfile

    torch.set_num_threads(1)
    work: Path = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    fs, loader = load_training_set("speech_commands", args.data_dir, task="kws12", progress=True)
    prepared: dict[str, Any] = {"fs": fs, "archs": {}}
    coreset_path = STREAMING_WORK_DIR / "coresets" / "random-10.kit"
    if args.model is None and not coreset_path.is_file():
        coreset_path = work / "random-10.kit"
    if not coreset_path.is_file():
        coreset, _, _ = distill_coreset(fs, loader, "random", 10, seed=args.seed)
        coreset.save(coreset_path)
    prepared["coreset"] = coreset_path
    archs = [("convnet", {"width": args.width}), ("dscnn", {})]
    for arch, kwargs in archs:
        label = f"{arch}" + (f"-w{kwargs['width']}" if "width" in kwargs else "")
        if arch == "convnet" and args.model is not None:
            model_path, origin = Path(args.model), f"given: {args.model}"
        elif arch == "convnet" and (STREAMING_WORK_DIR / "models" / "full.kit").is_file() and args.width == 32:
            model_path, origin = STREAMING_WORK_DIR / "models" / "full.kit", "bench.streaming full-data model"
        else:
            model_path, origin = work / f"{label}.kit", "trained briefly here (latency does not depend on the weights)"
            if not model_path.is_file():
                log(f"training a {label} for the latency figures")
                config = TrainConfig(
                    arch=arch, arch_kwargs=kwargs, epochs=3, batch_size=128, max_samples=None, seed=args.seed, threads=1
                )
                train_and_save(model_path, fs.x_train, fs.y_train, fs, config, x_test=fs.x_test, y_test=fs.y_test)
        model, meta = load_model(model_path)
        log(f"{label}: building the bundles (fp32 + int8, ONNX and TFLite)")
        bundles = {}
        t0 = time.perf_counter()
        bundles["onnx"] = build_bundle(
            model_path, coreset_path, work / f"{label}-onnx.bundle.kit", formats=("onnx",), int8=True
        )
        bundles["tflite"] = build_bundle(
            model_path, coreset_path, work / f"{label}-tflite.bundle.kit", formats=("tflite",), int8=True
        )
        prepared["archs"][label] = {
            "model": model_path,
            "origin": origin,
            "bundles": bundles,
            "params": int(sum(p.numel() for p in model.parameters())),
            "accuracy": (meta.get("metrics") or {}).get("accuracy"),
            "bundle_build_s": round(time.perf_counter() - t0, 1),
        }
    log(f"building a {args.stream_minutes:g}-min held-out stream for the real-time factor")
    material = load_material(args.data_dir, keywords_per_class=20, unknown=20, fsdd=40, esc=10, seed=args.seed)
    stream = build_stream(material, StreamSpec(minutes=args.stream_minutes, negative_rate=0.3), seed=args.seed)
    wav = work / "stream.wav"
    _write_wav(wav, stream.audio, stream.rate)
    prepared["stream"] = {"wav": wav, "summary": stream.summary()}
    # real 1-s test clips for the front-end; one real feature window for the models
    prepared["clips"] = [k.audio for k in material.keywords[:50]]
    return prepared


# Measuring -----------------------------------------------------------------------------------------
def measure(args: argparse.Namespace, prepared: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    from deploy.model_report import (
        model_report,
    )  # lazy: the device-only process imports this module, so it loads the runtime only
    from deploy.runtime.bundle import (
        Bundle,
        model_precision,
    )  # lazy: the device-only process imports this module, so it loads the runtime only
    from deploy.runtime.features import (
        extract_features,
    )  # lazy: the device-only process imports this module, so it loads the runtime only

    fs = prepared["fs"]
    x = np.ascontiguousarray(fs.x_test[:1], dtype=np.float32)
    config, normalizer = fs.config, fs.normalizer
    clips = prepared["clips"]
    state = {"i": 0}

    def front_end() -> None:
        y = clips[state["i"] % len(clips)]
        state["i"] += 1
        normalizer.transform(extract_features(y, config)[None])

    log("timing the front-end")
    front = summarize_ms(time_calls(front_end, args.n_front))
    out: dict[str, Any] = {
        "front_end": {
            **front,
            "what": f"extract_features ({config.kind} {config.shape}) + normaliser, "
            f"real 1-s clips at {config.sample_rate} Hz",
        },
        "models": [],
    }
    for label, arch in prepared["archs"].items():
        for fmt, bundle_path in arch["bundles"].items():
            bundle = Bundle.load(bundle_path)
            for name, blob in sorted(bundle.models.items()):
                model = bundle.open_model(name, threads=1)
                log(f"{label} {name}: {args.n_infer} single-window calls")
                timings = summarize_ms(time_calls(lambda: model.predict(x), args.n_infer))  # noqa: B023 (called here)
                report = model_report(blob, fmt=fmt)
                out["models"].append(
                    {
                        "arch": label,
                        "file": name,
                        "format": fmt,
                        "precision": model_precision(name),
                        "bytes": len(blob),
                        "per_window": timings,
                        "ops": report.ops,
                        "ops_line": report.ops_line(),
                        "n_ops": report.n_ops,
                        "tensor_types": report.tensor_types,
                        "integer_only": report.integer_only,
                        "bundle": str(bundle_path),
                        "bundle_bytes": Path(bundle_path).stat().st_size,
                    }
                )
    wav = prepared["stream"]["wav"]
    out["rtf"] = []
    for label, arch in prepared["archs"].items():
        for fmt, bundle_path in arch["bundles"].items():
            for name in sorted(Bundle.load(bundle_path).models):
                log(
                    f"{label} {name}: streaming {prepared['stream']['summary']['duration_s'] / 60:.1f} min in a "
                    "device-only process"
                )
                out["rtf"].append({"arch": label, "format": fmt, **run_child(bundle_path, name, wav, args.chunk_ms)})
    return out


def targets(measured: dict[str, Any]) -> dict[str, Any]:
    """Which targets the int8 files meet (None where nothing was measured)."""
    int8 = [m for m in measured["models"] if m["precision"] == "int8"]
    rtf = [r for r in measured["rtf"] if "error" not in r and ".int8." in r["model"]]
    return {
        "int8_per_window_le_1ms": {m["file"]: m["per_window"]["median_ms"] <= TARGET_INT8_MS for m in int8},
        "rtf_le_0.05": {r["model"]: r["rtf_wall"] <= TARGET_RTF for r in rtf},
        "int8_model_le_64KB": {m["file"]: m["bytes"] <= TARGET_INT8_BYTES for m in int8},
        "device_process_imports_only_runtime": all(
            not r.get("non_device_modules_loaded") for r in measured["rtf"] if "error" not in r
        ),
    }


# Reporting -----------------------------------------------------------------------------------------
def _rtf_row(r: dict[str, Any]) -> list[str]:
    """One streamed model's row of the real-time-factor table (or its error)."""
    if "error" in r:
        return [r["model"], f"error: {r['error']}", *[""] * 5]
    hop = r["per_hop"] or {}
    return [
        f"{r['arch']} {r['model']}",
        f"{r['rtf_wall']:.4f}",
        f"{r['rtf_cpu']:.4f}",
        f"{hop.get('median_ms', float('nan')):.2f} / {hop.get('p90_ms', float('nan')):.2f} ms",
        f"{r['startup_s']:.2f} s",
        f"{r['peak_rss_mb']:.0f} MB",
        ", ".join(r["non_device_modules_loaded"]) or "none",
    ]


def markdown(result: dict[str, Any]) -> str:
    from kit.report.tables import (
        markdown_table,
    )  # lazy: the --rtf-child device process imports this module, so it loads the runtime only

    m = result["measured"]
    lines = [
        "# Latency benchmark: one CPU thread",
        "",
        f"`{result['command']}` — seed {result['config']['seed']}, {result['finished']}. Machine: "
        f"{result['machine']['cpu']}, "
        f"{result['machine']['cores']} cores shared with other work "
        f"(load average {result['load_average_start']} at start, "
        f"{result['load_average_end']} at the end): medians are the figure to read, p90 shows the contention.",
        "",
        f"Front-end per 1-s window ({m['front_end']['what']}): median {m['front_end']['median_ms']:.2f} ms, "
        f"p90 {m['front_end']['p90_ms']:.2f} ms.",
        "",
        markdown_table(
            ["model", "file", "bytes", "per-window median", "p90", "ops", "integer only"],
            [
                [
                    row["arch"],
                    row["file"],
                    f"{row['bytes']:,}",
                    f"{row['per_window']['median_ms']:.3f} ms",
                    f"{row['per_window']['p90_ms']:.3f} ms",
                    f"{row['n_ops']}: {row['ops_line']}",
                    "yes" if row["integer_only"] else "no",
                ]
                for row in m["models"]
            ],
        ),
    ]
    stream = result["stream"]
    lines += [
        "",
        f"Streaming through the device path (`StreamRecognizer`, {result['config']['chunk_ms']:g}-ms chunks, "
        f"hop {result['detector_hop_s']} s) over {stream['duration_s'] / 60:.1f} min of held-out audio, in a separate "
        "process importing only `deploy.runtime`:",
        "",
        markdown_table(
            ["model", "RTF (wall)", "RTF (CPU)", "per hop median / p90", "startup", "peak RSS", "non-device modules"],
            [_rtf_row(r) for r in m["rtf"]],
        ),
    ]
    t = result["targets"]

    def verdict(d: dict) -> str:
        return ", ".join(f"{k}: {'met' if v else 'MISSED'}" for k, v in d.items()) or "not measured"

    lines += [
        "",
        "Targets:",
        "",
        f"- int8 ≤ {TARGET_INT8_MS:g} ms per 1-s window (median): {verdict(t['int8_per_window_le_1ms'])}",
        f"- RTF ≤ {TARGET_RTF:g} (wall, whole device path incl. front-end): {verdict(t['rtf_le_0.05'])}",
        f"- int8 model ≤ 64 KB: {verdict(t['int8_model_le_64KB'])}",
        "- device process free of torch/kit/librosa/...: "
        f"{'yes' if t['device_process_imports_only_runtime'] else 'NO'}",
        "",
        # "dscnn" is in results written while DS-CNN was not in the model zoo yet
        f"Models: {result['models_note']}." + (f" DS-CNN: {result['dscnn']}." if "dscnn" in result else ""),
        "",
        "![latency](latency.png)",
    ]
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib  # lazy: matplotlib only when used

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: matplotlib only when used

    m = result["measured"]
    names = ["front-end"] + [f"{r['arch']} {r['file']}" for r in m["models"]]
    med = [m["front_end"]["median_ms"]] + [r["per_window"]["median_ms"] for r in m["models"]]
    p90 = [m["front_end"]["p90_ms"]] + [r["per_window"]["p90_ms"] for r in m["models"]]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    ypos = np.arange(len(names))
    ax.barh(
        ypos, med, color=["tab:grey"] + ["tab:orange" if r["precision"] == "int8" else "tab:blue" for r in m["models"]]
    )
    ax.errorbar(p90, ypos, fmt="k|", markersize=10, label="p90")
    ax.axvline(TARGET_INT8_MS, color="red", ls=":", lw=1, label=f"int8 target {TARGET_INT8_MS:g} ms")
    ax.set_yticks(ypos, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("ms per 1-s window, one thread (bar = median)")
    ax.legend(fontsize=7)
    rtf = [r for r in m["rtf"] if "error" not in r]
    ax2.barh(np.arange(len(rtf)), [r["rtf_wall"] for r in rtf], color="tab:green")
    ax2.set_yticks(np.arange(len(rtf)), [r["model"] for r in rtf], fontsize=8)
    ax2.invert_yaxis()
    ax2.axvline(TARGET_RTF, color="red", ls=":", lw=1, label=f"target {TARGET_RTF:g}")
    ax2.set_xlabel("real-time factor, device process (wall)")
    ax2.legend(fontsize=7)
    fig.suptitle("Keyword spotter latency on one CPU thread (shared 2-core machine)", fontsize=10)
    fig.tight_layout()
    from kit.report.plots import save_figure  # lazy: pulls in matplotlib

    save_figure(fig, path, dpi=130)


# Command line --------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR)
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument(
        "--model", default=None, help="a kws12 ConvNet model (.kit); default: bench.streaming's full-data model"
    )
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-infer", type=int, default=1000, help="timed single-window calls per model file")
    parser.add_argument("--n-front", type=int, default=300, help="timed front-end calls")
    parser.add_argument(
        "--stream-minutes", type=float, default=10.0, help="length of the stream for the real-time factor"
    )
    parser.add_argument("--chunk-ms", type=float, default=100.0, help="audio chunk fed per call (100 ms = one hop)")
    parser.add_argument("--rtf-child", nargs=4, metavar=("BUNDLE", "MODEL", "WAV", "CHUNK_MS"), help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.rtf_child:
        bundle, model, wav, chunk_ms = args.rtf_child
        print(json.dumps(rtf_child(bundle, model, wav, float(chunk_ms))))
        return 0

    from rich.console import Console  # lazy: the device-only process imports this module, so it loads the runtime only

    from bench.machine import (
        machine_info,
    )  # lazy: the device-only process imports this module, so it loads the runtime only
    from deploy.runtime.artifact import (
        atomic_write_text,
    )  # lazy: the device-only process imports this module, so it loads the runtime only
    from deploy.runtime.bundle import (
        Bundle,
    )  # lazy: the device-only process imports this module, so it loads the runtime only

    console = Console(stderr=True)
    started = time.perf_counter()
    load_start = [round(v, 2) for v in os.getloadavg()]

    def log(message: str) -> None:
        console.print(f"[bold][{(time.perf_counter() - started) / 60:5.1f} min][/bold] {message}")

    prepared = prepare(args, log)
    measured = measure(args, prepared, log)
    first_bundle = next(iter(next(iter(prepared["archs"].values()))["bundles"].values()))
    result = {
        "benchmark": "latency",
        "command": command_line("bench.latency", argv),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        "wall_s": round(time.perf_counter() - started, 1),
        "load_average_start": load_start,
        "load_average_end": [round(v, 2) for v in os.getloadavg()],
        "machine": machine_info(),
        "config": {
            "seed": args.seed,
            "width": args.width,
            "n_infer": args.n_infer,
            "n_front": args.n_front,
            "stream_minutes": args.stream_minutes,
            "chunk_ms": args.chunk_ms,
            "threads": 1,
            "data_dir": str(args.data_dir),
            "work_dir": str(args.work_dir),
            "model": args.model,
        },
        "detector_hop_s": Bundle.load(first_bundle).detector.hop_s,
        "models_note": "; ".join(
            f"{k}: {v['origin']}, {v['params']:,} parameters, kws12 clip accuracy "
            f"{v['accuracy'] if v['accuracy'] is None else round(100 * v['accuracy'], 1)} %"
            for k, v in prepared["archs"].items()
        ),
        "archs": {
            k: {
                **{kk: str(vv) if isinstance(vv, Path) else vv for kk, vv in v.items() if kk != "bundles"},
                "bundles": {f: str(p) for f, p in v["bundles"].items()},
            }
            for k, v in prepared["archs"].items()
        },
        "calibration_coreset": str(prepared["coreset"]),
        "stream": prepared["stream"]["summary"],
        "measured": measured,
    }
    result["targets"] = targets(measured)
    out = args.results_dir
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "latency.json", json.dumps(result, indent=1, default=str))
    atomic_write_text(out / "latency.md", markdown(result))
    plot(result, out / "latency.png")
    log(f"wrote {out / 'latency.json'}, latency.md, latency.png")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as exc:  # KitError -> one line; anything else keeps its traceback
        from deploy.runtime.errors import KitError

        if isinstance(exc, KitError):
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)
        raise
