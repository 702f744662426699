"""``kit firmware build|run``: the C firmware of a bundle, compiled for the host or a Cortex-M and run.

Why in the kit: a bundle says what the model computes; a firmware engineer needs the C project that
computes it on their board. ``build`` writes that project (``firmware_sim.c_project``), ``run``
compiles it and streams a WAV through it, on the host or on QEMU's emulated Cortex-M4F board, and
prints the detections and the cost per inference (emulated instructions are not device time).
"""
from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from deploy.runtime.features import resample
from deploy.runtime.wavio import read_wav
from firmware_sim.c_project import FIRMWARE_TARGETS, write_project
from firmware_sim.c_run import build, pcm_bytes, run, section_sizes, target_of

firmware_app = typer.Typer(help="C firmware for a bundle: build it for a target, run it on the host or an emulated board.",
                           no_args_is_help=True)


@firmware_app.command("build")
def build_command(
    bundle: Path = typer.Argument(..., metavar="BUNDLE", help="Bundle (.kit) with an int8 TFLite model."),
    target: str = typer.Option("host", "--target", help=f"One of {', '.join(FIRMWARE_TARGETS)}."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the generated C project."),
    model: str | None = typer.Option(None, "--model", help="Model member of the bundle (default: its int8 TFLite)."),
    compile_: bool = typer.Option(True, "--compile/--no-compile", help="Compile after writing (needs the toolchain)."),
) -> None:
    """Write a self-contained C99 project (model constants, kernels, front-end, detector, main, Makefile)."""
    console = Console(stderr=True)
    project = write_project(bundle, target, out, model)
    console.print(f"wrote {project} ({target})", highlight=False)
    if not compile_:
        return
    binary = build(project)
    line = f"built {binary}"
    if target != "host":
        sizes = section_sizes(project)
        spec = FIRMWARE_TARGETS[target]
        line += (f": flash {sizes['flash']:,} B of {spec.flash_bytes:,}, static RAM {sizes['static_ram']:,} B "
                 f"of {spec.ram_bytes:,} (arm-none-eabi-size text {sizes['text']:,}, data {sizes['data']:,}, "
                 f"bss {sizes['bss']:,})")
    console.print(line, highlight=False)


@firmware_app.command("run")
def run_command(
    project: Path = typer.Argument(..., metavar="DIR", help="Folder written by kit firmware build."),
    input_wav: Path = typer.Option(..., "--input", "-i", help="WAV file to stream through the firmware."),
) -> None:
    """Build if needed, stream the WAV through the firmware (host, or the emulated Cortex-M4F) and print its lines."""
    import json

    record = json.loads((project / "firmware.json").read_text()) if (project / "firmware.json").is_file() else None
    target_of(project)  # a clear error for a folder that is not a firmware project
    y, rate = read_wav(input_wav)
    want = int(record["feature_config"]["sample_rate"])
    if rate != want:
        y = resample(y, rate, want)
    output = run(project, pcm_bytes(y))
    for time_s, label, score in output.detections:
        print(f"t={time_s:.2f}s {label} {score:.2f}")
    if output.model_cost is not None:
        print(f"per inference: {output.model_cost:,} {output.cost_unit} (model)"
              + (f", {output.frontend_cost:,} (front-end)" if output.frontend_cost is not None else "")
              + f"; {output.cost_note}")


def register(app: typer.Typer) -> None:
    app.add_typer(firmware_app, name="firmware")
