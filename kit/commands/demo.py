"""``kit demo``: the main job end to end — distil a dataset, train on the coreset, compare with random.

Why a command and not a shell script: the comparison must use one loaded feature set, the same
training seeds and the same training budget for both coresets, so the two figures differ only
by how the coreset was made.
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


def demo_command(
    dataset: str = typer.Option("fsdd", "--dataset", help="Dataset to distil (name, folder or CSV)."),
    method: str = typer.Option("rfad", "--method", "-m", help="Distillation method to show off."),
    baseline: str = typer.Option("random", "--baseline", help="Selection baseline to compare against."),
    ipc: int = typer.Option(10, "--ipc", help="Samples per class in each coreset."),
    seeds: str = typer.Option("0,1,2", "--seeds", help="Training seeds; accuracy is mean ± std over them."),
    seed: int = typer.Option(0, "--seed", help="Seed of the distillation / selection."),
    time_budget: Optional[float] = typer.Option(None, "--time-budget", help="Distillation time limit in seconds."),
    out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="Run directory for coresets, models and metrics."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Where datasets live (default $KIT_DATA_DIR or the cache)."),
    split: str = typer.Option("official", "--split", help="fsdd: official or speaker."),
    task: str = typer.Option("kws10", "--task", help="speech_commands: kws10 or kws12."),
) -> None:
    """Distil DATASET to IPC samples per class, train a ConvNet on it, and print its test accuracy next to a random coreset."""
    check_output_dir(out, "--out", ("config.json", "metrics.json"))
    from kit.pipeline import distill_coreset, load_training_set, score_coreset  # lazy: pulls in soundfile

    seed_list = tuple(int(s) for s in seeds.split(",") if s.strip())
    if len(seed_list) < 1:
        raise KitError("--seeds: give at least one seed")
    console = Console()
    started = time.time()
    fs, loader = load_training_set(dataset, data_dir, split=split, task=task)
    console.print(f"[bold]{dataset}[/]: {len(fs.classes)} classes, {len(fs.x_train)} training clips, "
                  f"{len(fs.x_test)} test clips, features {fs.config.kind} {fs.config.shape}", highlight=False)
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
        metrics[name] = {"accuracy_mean": scores["mean"], "accuracy_std": scores["std"], "accuracies": scores["accuracies"],
                         "distill_s": summary["fit_time_s"], "train_s": scores["train_time_s"], "coreset": str(out / f"{name}.kit")}
        rows.append((name, scores, summary))

    table = Table(title=f"{dataset}: ConvNet test accuracy with {ipc} samples per class")
    for column in ("coreset", "test accuracy", "seeds", "distill time"):
        table.add_column(column)
    for name, scores, summary in rows:
        table.add_row(name, f"{100 * scores['mean']:.1f} ± {100 * scores['std']:.1f} %", str(len(seed_list)),
                      f"{summary['fit_time_s']:.0f} s")
    console.print(table)
    config = {"command": "demo", "dataset": dataset, "method": method, "baseline": baseline, "ipc": ipc,
              "seeds": list(seed_list), "seed": seed, "time_budget_s": time_budget, "loader": loader,
              "feature_config": fs.config.to_dict()}
    metrics["wall_s"] = round(time.time() - started, 1)
    atomic_write_text(out / "config.json", json.dumps(config, indent=1, sort_keys=True, default=str))
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=1, sort_keys=True, default=str))
    console.print(f"wrote {out}/config.json, metrics.json and the coresets", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)
