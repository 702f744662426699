"""The firmware benchmark (issues 14 and 15): does the int8 keyword model fit an MCU, and does the MCU compute it?

Why one benchmark: the issue's targets (100 % bit-exact with TensorFlow Lite Micro, a model with int8
flash <= 64 KB, arena <= 32 KB and int8 accuracy within 1 point of fp32, <= 50 ms per inference on a
Cortex-M4F at 80 MHz with CMSIS-NN) are about one bundle seen from four sides, and each side alone
hides a miss another shows. For each bundle it records:

* per target profile (Cortex-M4F/M7/M33/M55 at their stated clocks, with and without CMSIS-NN;
  Ethos-U55/U65 through vela): flash, firmware_sim's planned arena, TFLM's recorded arena (and the
  difference), ms per inference from firmware_sim's cost model, the duty cycle at the bundle's hop
  and the budget verdict;
* accuracy on the real kws12 test split (speaker split): fp32 TFLite and int8 TFLite in LiteRT, and
  firmware_sim; the share of clips whose int8 outputs are bit-identical between firmware_sim and TFLM
  (and LiteRT BUILTIN_REF);
* the emulated Cortex-M4F (QEMU mps2-an386, ``-icount shift=0``): instructions per inference of the
  generated C firmware on real clips, ms at 80 MHz under a stated CPI, flash/RAM by arm-none-eabi-size
  against firmware_sim's estimate. Emulated instructions are not device time.

    python -m bench.firmware [--models B.kit ...] [--targets cortex-m4f ...] [--quick]

Writes ``<results-dir>/firmware.{json,md,png}`` (``--stem`` renames them).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bench.machine import machine_info
from bench.paths import DEFAULT_DATA_DIR, RESULTS_DIR
from deploy.runtime.artifact import atomic_write_text
from deploy.runtime.bundle import Bundle
from deploy.runtime.errors import KitError
from deploy.runtime.features import fix_length
from deploy.runtime.models import open_model
from firmware_sim import Interpreter, budget_for, check_budget, estimate, flash_bytes, load_model, plan_arena
from firmware_sim.c_emit import C_SOURCES
from firmware_sim.c_frontend import frontend_scratch_floats, frontend_source
from firmware_sim.c_lower import lower_model
from firmware_sim.c_project import write_project
from firmware_sim.c_run import pcm_bytes
from firmware_sim.cost import TARGETS, target_names
from firmware_sim.model import features_to_input
from firmware_sim.reference import TflmModel, compare, have_tflm, litert_ref_run, tflm_run
from kit.report.tables import markdown_table

DEFAULT_MODELS = ("runs/fwbench/kws12-convnet-mcu.bundle.kit", "runs/fwbench/kws12-dscnn-mcu.bundle.kit")
CPU_TARGETS = ("cortex-m4f", "cortex-m7", "cortex-m33", "cortex-m55")
NPU_TARGETS = ("ethos-u55", "ethos-u65")
#: The issue's targets.
MAX_FLASH_BYTES = 64 * 1024
MAX_ARENA_BYTES = 32 * 1024
MAX_ACCURACY_DROP = 0.01
MAX_M4F_MS = 50.0
ARENA_TOLERANCE_PCT = 10.0
#: Cycles per instruction assumed to turn emulated instructions into Cortex-M4F time: 1.0 is a lower
#: bound (every instruction single-cycle, no wait states); ~1.25 allows loads, multiplies and flash waits.
CPIS = (1.0, 1.25)
QEMU_CLOCK_MHZ = 80.0
FWSIM_BATCH = 64


def _progress() -> Any:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=True
    )


def load_test_split(config: Any, data_dir: str, limit: int | None, seed: int) -> tuple[list[Any], np.ndarray, Any]:
    """Raw features (N, C, F, T) of the kws12 test split's clips (all, or ``limit`` spread over classes)."""
    from kit.data import load_dataset  # lazy: pulls in soundfile
    from kit.features.extract import extract_clips  # lazy: pulls in soundfile

    dataset = load_dataset("speech_commands", data_dir, task="kws12")
    clips = dataset.clips_in("test")
    if limit is not None:
        order = np.random.default_rng(seed).permutation(len(clips))
        clips = [clips[i] for i in sorted(order[:limit])]
    features, kept = extract_clips(clips, config, progress=False)
    index = {name: i for i, name in enumerate(dataset.classes)}
    y = np.array([index[clips[i].label] for i in kept], dtype=np.int64)
    return (
        list(dataset.classes),
        y,
        {"features": features, "clips": [clips[i] for i in kept], "description": dataset.description},
    )


def _accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    return float((np.asarray(logits).reshape(len(y), -1).argmax(1) == y).mean())


