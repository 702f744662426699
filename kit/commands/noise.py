"""``kit noise CORESET --snrs 30,20,10,5,0 --out RUN_DIR``: accuracy vs SNR (DDFAD Fig. 7).

The coreset is rendered to audio (Griffin-Lim, as ``kit render``), Gaussian noise at each SNR is
added to it, to a random real coreset of the same size and to the real test clips, and ConvNets
trained on each noisy set are scored on the noisy test set. Resumable: re-running the same
command in the same folder skips finished (set, SNR, seed) cells. The protocol lives in
``kit.experiments.noise_robustness``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from deploy.runtime.coreset import Coreset
from deploy.runtime.errors import KitError
from kit.options import parse_seeds


def noise_command(
    coreset_path: Path = typer.Argument(
        ..., metavar="CORESET", help="Coreset file (.kit) of mfcc, fd_mfcc or log_mel features."
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Run folder (config.json, cells.json, results.json, the PNG, audio/)."
    ),
    snrs: str = typer.Option(
        "clean,30,20,10,5,0", "--snrs", help="SNRs in dB, comma-separated; 'clean' adds a no-noise point."
    ),
    seeds: Optional[str] = typer.Option(
        None, "--seeds", help="Training seeds, e.g. 0,1,2 (default 0,1,2; 0 with --quick)."
    ),
    seed: int = typer.Option(
        0, "--seed", help="Seed of the noise, the random reference clips and Griffin-Lim's phase."
    ),
    iterations: Optional[int] = typer.Option(
        None, "--iterations", help="Griffin-Lim iterations (default 64; 16 with --quick)."
    ),
    max_samples: Optional[int] = typer.Option(
        None, "--max-samples", help="Clips seen per training run (default 16000; 1500 with --quick)."
    ),
    test_limit: Optional[int] = typer.Option(
        None, "--test-limit", help="Test clips per class (default all; 10 with --quick)."
    ),
    quick: bool = typer.Option(
        False,
        "--quick",
        help="Small setting (used by the tests): 1 seed, 16 iterations, 1500 clips per run, 10 test clips per class.",
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
    """Accuracy vs SNR of models trained on the noisy rendered coreset and on noisy random real clips."""
    from kit.experiments.noise_robustness import (
        NoiseSettings,
        parse_snrs,
        run_noise_robustness,
    )  # lazy: pulls in soundfile
    from kit.experiments.rundir import check_run_dir  # lazy: pulls in soundfile

    check_run_dir(out)
    snr_list = tuple(parse_snrs(snrs))
    changes: dict = {"snrs": snr_list, "seed": seed}
    if seeds is not None:
        changes["train_seeds"] = tuple(parse_seeds(seeds))
    if iterations is not None:
        if iterations < 1:
            raise KitError(f"--iterations must be at least 1, got {iterations}")
        changes["n_iter"] = iterations
    for flag, value, key in (("--max-samples", max_samples, "max_samples"), ("--test-limit", test_limit, "test_limit")):
        if value is not None:
            if value < 1:
                raise KitError(f"{flag} must be at least 1, got {value}")
            changes[key] = value
    settings = NoiseSettings.quick(**changes) if quick else NoiseSettings(**changes)
    coreset = Coreset.load(coreset_path)
    run = run_noise_robustness(
        coreset,
        out,
        settings,
        coreset_path=str(coreset_path),
        data_dir=data_dir,
        dataset=dataset,
        progress=not quiet,
        overwrite=overwrite,
    )
    table = run.tables[0]
    print(" | ".join(table["columns"]))
    for row in table["rows"]:
        print(" | ".join(str(cell) for cell in row))
    Console(stderr=True).print(f"wrote {out}/results.json and accuracy_vs_snr.png (kit report {out})", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("noise")(noise_command)
