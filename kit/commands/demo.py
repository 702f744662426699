"""``kit demo``: the main job end to end — distil a dataset, train on the coreset, compare with random,
then ship a model and listen to held-out audio on the device runtime.

Why a command and not a shell script: the comparison must use one loaded feature set, the same
training seeds and the same training budget for every coreset, so the figures differ only by how
the coreset was made (at 1 and 10 samples per class by default). The device half
(``demo_steps.py``) then runs the commands a user would type: ``kit train`` an MCU model on the
largest distilled coreset, ``kit bundle`` it int8, ``kit live`` a stream of held-out test clips,
and ``kit firmware`` the same stream through the generated C code.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from deploy.runtime.artifact import atomic_write_text
from deploy.runtime.errors import KitError
from deploy.runtime.safeio import check_output_dir
from kit.options import parse_ints, parse_seeds

from .demo_steps import deploy_step, firmware_step, held_out_sequence, stream_step


def demo_command(
    dataset: str = typer.Option("fsdd", "--dataset", help="Dataset to distil (name, folder or CSV)."),
    method: str = typer.Option("rfad", "--method", "-m", help="Distillation method to show off."),
    baseline: str = typer.Option("random", "--baseline", help="Selection baseline to compare against."),
    ipc: str = typer.Option("1,10", "--ipc", help="Samples per class of each coreset pair (comma-separated)."),
    seeds: str = typer.Option("0,1,2", "--seeds", help="Training seeds; accuracy is mean ± std over them."),
    seed: int = typer.Option(0, "--seed", help="Seed of the distillation / selection and of the demo stream."),
    time_budget: Optional[float] = typer.Option(
        45.0, "--time-budget", help="Distillation time limit per coreset in seconds (0 = the method's full schedule)."
    ),
    width: int = typer.Option(
        64, "--width", help="Width of the ConvNet that scores every coreset (the benchmark uses 128; 64 is 3x faster)."
    ),
    train_samples: int = typer.Option(16_000, "--train-samples", help="Training samples per scoring model."),
    out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="Run directory for coresets, models and metrics."),
    data_dir: Optional[Path] = typer.Option(
        None, "--data-dir", help="Where datasets live (default $KIT_DATA_DIR or the cache)."
    ),
    split: str = typer.Option("official", "--split", help="fsdd: official or speaker."),
    task: str = typer.Option("kws10", "--task", help="speech_commands: kws10 or kws12."),
    stream: bool = typer.Option(
        True,
        "--stream/--no-stream",
        help="Then train an MCU model on the largest coreset, bundle it int8 and stream held-out clips "
        "through the device runtime.",
    ),
    firmware: bool = typer.Option(
        True, "--firmware/--no-firmware", help="Also stream them through the generated C firmware (host build)."
    ),
) -> None:
    """Distil DATASET at each IPC, train a ConvNet on each coreset and compare with random coresets; then ship
    an MCU model as an int8 bundle (the largest distilled coreset as its replay memory) and stream held-out
    clips through the device runtime."""
    check_output_dir(out, "--out", ("config.json", "metrics.json"))
    from kit.data import load_dataset  # lazy: pulls in soundfile
    from kit.pipeline import distill_coreset, load_training_set, score_coreset  # lazy: pulls in soundfile

    seed_list = tuple(parse_seeds(seeds))
    if not seed_list:
        raise KitError("--seeds: give at least one seed")
    ipcs = sorted(parse_ints(ipc, "--ipc"))
    console = Console()
    started = time.time()
    fs, loader = load_training_set(dataset, data_dir, split=split, task=task)
    console.print(
        f"[bold]{dataset}[/]: {len(fs.classes)} classes, {len(fs.x_train)} training clips, "
        f"{len(fs.x_test)} test clips, features {fs.config.kind} {fs.config.shape}",
        highlight=False,
    )
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    for n in ipcs:
        for name in (method, baseline):
            path = out / f"{name}-ipc{n}.kit"
            params = {"progress": True, "checkpoint_path": str(path) + ".ckpt"} if name == "rfad" else {}
            if name == "rfad" and time_budget:
                params["time_budget_s"] = time_budget
            console.print(f"[bold]{name}[/]: making a {n}-per-class coreset", highlight=False)
            coreset, _, summary = distill_coreset(fs, loader, name, n, seed=seed, **params)
            coreset.save(path)
            console.print(f"[bold]{name}[/]: training a ConvNet on it over seeds {list(seed_list)}", highlight=False)
            scores = score_coreset(
                coreset.features,
                coreset.labels,
                fs,
                seeds=seed_list,
                arch_kwargs={"width": width},
                max_samples=train_samples,
                threads=None,  # torch's choice: the demo has the machine to itself
            )
            rows.append(
                {
                    "coreset": name,
                    "ipc": n,
                    "accuracy_mean": scores["mean"],
                    "accuracy_std": scores["std"],
                    "accuracies": scores["accuracies"],
                    "distill_s": summary["fit_time_s"],
                    "train_s": scores["train_time_s"],
                    "path": str(path),
                }
            )

    table = Table(
        title=f"{dataset}: test accuracy ({len(fs.x_test)} held-out clips) of a ConvNet (width {width}, "
        f"{train_samples} training samples) per coreset, mean ± std over seeds"
    )
    for column in ("samples per class", "coreset", "test accuracy", "seeds", "distill time"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            str(row["ipc"]),
            row["coreset"],
            f"{100 * row['accuracy_mean']:.1f} ± {100 * row['accuracy_std']:.1f} %",
            str(len(seed_list)),
            f"{row['distill_s']:.0f} s",
        )
    console.print(table)
    config = {
        "command": "demo",
        "dataset": dataset,
        "method": method,
        "baseline": baseline,
        "ipcs": ipcs,
        "seeds": list(seed_list),
        "seed": seed,
        "time_budget_s": time_budget,
        "width": width,
        "train_samples": train_samples,
        "stream": stream,
        "firmware": firmware,
        "loader": loader,
        "feature_config": fs.config.to_dict(),
    }
    metrics: dict = {"comparison": rows}
    if stream:
        largest = out / f"{method}-ipc{ipcs[-1]}.kit"
        console.print(
            f"[bold]device[/]: convnet-mcu trained on {dataset} -> int8 TFLite bundle with the {method} "
            f"{ipcs[-1]}-per-class coreset as its replay memory",
            highlight=False,
        )
        bundle = deploy_step(out, dataset, largest, data_dir, split, task, seed, console)
        test = load_dataset(dataset, data_dir, split=split, task=task).clips_in("test")
        wav = out / "heldout-stream.wav"
        words = held_out_sequence(test, fs.config.sample_rate, wav, seed)
        console.print(
            f"held-out stream {wav}: {len(words)} test clips ({', '.join(w.label for w in words)}) with 1 s of "
            "room noise between them",
            highlight=False,
        )
        metrics["deploy"] = {"bundle": str(bundle), "model": str(out / "mcu" / "model.kit")}
        metrics["stream"] = {**stream_step(bundle, wav, words, console), "words_at": [w.__dict__ for w in words]}
        if firmware:
            metrics["firmware"] = firmware_step(bundle, wav, out, console)
    metrics["wall_s"] = round(time.time() - started, 1)
    atomic_write_text(out / "config.json", json.dumps(config, indent=1, sort_keys=True, default=str))
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=1, sort_keys=True, default=str))
    console.print(f"done in {metrics['wall_s'] / 60:.1f} min. Outputs in {out}/:", highlight=False)
    console.print("  config.json, metrics.json: the settings and every figure above", highlight=False)
    console.print(f"  {method}-ipcN.kit, {baseline}-ipcN.kit: the coresets (kit inspect FILE)", highlight=False)
    if stream:
        console.print("  mcu/model.kit, mcu.bundle.kit: the MCU model and its int8 bundle (kit live BUNDLE)")
        console.print(
            "  heldout-stream.wav: the held-out stream" + (", firmware-host/: the C firmware" if firmware else "")
        )


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)