def _tflite_logits(data: bytes, x: np.ndarray, label: str) -> np.ndarray:
    model = open_model(data, "tflite", label=label)
    return np.concatenate([model.run(x[i : i + 256])["logits"] for i in range(0, len(x), 256)])


def target_rows(
    model: Any, targets: list[str], hop_ms: float, tflm_arena: int | None, log: Any
) -> list[dict[str, Any]]:
    """One row per target (and CMSIS-NN on/off for the Cortex-M cores): flash, arena, ms, duty cycle, verdict."""
    plan = plan_arena(model)
    rows = []
    for target in targets:
        for cmsis in (True, False) if target in TARGETS else (None,):
            row: dict[str, Any] = {
                "target": target,
                "cmsis_nn": cmsis,
                "flatbuffer_bytes": model.flash_bytes,
                "flash_bytes": flash_bytes(model),
                "arena_planned_bytes": plan.total_bytes,
                "arena_head_bytes": plan.head_bytes,
                "arena_tflm_bytes": tflm_arena,
                "arena_diff_pct": (
                    None if not tflm_arena else round(100.0 * (plan.total_bytes - tflm_arena) / tflm_arena, 2)
                ),
            }
            try:
                cost = estimate(model, target, cmsis_nn=bool(cmsis))
            except KitError as exc:  # vela missing or refusing the model: say so in the row
                rows.append({**row, "error": str(exc)})
                log(f"  {target}: {exc}")
                continue
            budget = budget_for(
                target,
                hop_ms,
                flash_bytes=None if target in TARGETS else 1 << 30,
                sram_bytes=None if target in TARGETS else 1 << 30,
            )
            verdict = check_budget(model, budget, cmsis_nn=bool(cmsis), cost=cost)
            row.update(
                {
                    "clock_mhz": cost.clock_mhz,
                    "cost_source": cost.source,
                    "macs": cost.macs,
                    "cycles": cost.cycles,
                    "ms": round(cost.ms, 3),
                    "hop_ms": hop_ms,
                    "duty_cycle": round(cost.duty_cycle(hop_ms), 4),
                    "npu_cpu_ops": cost.cpu_ops,
                    "fits": verdict.fits,
                    "verdict": verdict.line,
                }
            )
            rows.append(row)
    return rows


def accuracy_block(bundle: Any, name: str, model: Any, x: np.ndarray, y: np.ndarray, log: Any) -> dict[str, Any]:
    """fp32 / int8 LiteRT / firmware_sim accuracy and bit-exactness against TFLM and LiteRT BUILTIN_REF."""
    out: dict[str, Any] = {"n_clips": int(len(y))}
    fp32_member = next((m for m in bundle.models if m.endswith(".tflite") and "int8" not in m), None)
    int8_member = next(m for m in bundle.models if m == model.name.split(":")[-1])
    started = time.perf_counter()
    if fp32_member is not None:
        out["fp32_model"] = fp32_member
        out["fp32_accuracy"] = _accuracy(_tflite_logits(bundle.models[fp32_member], x, f"{name}:{fp32_member}"), y)
    out["fp32_seconds"] = round(time.perf_counter() - started, 2)
    started = time.perf_counter()
    out["int8_litert_accuracy"] = _accuracy(_tflite_logits(bundle.models[int8_member], x, f"{name}:{int8_member}"), y)
    out["int8_litert_seconds"] = round(time.perf_counter() - started, 2)
    interpreter = Interpreter(model)
    q = interpreter.quantize_input(features_to_input(model, x))
    started = time.perf_counter()
    parts: dict[str, list[np.ndarray]] = {k: [] for k in interpreter.output_names}
    with _progress() as bar:
        task = bar.add_task(f"{name}: firmware_sim", total=len(q))
        for i in range(0, len(q), FWSIM_BATCH):
            for k, v in interpreter.run(q[i : i + FWSIM_BATCH]).items():
                parts[k].append(v)
            bar.advance(task, len(q[i : i + FWSIM_BATCH]))
    ours = {k: np.concatenate(v) for k, v in parts.items()}
    out["fwsim_seconds"] = round(time.perf_counter() - started, 2)
    out["fwsim_accuracy"] = _accuracy(ours["logits"], y)
    log(
        f"  {name}: fp32 {out.get('fp32_accuracy')}, int8 LiteRT {out['int8_litert_accuracy']:.4f}, "
        f"firmware_sim {out['fwsim_accuracy']:.4f} ({out['fwsim_seconds']} s for {len(q)} clips)"
    )
    if have_tflm():
        started = time.perf_counter()
        tflm = tflm_run(model, q)
        out["tflm_seconds"] = round(time.perf_counter() - started, 2)
        out["tflm_accuracy"] = _accuracy(tflm["logits"], y)
        out["vs_tflm"] = compare(ours, tflm)
    else:
        out["vs_tflm"] = None
        out["tflm_note"] = "tflite-micro is not installed: no TFLM comparison"
    started = time.perf_counter()
    ref = litert_ref_run(model, q)
    out["vs_litert_ref"] = compare(ours, ref)
    # per output: which tensor differs (a known 1-LSB tie rounding in BUILTIN_REF's FULLY_CONNECTED shows on logits)
    out["vs_litert_ref_by_output"] = {k: compare({k: v}, {k: ref[k]}) for k, v in ours.items()}
    out["litert_ref_seconds"] = round(time.perf_counter() - started, 2)
    log(f"  {name}: bit-identical with TFLM {out['vs_tflm']}, with LiteRT BUILTIN_REF {out['vs_litert_ref']}")
    out["_q"] = q
    out["_ours"] = ours
    return out


