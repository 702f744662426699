"""Command-line options every evaluation experiment shares (``kit xarch``, ``al``, ``ablate``, ``cl``, ``nas``...).

Why one place: the dataset options must read the same in every experiment, and a fix to one help
text (or a new dataset option) must reach all of them. Use as ``data_dir: DataDir = None``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

DataDir = Annotated[
    Optional[Path], typer.Option("--data-dir", help="Where datasets live (default $KIT_DATA_DIR or the cache).")
]
Split = Annotated[str, typer.Option("--split", help="fsdd: official or speaker.")]
Task = Annotated[str, typer.Option("--task", help="speech_commands: kws10 or kws12.")]
TestFold = Annotated[int, typer.Option("--test-fold", help="esc10/esc50/CSV: fold held out for testing.")]
LimitPerClass = Annotated[
    Optional[int],
    typer.Option("--limit-per-class", help="At most this many real clips per class and split (quick: 30)."),
]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Discard a previous run with other settings in --out.")]
Progress = Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")]
