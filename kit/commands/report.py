"""``kit report INPUT... --out report.html``: one self-contained HTML page over runs, coresets, benchmarks.

Why one page for everything: each experiment (``kit nas``, cross-architecture, active learning...)
writes a ``RunDir``; ``kit train`` writes its own run folder; coresets and the distillation
benchmark are files. The report reads any mix of them (``kit.report.sources``) and writes one file
with tables, embedded PNGs and audio players that opens offline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from deploy.runtime.safeio import check_output_path
from kit.report.html import write_report


def report_command(
    inputs: list[Path] = typer.Argument(
        ...,
        metavar="INPUT...",
        help="Experiment run folders (results.json), kit "
        "train run folders, coreset files (.kit) or bench/results/distill*.json.",
    ),
    out: Path = typer.Option(Path("report.html"), "--out", "-o", help="HTML file to write."),
    title: str = typer.Option("kit report", "--title", help="Page title."),
    data_dir: Optional[Path] = typer.Option(
        None,
        "--data-dir",
        help="Where datasets live (to evaluate a train run's model when its metrics lack a confusion matrix).",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Write one self-contained HTML page (tables, plots, audio players) for the given inputs."""
    check_output_path(out, "--out", inputs=tuple(inputs))

    path = write_report(inputs, out, title, data_dir=data_dir, progress=not quiet)
    Console(stderr=True).print(
        f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB, {len(inputs)} input(s))", highlight=False
    )


def register(app: typer.Typer) -> None:
    app.command("report")(report_command)