def emulated_m4f(
    bundle_path: Path,
    model_name: str,
    q: np.ndarray,
    expected: dict[str, np.ndarray],
    audio: np.ndarray,
    work: Path,
    log: Any,
) -> dict[str, Any]:
    """Build the C firmware for the emulated Cortex-M4F, run real clips, count instructions per inference."""
    from firmware_sim.c_run import (
        ARM_PACKAGES,
        feature_input_bytes,
        pcm_bytes,
        run,
        section_sizes,
    )  # lazy: name clash (run is bound elsewhere in the module too)

    missing = [t for t in ("make", "arm-none-eabi-gcc", "arm-none-eabi-size", "qemu-system-arm") if not shutil.which(t)]
    if missing:
        return {"skipped": f"{', '.join(missing)} not found (Debian packages {ARM_PACKAGES}); column not measured"}
    try:
        project = write_project(bundle_path, "cortex-m4f", work / f"{model_name}-cortex-m4f")
        sizes = section_sizes(project)
        record = json.loads((project / "firmware.json").read_text())
        started = time.perf_counter()
        feats = run(project, feature_input_bytes(q))
        wall_feats = time.perf_counter() - started
        started = time.perf_counter()
        stream = run(project, pcm_bytes(audio))
        wall_stream = time.perf_counter() - started
    except KitError as exc:
        log(f"  {model_name}: emulated Cortex-M4F failed: {exc}")
        return {"skipped": f"firmware build/run failed: {exc}"}
    logits = np.array(feats.logits).reshape(len(q), -1)
    same = int((logits == expected["logits"].reshape(len(q), -1)).all(1).sum())
    model_instr = feats.model_cost
    frontend_instr = stream.frontend_cost
    result = {
        "clips": int(len(q)),
        "logits_identical_to_fwsim": same,
        "model_instructions": model_instr,
        "stream_model_instructions": stream.model_cost,
        "frontend_instructions": frontend_instr,
        "stream_seconds": round(len(audio) / 16000, 2),
        "stream_windows": _windows(stream.cost_note, stream.lines),
        "cost_note": feats.cost_note,
        "sizes": sizes,
        "estimate": record["estimate"],
        "memory": record["memory"],
        "arena_bytes": record["arena_bytes"],
        "clock_mhz": QEMU_CLOCK_MHZ,
        "ms_at_cpi": {
            f"{cpi:g}": {"model": _ms(model_instr, cpi), "frontend": _ms(frontend_instr, cpi)} for cpi in CPIS
        },
        "emulator_wall_seconds": round(wall_feats + wall_stream, 2),
    }
    log(
        f"  {model_name}: emulated Cortex-M4F: {model_instr:,} instructions (model), {frontend_instr} (front-end); "
        f"{same}/{len(q)} logits identical to firmware_sim; flash {sizes['flash']:,} B, "
        f"static RAM {sizes['static_ram']:,} B"
    )
    return result


def _ms(instructions: int | None, cpi: float) -> float | None:
    """Instructions at ``cpi`` cycles each on the 80 MHz Cortex-M4F, in ms (None when not measured)."""
    return round(instructions * cpi / (QEMU_CLOCK_MHZ * 1e3), 3) if instructions else None


def _windows(note: str, lines: list[str]) -> int | None:
    for line in lines:
        if line.startswith("per inference:") and " over " in line:
            return int(line.split(" over ")[1].split()[0])
    return None


def _stream_audio(meta: dict[str, Any], y: np.ndarray, n: int) -> np.ndarray:
    """``n`` real test keyword clips back to back at 16 kHz: the PCM the firmware's stream loop hears."""
    from kit.audio import load_audio  # lazy: pulls in soundfile

    chosen = np.argsort(y, kind="stable")[::-1][:n]  # the last classes are keywords (the first are silence/unknown)
    parts = [
        fix_length(
            load_audio(meta["clips"][i].path, 16000, meta["clips"][i].offset_s, meta["clips"][i].duration_s), 16000
        )
        for i in sorted(chosen)
    ]
    return np.concatenate(parts).astype(np.float32)


