"""``kit render CORESET --out DIR``: each distilled sample back to a WAV by Griffin-Lim.

Why a command: a person labelling or auditing a distilled coreset needs to hear it. The run
folder holds the WAVs (``audio/<index>_<label>.wav`` + ``audio/manifest.json``), the round-trip
table, a figure of distilled vs re-extracted maps and, with ``--evaluate``, the accuracy of a
ConvNet trained on features re-extracted from the audio next to one trained on the coreset;
``kit report DIR`` renders it. All the work is in ``kit.experiments.render_audio``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from deploy.runtime.coreset import Coreset
from deploy.runtime.errors import KitError
from kit.options import parse_seeds


def render_command(
    coreset_path: Path = typer.Argument(
        ..., metavar="CORESET", help="Coreset file (.kit) of mfcc, fd_mfcc or log_mel features."
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Run folder to write (WAVs under audio/, config.json, results.json)."
    ),
    iterations: Optional[int] = typer.Option(
        None, "--iterations", help="Griffin-Lim iterations (default 64; 16 with --quick)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of Griffin-Lim's random initial phase (sample i uses seed + i)."),
    evaluate: bool = typer.Option(
        False,
        "--evaluate",
        help="Also train ConvNets on the re-extracted features and on the coreset; report both accuracies.",
    ),
    seeds: Optional[str] = typer.Option(
        None, "--seeds", help="Training seeds for --evaluate, e.g. 0,1,2 (default 0,1,2; 0 with --quick)."
    ),
    max_samples: Optional[int] = typer.Option(
        None, "--max-samples", help="Clips seen per training run (default 16000; 1500 with --quick)."
    ),
    test_limit: Optional[int] = typer.Option(
        None, "--test-limit", help="Test clips per class for --evaluate (default all; 10 with --quick)."
    ),
    examples: Optional[int] = typer.Option(None, "--examples", help="Feature maps shown in the figure (default 4)."),
    quick: bool = typer.Option(
        False,
        "--quick",
        help="Small setting (used by the tests): 16 iterations, 1 seed, 1500 clips per run, 10 test clips per class.",
    ),
    data_dir: Optional[Path] = typer.Option(
        None, "--data-dir", help="Where the datasets live (default $KIT_DATA_DIR or the coreset's)."
    ),
    dataset: Optional[str] = typer.Option(
        None, "--dataset", help="Override the coreset's source dataset (name or path)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Discard a previous run with other settings in --out."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Render each coreset sample to a WAV (MFCC -> mel power -> STFT magnitude -> Griffin-Lim)."""
    from kit.experiments.render_audio import RenderSettings, run_render  # lazy: pulls in soundfile
    from kit.experiments.rundir import check_run_dir  # lazy: pulls in soundfile

    check_run_dir(out)
    coreset = Coreset.load(coreset_path)
    settings = RenderSettings.quick() if quick else RenderSettings()
    changes = {}
    if iterations is not None:
        if iterations < 1:
            raise KitError(f"--iterations must be at least 1, got {iterations}")
        changes["n_iter"] = iterations
    if seeds is not None:
        changes["train_seeds"] = tuple(parse_seeds(seeds))
    if max_samples is not None:
        if max_samples < 1:
            raise KitError(f"--max-samples must be at least 1, got {max_samples}")
        changes["max_samples"] = max_samples
    if test_limit is not None:
        if test_limit < 1:
            raise KitError(f"--test-limit must be at least 1, got {test_limit}")
        changes["test_limit"] = test_limit
    if examples is not None:
        changes["examples"] = examples
    settings = RenderSettings(**{**settings.__dict__, **changes, "seed": seed, "evaluate": evaluate})
    run = run_render(
        coreset,
        out,
        settings,
        coreset_path=str(coreset_path),
        data_dir=data_dir,
        dataset=dataset,
        progress=not quiet,
        overwrite=overwrite,
    )
    head = run.headline
    line = (
        f"{coreset_path.name}: rendered {head['n_rendered']} WAVs to {out / 'audio'}; round trip correlation "
        f"{head['round_trip_correlation']:.3f}, relative error {head['round_trip_relative_error']:.3f}"
    )
    if evaluate:
        line += (
            f"; ConvNet accuracy {100 * head['accuracy_original']:.1f} % (coreset) vs "
            f"{100 * head['accuracy_rendered']:.1f} % (rendered audio) on {head['n_test']} test clips"
        )
    print(line)
    Console(stderr=True).print(f"wrote {out}/results.json (kit report {out})", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("render")(render_command)
