"""``kit firmware report|check|stream|build|run``: a bundle's int8 model as a microcontroller runs it.

Why in the kit: a bundle says what the model computes; a firmware engineer needs to know whether it
fits their part and what the MCU will compute. ``report`` gives firmware_sim's per-layer table,
flash, arena, cycles and the verdict against a target; ``check`` compares firmware_sim with TensorFlow
Lite Micro on real clips; ``stream`` runs the device's detector over firmware_sim; ``build`` writes
the C project a firmware engineer flashes (``firmware_sim.c_project``) and ``run`` compiles it and
streams a WAV through it, on the host or on QEMU's emulated Cortex-M4F board (emulated instructions
are not device time). ``python -m firmware_sim`` offers report and check without the kit.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from deploy.runtime.errors import KitError
from deploy.runtime.features import resample
from deploy.runtime.wavio import read_wav
from firmware_sim.budget import budget_for
from firmware_sim.c_project import FIRMWARE_TARGETS, write_project
from firmware_sim.c_run import build, pcm_bytes, run, section_sizes, target_of
from firmware_sim.cli import clip_features, print_report
from firmware_sim.cost import TARGETS, estimate, target_names
from firmware_sim.interpreter import Interpreter
from firmware_sim.model import features_to_input, load_model
from firmware_sim.reference import compare, have_tflm, tflm_run
from firmware_sim.report import report
from firmware_sim.stream import simulate_stream

firmware_app = typer.Typer(
    help="C firmware for a bundle: build it for a target, run it on the host or an emulated board.",
    no_args_is_help=True,
)


@firmware_app.command("report")
def report_command(
    model: Path = typer.Argument(..., metavar="BUNDLE", help="Bundle (.kit) or int8 .tflite file."),
    target: str = typer.Option("cortex-m4f", "--target", help=f"One of {', '.join(target_names())}."),
    hop_ms: float = typer.Option(100.0, "--hop-ms", help="One inference per hop (ms): the time budget."),
    flash_kb: float | None = typer.Option(None, "--flash-kb", help="Flash budget (default: the target part's)."),
    sram_kb: float | None = typer.Option(None, "--sram-kb", help="SRAM budget for the arena (default: the part's)."),
    cmsis_nn: bool = typer.Option(True, "--cmsis-nn/--no-cmsis-nn", help="CMSIS-NN kernels or TFLM's reference ones."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of the table."),
) -> None:
    """Per-layer table, flash, arena, cycles and ms per inference, and the verdict against the target."""
    if target not in target_names():
        raise KitError(f"--target: unknown target '{target}' (choose from {', '.join(target_names())})")
    parsed = load_model(model).require_int8()
    budget = budget_for(
        target,
        hop_ms,
        flash_bytes=None if flash_kb is None else int(flash_kb * 1024),
        sram_bytes=None if sram_kb is None else int(sram_kb * 1024),
    )
    rep = report(parsed, target, budget, cmsis_nn=cmsis_nn)
    if as_json:
        print(json.dumps(rep, indent=1, default=str))
    else:
        print_report(rep)
    if not rep["fits"]:
        raise typer.Exit(1)


@firmware_app.command("check")
def check_command(
    model: Path = typer.Argument(..., metavar="BUNDLE", help="Bundle (.kit) or int8 .tflite file."),
    clips: list[Path] = typer.Argument(..., metavar="CLIPS...", help="WAV files, folders of WAVs, or .npy features."),
) -> None:
    """Run real clips through firmware_sim and TensorFlow Lite Micro and count bit-identical outputs."""
    parsed = load_model(model)
    interpreter = Interpreter(parsed)
    x = interpreter.quantize_input(features_to_input(parsed, clip_features(parsed, [str(c) for c in clips])))
    ours = interpreter.run(x)
    print(f"firmware_sim ran {len(x)} clips")
    if not have_tflm():
        print("tflite-micro is not installed: no TFLM comparison (pip install 'audio-distill-kit[mcu]')")
        return
    result = compare(ours, tflm_run(parsed, x))
    print(
        f"bit-identical with TensorFlow Lite Micro: {result['identical']}/{result['clips']} clips "
        f"(largest difference {result['max_lsb_diff']} LSB)"
    )
    if result["identical"] != result["clips"]:
        raise typer.Exit(1)


@firmware_app.command("stream")
def stream_command(
    bundle: Path = typer.Argument(..., metavar="BUNDLE", help="Bundle (.kit) with an int8 TFLite model."),
    input_wav: Path = typer.Option(..., "--input", "-i", help="WAV file to stream."),
) -> None:
    """The device's streaming detector with firmware_sim computing the int8 model: what the MCU would report."""
    y, rate = read_wav(input_wav)
    detections, scores = simulate_stream(bundle, y, rate)
    for d in detections:
        print(f"t={d.time_s:.2f}s {d.label} {d.score:.2f}")
    print(f"listened to {len(y) / rate:.2f} s: {len(scores.times)} windows, {len(detections)} detection(s)")