FRONTEND_DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include "kws_frontend.h"
extern const kws_frontend_config kws_frontend_config_data;
int main(int argc, char **argv) {
  const kws_frontend_config *c = &kws_frontend_config_data;
  const int total = c->channels * c->coeffs * c->n_frames;
  int16_t *ring = calloc(c->n_samples, 2);
  float *scratch = calloc(atoi(argv[1]), sizeof(float));
  int8_t *out = calloc(total, 1);
  int count = 0;
  if (fread(&count, 4, 1, stdin) != 1) return 1;
  for (int i = 0; i < count; i++) {
    if (fread(ring, 2, c->n_samples, stdin) != (size_t)c->n_samples) return 1;
    kws_frontend_run(c, ring, 0, scratch, out);
    fwrite(out, 1, total, stdout);
  }
  return 0;
}
"""


def mcu_frontend(
    bundle_path: Path, bundle: Any, meta: dict[str, Any], y: np.ndarray, q_python: np.ndarray, work: Path, log: Any
) -> dict[str, Any]:
    """The firmware's C front-end (kws_frontend.c, host build) on every test clip, then firmware_sim on its output.

    Why: the model was trained on the Python front-end; the MCU computes its input in float32 C. This measures
    what that costs in accuracy on the real test split (issue 14 d), against the same int8 model on the
    Python front-end's input.
    """
    from kit.audio import load_audio  # lazy: pulls in soundfile

    if shutil.which("cc") is None:
        return {"skipped": "no host C compiler (cc); not measured"}
    config = bundle.feature_config
    lowered = lower_model(bundle, str(bundle_path))
    folder = work / "frontend"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data.c").write_text(
        frontend_source(
            config,
            bundle.normalizer,
            lowered.input_scale,
            lowered.input_zero_point,
            lowered.input_axes,
            str(bundle_path),
        )
    )
    (folder / "driver.c").write_text(FRONTEND_DRIVER)
    binary = folder / "frontend"
    subprocess.run(
        [
            "cc",
            "-std=c99",
            "-O2",
            "-I",
            str(C_SOURCES),
            "-o",
            str(binary),
            str(folder / "driver.c"),
            str(C_SOURCES / "kws_frontend.c"),
            str(folder / "data.c"),
            "-lm",
        ],
        check=True,
    )
    clips = meta["clips"]
    pcm = b"".join(
        pcm_bytes(fix_length(load_audio(c.path, config.sample_rate, c.offset_s, c.duration_s), config.n_samples))
        for c in clips
    )
    started = time.perf_counter()
    done = subprocess.run(
        [str(binary), str(frontend_scratch_floats(config))],
        input=np.int32(len(clips)).tobytes() + pcm,
        capture_output=True,
        check=True,
    )
    seconds = time.perf_counter() - started
    q_c = np.frombuffer(done.stdout, np.int8).reshape(q_python.shape)
    model = load_model(bundle_path).require_int8()
    interpreter = Interpreter(model)
    logits_c = interpreter.run(q_c)["logits"].reshape(len(y), -1)
    logits_py = interpreter.run(q_python)["logits"].reshape(len(y), -1)
    diff = np.abs(q_c.astype(int) - q_python.astype(int))
    out = {
        "clips": int(len(y)),
        "build": "host cc -std=c99 -O2 (x86-64), float32",
        "input_values_equal": float((diff == 0).mean()),
        "input_max_lsb_diff": int(diff.max()),
        "clips_input_identical": int((diff.reshape(len(y), -1).max(1) == 0).sum()),
        "accuracy_python_frontend": _accuracy(logits_py, y),
        "accuracy_c_frontend": _accuracy(logits_c, y),
        "top1_agreement": float((logits_c.argmax(1) == logits_py.argmax(1)).mean()),
        "seconds": round(seconds, 2),
    }
    log(f"  MCU front-end: {out}")
    return out


def targets_met(models: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each met or not with the number measured."""
    out = []
    for name, m in models.items():
        acc = m["accuracy"]
        ident = acc["vs_tflm"]
        if ident is not None:
            out.append(
                {
                    "target": "firmware_sim bit-exact with TFLM on every test clip",
                    "model": name,
                    "measured": f"{ident['identical']}/{ident['clips']} clips "
                    f"({100 * ident['identical'] / ident['clips']:.1f} %)",
                    "met": ident["identical"] == ident["clips"],
                }
            )
        row = next((r for r in m["targets"] if r["target"] == "cortex-m4f" and r["cmsis_nn"] is True), None)
        # the MCU's int8 accuracy is firmware_sim's (= TFLM's when bit-exact); LiteRT's default kernels round
        # differently
        drop = acc["fp32_accuracy"] - acc["fwsim_accuracy"] if "fp32_accuracy" in acc else None
        litert_drop = acc["fp32_accuracy"] - acc["int8_litert_accuracy"] if "fp32_accuracy" in acc else None
        flash_ok = m["flatbuffer_bytes"] <= MAX_FLASH_BYTES
        arena_ok = m["arena_planned_bytes"] <= MAX_ARENA_BYTES
        out.append(
            {
                "target": "int8 flash <= 64 KB, arena <= 32 KB, int8 accuracy within 1 point of fp32",
                "model": name,
                "measured": (
                    f"flatbuffer {m['flatbuffer_bytes'] / 1024:.1f} KB (with firmware_sim's code "
                    f"estimate {m['targets'][0]['flash_bytes'] / 1024:.1f} KB), arena "
                    f"{m['arena_planned_bytes'] / 1024:.1f} KB, drop "
                    + (
                        f"{100 * drop:.1f} points (firmware_sim/TFLM; int8 LiteRT {100 * litert_drop:.1f})"
                        if drop is not None and litert_drop is not None
                        else "n/a"
                    )
                ),
                "met": bool(flash_ok and arena_ok and drop is not None and drop <= MAX_ACCURACY_DROP),
            }
        )
        if row is not None and "ms" in row:
            out.append(
                {
                    "target": "<= 50 ms per inference, Cortex-M4F @ 80 MHz, CMSIS-NN (cost model)",
                    "model": name,
                    "measured": f"{row['ms']:.1f} ms",
                    "met": row["ms"] <= MAX_M4F_MS,
                }
            )
        arena = m["arena_diff_pct"]
        if arena is not None:
            out.append(
                {
                    "target": "planned arena within 10 % of TFLM's recorded arena",
                    "model": name,
                    "measured": f"{arena:+.1f} %",
                    "met": abs(arena) <= ARENA_TOLERANCE_PCT,
                }
            )
    return out


