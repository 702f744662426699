"""``kit live BUNDLE``: live keyword spotting on this machine (microphone, stdin PCM or a WAV file).

The pipeline and the options are the device's (``deploy/runtime/live.py``: the same
``listen``, sources and detector), so what works here works on the device; only the display
differs: on a terminal the top scores are drawn with rich, and each detection is printed as
``t=12.30s yes 0.93``. Piped output and ``--json`` use the runtime's plain displays.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from deploy.runtime import live
from deploy.runtime.live import ListenOptions, detection_line

from .detector_options import with_detector_options


class RichDisplay:
    """Rich status panel of the top scores, redrawn every hop, with detections printed above it."""

    def __init__(self, top: int = 3) -> None:
        self.console = Console()
        self.err = Console(stderr=True)
        self.live = Live(console=self.console, transient=True, refresh_per_second=12, auto_refresh=False)
        self.top = top

    def start(self, info: dict) -> None:
        self.err.print(
            f"listening to [bold]{info['source']}[/] with {info['model']} ({len(info['classes'])} classes, "
            f"threshold {info['detector']['threshold']:g}); Ctrl-C stops",
            highlight=False,
        )
        self.live.start()

    def result(self, result, classes: list[str]) -> None:

        if result.detection is not None:
            self.live.console.print(f"[bold green]{detection_line(result.detection)}[/]", highlight=False)
        table = Table.grid(padding=(0, 1))
        for i in np.argsort(-result.probabilities)[: self.top]:
            p = float(result.probabilities[i])
            table.add_row(
                f"t={result.time_s:7.2f}s",
                f"{classes[i]:>10}",
                f"{p:4.2f}",
                "[cyan]" + "█" * int(round(20 * p)) + "[/]",
            )
        self.live.update(table, refresh=True)

    def end(self, summary: dict) -> None:
        self.live.stop()
        self.err.print(f"listened to {summary['seconds']:.2f} s of audio: {len(summary['detections'])} detection(s)")


@with_detector_options("default: the bundle's")
def live_command(
    bundle: Path | None = typer.Argument(None, metavar="BUNDLE", help="Bundle file (.kit) from kit bundle."),
    source: str = typer.Option(
        ListenOptions.input, "--input", "-i", help="A WAV file, '-' for raw PCM s16le mono on stdin, or 'mic'."
    ),
    rate: int | None = typer.Option(None, "--rate", help="Sample rate of PCM on stdin (default: the model's)."),
    device: str | None = typer.Option(None, "--device", help="Input device NAME or INDEX for --input mic."),
    list_devices: bool = typer.Option(False, "--list-devices", help="List audio input devices and exit."),
    duration: float | None = typer.Option(None, "--duration", help="Stop after this many seconds of audio."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON events, one per line."),
    scores: bool = typer.Option(False, "--scores", help="With --json: also every hop's class scores."),
    realtime: bool = typer.Option(False, "--realtime", help="Pace file/stdin input at real-time speed."),
    model: str | None = typer.Option(None, "--model", help="Model file in the bundle (default: its default model)."),
    threads: int = typer.Option(ListenOptions.threads, "--threads", help="Inference threads."),
    chunk_ms: float = typer.Option(ListenOptions.chunk_ms, "--chunk-ms", help="Audio read size in milliseconds."),
    detector: dict[str, Any] | None = None,
) -> None:
    """Listen for the bundle's keywords and print each detection as 't=12.30s yes 0.93'."""
    if list_devices:
        print(live.device_list(as_json))
        return
    options = ListenOptions(
        bundle=bundle,
        input=source,
        rate=rate,
        device=device,
        duration=duration,
        model=model,
        threads=threads,
        chunk_ms=chunk_ms,
        realtime=realtime,
        detector=detector or {},
    )
    if as_json:
        display: live.Display = live.JsonDisplay(scores=scores)
    elif sys.stdout.isatty():
        display = RichDisplay()
    else:
        display = live.TextDisplay()
    live.run(options, display)


def register(app: typer.Typer) -> None:
    app.command("live")(live_command)
