"""``kit demo``: the main job end to end — distil a dataset, train on the coreset, compare with random.

Why a command and not a shell script: the comparison must use one loaded feature set, the same
training seeds and the same training budget for both coresets, so the two figures differ only
by how the coreset was made.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import wave
from pathlib import Path
from typing import Optional

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from deploy.runtime.artifact import atomic_write_text
from deploy.runtime.errors import KitError
from deploy.runtime.safeio import check_output_dir
from deploy.runtime.wavio import read_wav
from firmware_sim.c_run import require_tools


def demo_command(
    dataset: str = typer.Option("fsdd", "--dataset", help="Dataset to distil (name, folder or CSV)."),
    method: str = typer.Option("rfad", "--method", "-m", help="Distillation method to show off."),
    baseline: str = typer.Option("random", "--baseline", help="Selection baseline to compare against."),
    ipc: int = typer.Option(10, "--ipc", help="Samples per class in each coreset."),
    seeds: str = typer.Option("0,1,2", "--seeds", help="Training seeds; accuracy is mean ± std over them."),
    seed: int = typer.Option(0, "--seed", help="Seed of the distillation / selection."),
    time_budget: Optional[float] = typer.Option(None, "--time-budget", help="Distillation time limit in seconds."),
    out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="Run directory for coresets, models and metrics."),
    data_dir: Optional[Path] = typer.Option(
        None, "--data-dir", help="Where datasets live (default $KIT_DATA_DIR or the cache)."
    ),
    split: str = typer.Option("official", "--split", help="fsdd: official or speaker."),
    task: str = typer.Option("kws10", "--task", help="speech_commands: kws10 or kws12."),
    firmware: bool = typer.Option(
        True,
        "--firmware/--no-firmware",
        help="End by training an MCU model on the coreset, building the host C firmware "
        "and streaming one held-out clip through it.",
    ),
) -> None:
    """Distil DATASET to IPC samples per class, train a ConvNet on it, and print its test accuracy next to a random
    coreset."""
    check_output_dir(out, "--out", ("config.json", "metrics.json"))
    from kit.pipeline import distill_coreset, load_training_set, score_coreset  # lazy: pulls in soundfile

    seed_list = tuple(int(s) for s in seeds.split(",") if s.strip())
    if len(seed_list) < 1:
        raise KitError("--seeds: give at least one seed")
    console = Console()
    started = time.time()
    fs, loader = load_training_set(dataset, data_dir, split=split, task=task)
    console.print(
        f"[bold]{dataset}[/]: {len(fs.classes)} classes, {len(fs.x_train)} training clips, "
        f"{len(fs.x_test)} test clips, features {fs.config.kind} {fs.config.shape}",
        highlight=False,
    )
    out.mkdir(parents=True, exist_ok=True)
    rows, metrics = [], {}
    for name in (method, baseline):
        params = {"progress": True, "checkpoint_path": str(out / f"{name}.kit.ckpt")} if name == "rfad" else {}
        if name == "rfad" and time_budget is not None:
            params["time_budget_s"] = time_budget
        console.print(f"[bold]{name}[/]: making a {ipc}-per-class coreset", highlight=False)
        coreset, _, summary = distill_coreset(fs, loader, name, ipc, seed=seed, **params)
        coreset.save(out / f"{name}.kit")
        console.print(f"[bold]{name}[/]: training a ConvNet on it over seeds {list(seed_list)}", highlight=False)
        scores = score_coreset(coreset.features, coreset.labels, fs, seeds=seed_list)
        metrics[name] = {
            "accuracy_mean": scores["mean"],
            "accuracy_std": scores["std"],
            "accuracies": scores["accuracies"],
            "distill_s": summary["fit_time_s"],
            "train_s": scores["train_time_s"],
            "coreset": str(out / f"{name}.kit"),
        }
        rows.append((name, scores, summary))

    table = Table(title=f"{dataset}: ConvNet test accuracy with {ipc} samples per class")
    for column in ("coreset", "test accuracy", "seeds", "distill time"):
        table.add_column(column)
    for name, scores, summary in rows:
        table.add_row(
            name,
            f"{100 * scores['mean']:.1f} ± {100 * scores['std']:.1f} %",
            str(len(seed_list)),
            f"{summary['fit_time_s']:.0f} s",
        )
    console.print(table)
    config = {
        "command": "demo",
        "dataset": dataset,
        "method": method,
        "baseline": baseline,
        "ipc": ipc,
        "seeds": list(seed_list),
        "seed": seed,
        "time_budget_s": time_budget,
        "loader": loader,
        "feature_config": fs.config.to_dict(),
    }
    if firmware:
        metrics["firmware"] = firmware_step(out, method, dataset, data_dir, split, task, console)
    metrics["wall_s"] = round(time.time() - started, 1)
    atomic_write_text(out / "config.json", json.dumps(config, indent=1, sort_keys=True, default=str))
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=1, sort_keys=True, default=str))
    console.print(f"wrote {out}/config.json, metrics.json and the coresets", highlight=False)


def _kit(args: list[str], console: Console) -> str:
    """Run one ``kit`` command as a user would type it (printed first); its output, or a one-line error."""
    console.print(f"$ kit {' '.join(args)}", highlight=False)
    proc = subprocess.run([sys.executable, "-m", "kit", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise KitError(f"demo firmware step: kit {args[0]} {args[1]} failed: {last[0]}")
    return proc.stdout


def padded_clip(clip: Path, out: Path, lead_s: float = 0.5, total_s: float = 2.0) -> Path:
    """The clip at ``lead_s`` in silence of at least ``total_s`` (16-bit WAV, written atomically).

    Why: a spoken digit lasts under a second, shorter than the firmware's 1 s window, so streamed
    alone it yields no window at all; with silence around it the detector sees whole windows, as it
    would on a device listening continuously.
    """

    y, rate = read_wav(clip)
    lead = int(lead_s * rate)
    padded = np.zeros(max(int(total_s * rate), lead + len(y) + rate // 2), np.float64)
    padded[lead : lead + len(y)] = y
    tmp = out.with_name(out.name + ".tmp")
    with wave.open(str(tmp), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.clip(np.round(padded * 32768.0), -32768, 32767).astype("<i2").tobytes())
    os.replace(tmp, out)
    return out


def firmware_step(
    out: Path, method: str, dataset: str, data_dir: Optional[Path], split: str, task: str, console: Console
) -> dict:
    """dataset -> firmware: an MCU-ready ConvNet (convnet-mcu) trained on the distilled coreset, its int8
    bundle, the host build of the generated C firmware, and one held-out test clip streamed through it.

    Why a separate model: the demo's comparison model (the default ConvNet, instance norm) has ops the
    C kernels do not implement; convnet-mcu is the <= 64 KB model the firmware is written for.
    """
    from kit.data import load_dataset  # lazy: pulls in soundfile

    try:
        require_tools("host")
    except KitError as exc:  # no C compiler: the rest of the demo stands, the firmware step says why it is skipped
        console.print(f"[bold]firmware[/]: skipped: {exc}", highlight=False)
        return {"skipped": str(exc)}
    clips = [
        c
        for c in load_dataset(dataset, data_dir, split=split, task=task).clips_in("test")
        if c.offset_s == 0.0 and c.duration_s is None
    ]
    if not clips:
        raise KitError(f"demo firmware step: {dataset} has no whole-file test clip to stream; use --no-firmware")
    clip = clips[0]
    coreset, mcu = out / f"{method}.kit", out / "mcu"
    bundle, project = out / "mcu.bundle.kit", out / "firmware-host"
    console.print(
        f"[bold]firmware[/]: convnet-mcu on the {method} coreset -> int8 bundle -> C firmware (host)", highlight=False
    )
    _kit(["train", str(coreset), "--arch", "convnet-mcu", "--seeds", "0", "--out", str(mcu)], console)
    _kit(
        [
            "bundle",
            str(mcu / "model.kit"),
            "--coreset",
            str(coreset),
            "--format",
            "tflite",
            "--int8",
            "--out",
            str(bundle),
        ],
        console,
    )
    _kit(["firmware", "build", str(bundle), "--target", "host", "--out", str(project)], console)
    wav = padded_clip(clip.path, out / "heldout-clip.wav")
    console.print(f"held-out test clip {clip.path} (label {clip.label}) at 0.5 s in silence -> {wav}", highlight=False)
    lines = _kit(["firmware", "run", str(project), "--input", str(wav)], console).strip().splitlines()
    console.print(f"the firmware on {clip.path.name} (label {clip.label}):", highlight=False)
    for line in lines:
        console.print(f"  {line}", highlight=False)
    return {
        "clip": str(clip.path),
        "label": clip.label,
        "bundle": str(bundle),
        "project": str(project),
        "output": lines,
    }


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)