def run(args: argparse.Namespace, log: Any) -> dict[str, Any]:
    started = time.time()
    models: dict[str, Any] = {}
    cache: dict[str, Any] = {}
    work = Path(tempfile.mkdtemp(prefix="fwbench-"))
    try:
        for path in args.models:
            path = Path(path)
            name = path.name.removesuffix(".kit").removesuffix(".bundle")
            bundle = Bundle.load(path)
            model = load_model(path).require_int8()
            hop_ms = round(bundle.detector.hop_s * 1000, 3)
            tflm_arena = TflmModel(model).arena_bytes() if have_tflm() else None
            log(f"{name}: {model.name}, hop {hop_ms} ms, TFLM arena {tflm_arena}")
            rows = target_rows(model, args.targets, hop_ms, tflm_arena, log)
            key = bundle.feature_config.fingerprint()
            if key not in cache:
                t = time.perf_counter()
                cache[key] = load_test_split(bundle.feature_config, args.data_dir, args.clips, args.seed)
                log(f"test split: {len(cache[key][1])} clips, features in {time.perf_counter() - t:.1f} s")
            classes, y, meta = cache[key]
            if list(classes) != list(bundle.classes):
                raise SystemExit(f"{path}: classes {bundle.classes} are not the kws12 test split's {classes}")
            x = bundle.normalizer.transform(meta["features"]).astype(np.float32)
            acc = accuracy_block(bundle, name, model, x, y, log)
            q, ours = acc.pop("_q"), acc.pop("_ours")
            frontend = (
                mcu_frontend(path, bundle, meta, y, q, work, log) if args.frontend else {"skipped": "--no-frontend"}
            )
            emulated: dict[str, Any] = {"skipped": "not run (--quick or --qemu-clips 0)"}
            if args.qemu_clips > 0:
                pick = np.arange(min(args.qemu_clips, len(q)))
                audio = _stream_audio(meta, y, args.stream_clips)
                emulated = emulated_m4f(path, name, q[pick], {k: v[pick] for k, v in ours.items()}, audio, work, log)
            models[name] = {
                "bundle": str(path),
                "member": model.name,
                "hop_ms": hop_ms,
                "ops": model.op_counts(),
                "flatbuffer_bytes": model.flash_bytes,
                "arena_planned_bytes": rows[0]["arena_planned_bytes"],
                "arena_tflm_bytes": tflm_arena,
                "arena_diff_pct": rows[0]["arena_diff_pct"],
                "targets": rows,
                "accuracy": acc,
                "mcu_frontend": frontend,
                "emulated_m4f": emulated,
            }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    description = next(iter(cache.values()))[2]["description"] if cache else ""
    return {
        "kind": "firmware",
        "models": models,
        "test_split": description,
        "issue_targets": targets_met(models),
        "seconds": round(time.time() - started, 1),
    }


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}"


