"""Turn each ``kit report`` input into a ``Section``: what the page shows for it, as plain data.

Why a reader per input kind, all producing one ``Section`` shape: the HTML writer then knows
nothing about run folders, coresets or benchmarks, and a new kind of input is one new reader.
Kinds recognised (in this order):

* an experiment run folder (``results.json``, the ``RunDir`` contract): its tables, PNG figures
  and WAV audio as they are;
* a ``kit train`` run folder (``config.json`` + ``metrics.json`` [+ ``model.kit``]): accuracy
  mean ± std, per-seed table, and a confusion matrix (from ``metrics.json`` if recorded, else
  by evaluating ``model.kit`` on its dataset's test split);
* a coreset file (``.kit`` artifact of kind coreset): its samples' feature channels as images;
* a distillation-benchmark JSON (``bench/results/distill*.json``): accuracy vs samples per class.

Every embedded file is checked (PNG signature, RIFF/WAVE header) so a corrupt input fails with a
one-line ``KitError`` naming it instead of producing a page with a broken image.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deploy.runtime.artifact import read_manifest
from deploy.runtime.coreset import Coreset
from deploy.runtime.errors import KitError
from deploy.runtime.features import FeatureConfig
from deploy.runtime.safeio import require_regular_file

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass
class Section:
    """One input's part of the page. ``images``/``audio`` hold (bytes, caption) pairs."""

    title: str
    source: str
    kind: str
    summary: str = ""
    facts: list[tuple[str, str]] = field(default_factory=list)
    tables: list[dict[str, Any]] = field(default_factory=list)
    images: list[tuple[bytes, str]] = field(default_factory=list)
    audio: list[tuple[bytes, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def check_png(data: bytes, name: str) -> bytes:
    if not data.startswith(PNG_SIGNATURE):
        raise KitError(f"{name}: not a PNG image (bad signature)")
    return data


def check_wav(data: bytes, name: str) -> bytes:
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise KitError(f"{name}: not a WAV file (no RIFF/WAVE header)")
    return data


def _read_json(path: Path) -> Any:
    require_regular_file(path, "JSON")
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise KitError(f"{path}: unreadable JSON ({exc})") from None


def _fmt_pct(value: float) -> str:
    return f"{100 * value:.2f}"


def _member_bytes(folder: Path, relative: Any, what: str) -> bytes:
    """A file a results.json names, which must stay inside its run folder."""
    if not isinstance(relative, str) or not relative:
        raise KitError(f"{folder}/results.json: a {what} entry has no file name")
    path = (folder / relative).resolve()
    try:
        path.relative_to(folder.resolve())
    except ValueError:
        raise KitError(f"{folder}/results.json: {what} '{relative}' lies outside the run folder") from None
    require_regular_file(path, what)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise KitError(f"{folder / relative}: cannot read the {what} ({exc.strerror or exc})") from None


# readers ---------------------------------------------------------------------------------------------
def experiment_section(folder: Path) -> Section:
    from ..experiments.rundir import load_results  # lazy: pulls in soundfile

    results = load_results(folder)
    section = Section(
        title=str(results.get("title") or results.get("experiment") or folder.name),
        source=str(folder),
        kind=f"experiment: {results.get('experiment', '?')}",
        summary=str(results.get("summary") or ""),
    )
    headline = results.get("headline") or {}
    if isinstance(headline, dict):
        section.facts = [(str(k), "–" if v is None else str(v)) for k, v in headline.items()]
    for i, table in enumerate(results.get("tables", [])):
        if (
            not isinstance(table, dict)
            or not isinstance(table.get("columns"), list)
            or not isinstance(table.get("rows"), list)
        ):
            raise KitError(f"{folder}/results.json: table {i} needs 'columns' and 'rows' lists")
        if any(not isinstance(r, list) or len(r) != len(table["columns"]) for r in table["rows"]):
            raise KitError(f"{folder}/results.json: table '{table.get('title', i)}' has rows of the wrong width")
        section.tables.append(
            {"title": str(table.get("title", "")), "columns": table["columns"], "rows": table["rows"]}
        )
    for entry in results.get("figures", []):
        entry = entry if isinstance(entry, dict) else {}
        data = _member_bytes(folder, entry.get("file"), "figure")
        section.images.append((check_png(data, str(folder / entry["file"])), str(entry.get("caption", ""))))
    for entry in results.get("audio", []):
        entry = entry if isinstance(entry, dict) else {}
        data = _member_bytes(folder, entry.get("file"), "audio")
        section.audio.append((check_wav(data, str(folder / entry["file"])), str(entry.get("caption", ""))))
    return section


def train_section(folder: Path, data_dir: str | os.PathLike | None = None, progress: bool = False) -> Section:
    from .plots import confusion_figure, figure_png  # lazy: pulls in matplotlib

    config = _read_json(folder / "config.json")
    metrics = _read_json(folder / "metrics.json")
    if not isinstance(metrics, dict) or "mean" not in metrics or not isinstance(metrics.get("per_seed"), list):
        raise KitError(f"{folder}/metrics.json: not a kit train result (needs 'mean' and 'per_seed')")
    config = config if isinstance(config, dict) else {}
    train = config.get("train", {}) if isinstance(config.get("train"), dict) else {}
    arch = train.get("arch", "?")
    title = f"Training run {folder.name}: {config.get('coreset_method', '?')} coreset on {arch}"
    section = Section(title=title, source=str(folder), kind="kit train run")
    section.facts = [
        ("accuracy (mean ± std over seeds, %)", f"{_fmt_pct(metrics['mean'])} ± {_fmt_pct(metrics.get('std', 0.0))}"),
        ("coreset", str(config.get("coreset", "?"))),
        ("coreset method / clips per class", f"{config.get('coreset_method', '?')} / {config.get('coreset_ipc', '?')}"),
        ("architecture", f"{arch} {json.dumps(train.get('arch_kwargs', {}))}"),
        ("seeds", ", ".join(str(s) for s in config.get("seeds", []))),
        ("test clips", str(metrics.get("n_test", "?"))),
    ]
    section.tables.append(
        {
            "title": "Accuracy per training seed",
            "columns": ["seed", "accuracy (%)", "train seconds", "steps"],
            "rows": [
                [
                    row.get("seed"),
                    _fmt_pct(row.get("accuracy", float("nan"))),
                    round(float(row.get("train_seconds", 0)), 1),
                    row.get("steps"),
                ]
                for row in metrics["per_seed"]
            ],
        }
    )
    classes = config.get("classes")
    confusion = metrics.get("confusion")
    caption = "Confusion matrix on the test split (recorded by the run)"
    if confusion is None:
        model_file = folder / "model.kit"
        if not model_file.exists():
            section.notes.append("No confusion matrix: metrics.json does not record one and model.kit is missing.")
        else:
            test_info = metrics.get("test") if isinstance(metrics.get("test"), dict) else {}
            confusion, classes, n = _evaluate_saved_model(
                model_file, data_dir, progress, test_info.get("limit_per_class")
            )
            caption = f"Confusion matrix of model.kit (seed {metrics.get('model_seed', '?')}) on {n} test clips"
    if confusion is not None:
        confusion = np.asarray(confusion)
        if not isinstance(classes, list) or confusion.shape != (len(classes), len(classes)):
            raise KitError(f"{folder}: confusion matrix shape {confusion.shape} does not match the class list")
        section.images.append((figure_png(confusion_figure(confusion, classes, title=folder.name)), caption))
    return section


def _evaluate_saved_model(
    model_file: Path, data_dir: str | os.PathLike | None, progress: bool, limit_per_class: int | None = None
) -> tuple[np.ndarray, list[str], int]:
    """Confusion matrix of a saved model on the same test clips its run was scored on (same per-class limit)."""
    from ..models import load_model  # lazy: pulls in torch
    from ..training import evaluate, load_test_split, torch_threads  # lazy: pulls in torch, soundfile

    model, meta = load_model(model_file)
    if "feature_config" not in meta or "classes" not in meta:
        raise KitError(f"{model_file}: model does not record its classes and feature configuration")
    test = load_test_split(
        meta.get("source", {}),
        FeatureConfig.from_dict(meta["feature_config"]),
        meta["normalizer"],
        meta["classes"],
        data_dir,
        limit_per_class=limit_per_class,
        progress=progress,
    )
    with torch_threads(1):
        result = evaluate(model, test.x, test.y)
    return result["confusion"], list(meta["classes"]), result["n"]


def coreset_section(path: Path, per_class: int = 2) -> Section:
    from .plots import coreset_channels_figure, figure_png  # lazy: pulls in matplotlib

    coreset = Coreset.load(path)
    kind = coreset.feature_config.kind
    section = Section(
        title=f"Coreset {path.name}: {coreset.method}, {coreset.ipc} per class", source=str(path), kind="coreset"
    )
    dataset = coreset.source.get("dataset_name") or coreset.source.get("dataset")
    section.facts = [
        ("method", coreset.method),
        ("samples", str(len(coreset.features))),
        ("clips per class", str(coreset.ipc)),
        ("classes", ", ".join(coreset.classes)),
        ("feature", f"{kind} {tuple(coreset.features.shape[1:])}"),
        ("labels", "soft" if coreset.labels.ndim == 2 else "hard"),
        ("seed", str(coreset.seed)),
        ("source dataset", str(dataset if isinstance(dataset, str) else "?")),
    ]
    figure = coreset_channels_figure(coreset.features, coreset.labels, coreset.classes, kind, per_class=per_class)
    channels = "MFCC, delta and delta-delta channels" if kind == "fd_mfcc" else f"{kind} channels"
    section.images.append(
        (
            figure_png(figure),
            f"{channels} of the first {per_class} samples per class "
            "(normalised model input; time left to right, coefficient bottom to top)",
        )
    )
    return section


def benchmark_section(path: Path) -> Section:
    from .plots import accuracy_vs_ipc_figure, figure_png  # lazy: pulls in matplotlib

    data = _read_json(path)
    cells = data.get("cells") if isinstance(data, dict) else None
    if not isinstance(cells, dict) or not cells:
        raise KitError(f"{path}: not a distillation benchmark result (no 'cells')")
    rows = []
    for key, cell in cells.items():
        if not isinstance(cell, dict) or not {"dataset", "method", "accuracy_mean"} <= set(cell):
            raise KitError(f"{path}: cell '{key}' lacks dataset/method/accuracy_mean (not a distillation benchmark?)")
        rows.append(
            {
                "dataset": str(cell["dataset"]),
                "method": str(cell["method"]),
                "ipc": cell.get("ipc"),
                "accuracy_mean": float(cell["accuracy_mean"]),
                "accuracy_std": float(cell.get("accuracy_std") or 0.0),
                "distill_s": cell.get("distill_s"),
            }
        )
    rows.sort(key=lambda r: (r["dataset"], r["method"], -1 if r["ipc"] is None else r["ipc"]))
    section = Section(title=f"Distillation benchmark ({path.name})", source=str(path), kind="benchmark")
    machine = data.get("machine") if isinstance(data.get("machine"), dict) else {}
    section.facts = [
        ("cells", str(len(rows))),
        ("machine", f"{machine.get('cpu', '?')}, {machine.get('cores', '?')} cores"),
        ("updated", str(data.get("updated", "?"))),
    ]
    section.tables.append(
        {
            "title": "ConvNet test accuracy (%) per cell",
            "columns": ["dataset", "method", "samples per class", "accuracy (%)", "distill s"],
            "rows": [
                [
                    r["dataset"],
                    r["method"],
                    "full" if r["ipc"] is None else r["ipc"],
                    f"{r['accuracy_mean']:.1f} ± {r['accuracy_std']:.1f}",
                    "–" if r["distill_s"] is None else round(float(r["distill_s"]), 1),
                ]
                for r in rows
            ],
        }
    )
    section.images.append(
        (
            figure_png(accuracy_vs_ipc_figure(rows)),
            "Accuracy vs samples per class (error bars: std over training seeds; dashed: full data)",
        )
    )
    return section


def read_input(path: str | os.PathLike, data_dir: str | os.PathLike | None = None, progress: bool = False) -> Section:
    """Recognise what ``path`` is and read it into a ``Section`` (KitError if it is nothing the report knows)."""
    path = Path(path)
    if not path.exists():
        raise KitError(f"{path}: no such file or folder")
    if path.is_dir():
        if (path / "results.json").exists():
            return experiment_section(path)
        if (path / "metrics.json").exists():
            return train_section(path, data_dir, progress)
        raise KitError(f"{path}: neither an experiment run folder (results.json) nor a kit train run (metrics.json)")
    if path.suffix == ".kit":
        kind = read_manifest(path).get("kind")
        if kind != "coreset":
            raise KitError(
                f"{path}: a '{kind}' artifact; the report shows coresets (give a model's run folder instead)"
            )
        return coreset_section(path)
    if path.suffix == ".json":
        return benchmark_section(path)
    raise KitError(f"{path}: not a run folder, coreset (.kit) or benchmark result (.json)")