@firmware_app.command("build")
def build_command(
    bundle: Path = typer.Argument(..., metavar="BUNDLE", help="Bundle (.kit) with an int8 TFLite model."),
    target: str = typer.Option("host", "--target", help=f"One of {', '.join(FIRMWARE_TARGETS)}."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the generated C project."),
    model: str | None = typer.Option(None, "--model", help="Model member of the bundle (default: its int8 TFLite)."),
    flash_kb: float | None = typer.Option(
        None, "--flash-kb", help="Flash of the part (default: the target profile's)."
    ),
    sram_kb: float | None = typer.Option(None, "--sram-kb", help="SRAM of the part (default: the target profile's)."),
    compile_: bool = typer.Option(True, "--compile/--no-compile", help="Compile after writing (needs the toolchain)."),
) -> None:
    """Write a self-contained C99 project (model constants, kernels, front-end, detector, main, Makefile)."""
    console = Console(stderr=True)
    project = write_project(
        bundle,
        target,
        out,
        model,
        flash_bytes=None if flash_kb is None else int(flash_kb * 1024),
        sram_bytes=None if sram_kb is None else int(sram_kb * 1024),
    )
    console.print(f"wrote {project} ({target})", highlight=False)
    if not compile_:
        return
    binary = build(project)
    line = f"built {binary}"
    if target != "host":
        sizes = section_sizes(project)
        record = json.loads((project / "firmware.json").read_text())
        memory, estimate = record["memory"], record["estimate"]
        line += (
            f": flash {sizes['flash']:,} B of {memory['flash_bytes']:,} (estimated {estimate['flash']:,}), "
            f"static RAM {sizes['static_ram']:,} B of {memory['sram_bytes']:,} (estimated "
            f"{estimate['static_ram']:,}; arm-none-eabi-size text {sizes['text']:,}, data {sizes['data']:,}, "
            f"bss {sizes['bss']:,})"
        )
    console.print(line, highlight=False)


@firmware_app.command("run")
def run_command(
    project: Path = typer.Argument(..., metavar="DIR", help="Folder written by kit firmware build."),
    input_wav: Path = typer.Option(..., "--input", "-i", help="WAV file to stream through the firmware."),
) -> None:
    """Build if needed, stream the WAV through the firmware (host, or the emulated Cortex-M4F) and print its lines."""
    record = json.loads((project / "firmware.json").read_text()) if (project / "firmware.json").is_file() else None
    target_of(project)  # a clear error for a folder that is not a firmware project
    y, rate = read_wav(input_wav)
    want = int(record["feature_config"]["sample_rate"])
    if rate != want:
        y = resample(y, rate, want)
    output = run(project, pcm_bytes(y))
    for time_s, label, score in output.detections:
        print(f"t={time_s:.2f}s {label} {score:.2f}")
    for line in output.lines:
        if line.startswith("per inference: no window"):
            print(line)
    if not output.detections:
        print("no detection (the detector's averaging and thresholds did not fire on this clip)")
    if output.model_cost is not None:
        print(
            f"per inference: {output.model_cost:,} {output.cost_unit} (model)"
            + (f", {output.frontend_cost:,} (front-end)" if output.frontend_cost is not None else "")
            + f"; {output.cost_note}"
        )
        if record is not None and output.cost_unit == "instructions":
            _print_time_lines(record, output.model_cost, output.frontend_cost)


def _print_time_lines(record: dict, model_instructions: int, frontend_instructions: int | None) -> None:
    """Measured instructions as ms at the part's clock (CPI 1, stated) next to firmware_sim's cycle model.

    Why both: the emulator counts instructions, not cycles; on a real Cortex-M4 loads, multiplies by
    64 bits and flash wait states take more than one cycle, so CPI 1 is a lower bound of the device
    time, and the cycle model is an estimate of another kind. Neither is the emulator's wall-clock.
    """
    target = record["target"]["name"]
    if target not in TARGETS:
        return
    mhz = TARGETS[target].clock_mhz
    front = f", front-end {frontend_instructions / (mhz * 1e3):.1f} ms per window" if frontend_instructions else ""
    print(
        f"at {mhz:g} MHz assuming CPI 1 (one instruction per cycle; a lower bound, a real core stalls on "
        f"loads and flash): model {model_instructions / (mhz * 1e3):.1f} ms per inference{front}; "
        "the emulator's wall-clock is not device time"
    )
    try:
        model = load_model(record["bundle"])
    except (KitError, OSError):
        return  # the bundle moved since the build: the measured line above stands alone
    for cmsis in (False, True):
        est = estimate(model, target, cmsis_nn=cmsis)
        print(
            f"firmware_sim cycle model ({'CMSIS-NN' if cmsis else 'reference kernels'}): {est.cycles:,} cycles, "
            f"{est.ms:.1f} ms at {mhz:g} MHz (estimate) vs {model_instructions:,} instructions measured"
        )


def register(app: typer.Typer) -> None:
    app.add_typer(firmware_app, name="firmware")