def _ident(d: dict[str, Any] | None) -> str:
    if not d:
        return "n/a"
    return f"{d['identical']}/{d['clips']} ({100 * d['identical'] / d['clips']:.1f} %, max {d['max_lsb_diff']} LSB)"


def markdown(result: dict[str, Any], png: str = "firmware.png") -> str:
    cfg = result["config"]
    lines = [
        "# Firmware benchmark: the kws12 int8 models on microcontrollers (issues 14, 15)",
        "",
        f"`{result['command']}` — seed {cfg['seed']}, {result['finished']}, {result['seconds']} s. Machine: "
        f"{result['machine']['cpu']}, {result['machine']['cores']} cores shared with other work.",
        "",
        f"Test split: {result['test_split'] or 'kws12'}.",
        "",
        "Bundles: "
        + "; ".join(
            f"`{m['bundle']}` ({m['member'].split(':')[-1]}, hop {m['hop_ms']:g} ms)" for m in result["models"].values()
        )
        + ". The flash target is judged on the int8 "
        "flatbuffer (the model); firmware_sim's code-size estimate and the built firmware's size are shown beside it.",
        "",
        "## Issue targets",
        "",
        markdown_table(
            ["target", "model", "measured", "met"],
            [
                [t["target"], t["model"], t["measured"], "met" if t["met"] else "NOT met"]
                for t in result["issue_targets"]
            ],
        ),
        "",
        "## Per target (firmware_sim; ms are cost-model estimates, not measurements)",
        "",
        "Flash = int8 flatbuffer + firmware_sim's code-size estimate. Arena: firmware_sim's plan vs TensorFlow Lite "
        "Micro's recorded arena (64-bit host). Duty cycle = ms per inference / the bundle's hop. Ethos-U rows: vela's "
        "default system configuration; flash and SRAM are not judged for them.",
        "",
    ]
    rows = []
    for name, m in result["models"].items():
        for r in m["targets"]:
            kernels = "CMSIS-NN" if r["cmsis_nn"] else ("reference" if r["cmsis_nn"] is False else "NPU (vela)")
            if "error" in r:
                rows.append(
                    [
                        name,
                        r["target"],
                        kernels,
                        r["flash_bytes"],
                        r["arena_planned_bytes"],
                        r["arena_tflm_bytes"] or "n/a",
                        "",
                        "",
                        "",
                        r["error"],
                    ]
                )
                continue
            rows.append(
                [
                    name,
                    r["target"],
                    kernels,
                    r["flash_bytes"],
                    r["arena_planned_bytes"],
                    r["arena_tflm_bytes"] or "n/a",
                    "n/a" if r["arena_diff_pct"] is None else f"{r['arena_diff_pct']:+.1f} %",
                    f"{r['ms']:.2f} @ {r['clock_mhz']:g} MHz",
                    f"{100 * r['duty_cycle']:.1f} % of {r['hop_ms']:g} ms",
                    ("fits" if r["fits"] else "does NOT fit")
                    + (f" ({r['npu_cpu_ops']} op(s) left on the CPU, not timed)" if r.get("npu_cpu_ops") else ""),
                ]
            )
    lines += [
        markdown_table(
            [
                "model",
                "target",
                "kernels",
                "flash (B)",
                "arena plan (B)",
                "arena TFLM (B)",
                "arena diff",
                "ms / inference",
                "duty cycle",
                "budget verdict",
            ],
            rows,
        ),
        "",
    ]
    lines += [
        "## Accuracy on the test split and bit-exactness",
        "",
        "Argmax of the int8 model's own `logits` output. fp32: the bundle's fp32 TFLite in LiteRT; int8 "
        "LiteRT: the int8 TFLite in LiteRT's default kernels; firmware_sim: this kit's integer interpreter. "
        "Bit-identical: every int8 output vector (logits and embedding) equal byte for byte.",
        "",
    ]
    lines += [
        markdown_table(
            [
                "model",
                "clips",
                "fp32 (%)",
                "int8 LiteRT (%)",
                "firmware_sim (%)",
                "TFLM (%)",
                "int8 LiteRT drop (points)",
                "fwsim = TFLM",
                "fwsim = LiteRT BUILTIN_REF",
            ],
            [
                [
                    name,
                    m["accuracy"]["n_clips"],
                    _pct(m["accuracy"].get("fp32_accuracy")),
                    _pct(m["accuracy"]["int8_litert_accuracy"]),
                    _pct(m["accuracy"]["fwsim_accuracy"]),
                    _pct(m["accuracy"].get("tflm_accuracy")),
                    (
                        "n/a"
                        if "fp32_accuracy" not in m["accuracy"]
                        else f"{100 * (m['accuracy']['fp32_accuracy'] - m['accuracy']['int8_litert_accuracy']):.1f}"
                    ),
                    _ident(m["accuracy"]["vs_tflm"]),
                    _ident(m["accuracy"]["vs_litert_ref"]),
                ]
                for name, m in result["models"].items()
            ],
        ),
        "",
    ]
    by_output = [
        f"{name}: {k} {_ident(d)}"
        for name, m in result["models"].items()
        for k, d in (m["accuracy"].get("vs_litert_ref_by_output") or {}).items()
    ]
    if by_output:
        lines += ["firmware_sim = LiteRT BUILTIN_REF per output tensor: " + "; ".join(by_output) + ".", ""]
    lines += [
        "## The firmware's C front-end on the test split (issue 14 d)",
        "",
        "Each test clip (cropped/padded to the window as the Python front-end does, 16-bit PCM) through the "
        "firmware's float32 C front-end (`kws_frontend.c`, built for the host), then the same int8 model in "
        "firmware_sim; compared with the model on the Python (training) front-end's input. A Cortex-M4F "
        "build may contract multiply-adds into FMAs, so its float32 rounding can differ slightly.",
        "",
    ]
    rows = []
    for name, m in result["models"].items():
        f = m.get("mcu_frontend") or {"skipped": "not measured"}
        if "skipped" in f:
            rows.append([name, "skipped: " + f["skipped"], "", "", "", "", ""])
            continue
        rows.append(
            [
                name,
                f["clips"],
                f"{100 * f['input_values_equal']:.3f} % (max {f['input_max_lsb_diff']} LSB)",
                f"{f['clips_input_identical']}/{f['clips']}",
                _pct(f["accuracy_python_frontend"]),
                _pct(f["accuracy_c_frontend"]),
                f"{100 * (f['accuracy_c_frontend'] - f['accuracy_python_frontend']):+.1f}",
                f"{100 * f['top1_agreement']:.1f} %",
            ]
        )
    lines += [
        markdown_table(
            [
                "model",
                "clips",
                "int8 input values equal",
                "clips with identical input",
                "accuracy, Python front-end (%)",
                "accuracy, C front-end (%)",
                "difference (points)",
                "top-1 agreement",
            ],
            rows,
        ),
        "",
    ]
    lines += [
        "## Emulated Cortex-M4F (QEMU mps2-an386, `-icount shift=0`)",
        "",
        "The generated C firmware (portable C99 kernels, no CMSIS-NN) compiled with arm-none-eabi-gcc -O2 and "
        "run on QEMU. QEMU counts instructions; it does not model cycles, so ms = instructions x CPI / 80 MHz "
        "under a stated CPI: 1.0 is a lower bound (single-cycle instructions, no flash wait states), 1.25 a "
        "plausible Cortex-M4F figure. Emulator wall-clock time is not device time. Model instructions: int8 "
        "inputs fed directly (KWSF mode); front-end instructions: a stream of real clips.",
        "",
    ]
    rows = []
    for name, m in result["models"].items():
        e = m["emulated_m4f"]
        if "skipped" in e:
            rows.append([name, "skipped: " + e["skipped"], "", "", "", "", "", ""])
            continue
        ms = e["ms_at_cpi"]
        rows.append(
            [
                name,
                f"{e['logits_identical_to_fwsim']}/{e['clips']}",
                f"{e['model_instructions']:,}",
                f"{e['frontend_instructions']:,}" if e["frontend_instructions"] else "n/a",
                " / ".join(f"{ms[c]['model']:.1f}" for c in ms),
                " / ".join(f"{ms[c]['frontend']:.1f}" if ms[c]["frontend"] else "n/a" for c in ms),
                f"{e['sizes']['flash']:,} (est. {e['estimate']['flash']:,})",
                f"{e['sizes']['static_ram']:,} (est. {e['estimate']['static_ram']:,})",
            ]
        )
    cpis = " / ".join(f"CPI {c:g}" for c in CPIS)
    lines += [
        markdown_table(
            [
                "model",
                "logits = firmware_sim",
                "instructions / inference (model)",
                "instructions (front-end)",
                f"model ms ({cpis})",
                f"front-end ms ({cpis})",
                "flash B (arm-none-eabi-size)",
                "static RAM B",
            ],
            rows,
        ),
        "",
    ]
    lines += [f"![firmware]({png})", ""]
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib  # lazy: matplotlib only when used

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: matplotlib only when used

    names = list(result["models"])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [2, 1]})
    labels: list[str] = []
    for k, name in enumerate(names):
        rows = [r for r in result["models"][name]["targets"] if "ms" in r]
        labels = [
            r["target"] + ("" if r["cmsis_nn"] is None else (" cmsis" if r["cmsis_nn"] else " ref")) for r in rows
        ]
        pos = np.arange(len(rows)) + k * 0.8 / max(len(names), 1)
        ax1.bar(pos, [r["ms"] for r in rows], width=0.8 / max(len(names), 1), label=name)
        em = result["models"][name]["emulated_m4f"]
        if "ms_at_cpi" in em:
            ax1.scatter(
                [pos[0]],
                [em["ms_at_cpi"]["1"]["model"]],
                marker="x",
                color="k",
                zorder=3,
                label="QEMU M4F, CPI 1 (portable C)" if k == 0 else None,
            )
    ax1.axhline(MAX_M4F_MS, color="r", ls="--", lw=1, label="50 ms target")
    ax1.set_xticks(np.arange(len(labels)) + 0.4 * (len(names) - 1) / max(len(names), 1))
    ax1.set_xticklabels(labels, rotation=45, ha="right", fontsize=7)
    ax1.set_yscale("log")
    ax1.set_ylabel("ms per inference (estimate)")
    ax1.legend(fontsize=7)
    kinds = [("fp32_accuracy", "fp32"), ("int8_litert_accuracy", "int8 LiteRT"), ("fwsim_accuracy", "firmware_sim")]
    for j, (key, label) in enumerate(kinds):
        vals = [100 * result["models"][n]["accuracy"].get(key, np.nan) for n in names]
        ax2.bar(np.arange(len(names)) + j * 0.27, vals, width=0.27, label=label)
    ax2.set_xticks(np.arange(len(names)) + 0.27)
    ax2.set_xticklabels(names, fontsize=7)
    lo = min(100 * result["models"][n]["accuracy"].get(k, 1.0) for n in names for k, _ in kinds)
    ax2.set_ylim(max(0.0, lo - 10), 100)
    ax2.set_ylabel(f"test accuracy (%), {next(iter(result['models'].values()))['accuracy']['n_clips']} clips")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.firmware", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models",
        nargs="+",
        default=list(DEFAULT_MODELS),
        help="kit bundles with an int8 TFLite model (kit bundle --int8 -f tflite)",
    )
    parser.add_argument(
        "--targets", nargs="+", default=None, help="target profiles (default: all Cortex-M and Ethos-U)"
    )
    parser.add_argument("--quick", action="store_true", help="20 clips, cortex-m4f only, no QEMU")
    parser.add_argument("--clips", type=int, default=None, help="test clips (default: the whole split)")
    parser.add_argument("--qemu-clips", type=int, default=8, help="real clips fed to the emulated board (0: none)")
    parser.add_argument("--stream-clips", type=int, default=3, help="real clips streamed for the front-end cost")
    parser.add_argument(
        "--no-frontend", dest="frontend", action="store_false", help="skip the firmware's C front-end accuracy row"
    )
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--stem", default="firmware", help="names the results: <stem>.{json,md,png}")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.quick:
        args.clips, args.qemu_clips = args.clips or 20, 0
        args.targets = args.targets or ["cortex-m4f"]
    args.targets = args.targets or [*CPU_TARGETS, *NPU_TARGETS]
    unknown = [t for t in args.targets if t not in target_names()]
    if unknown:
        print(
            f"error: --targets: unknown target '{unknown[0]}' (choose from {', '.join(target_names())})",
            file=sys.stderr,
        )
        return 2
    missing = [m for m in args.models if not Path(m).is_file()]
    if missing:
        print(
            f"error: --models: {missing[0]}: no such bundle (make one with kit bundle MODEL -c CORESET -f tflite "
            "--int8)",
            file=sys.stderr,
        )
        return 2

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    try:
        result = run(args, log)
    except KitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result = {
        "command": " ".join(["python -m bench.firmware", *argv]),
        "finished": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "config": {
            "models": [str(m) for m in args.models],
            "targets": args.targets,
            "clips": args.clips,
            "qemu_clips": args.qemu_clips,
            "stream_clips": args.stream_clips,
            "seed": args.seed,
            "data_dir": str(args.data_dir),
            "cpis": list(CPIS),
        },
        "machine": machine_info(),
        **result,
    }
    out = args.results_dir
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / f"{args.stem}.json", json.dumps(result, indent=1, default=str) + "\n")
    atomic_write_text(out / f"{args.stem}.md", markdown(result, f"{args.stem}.png"))
    plot(result, out / f"{args.stem}.png")
    log(f"wrote {out / args.stem}.json, .md, .png")
    print(markdown(result, f"{args.stem}.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
