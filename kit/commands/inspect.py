"""``kit inspect FILE``: verify a kit artifact (coreset, model, bundle) and show what is inside."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from deploy.runtime.artifact import Artifact, read_artifact
from deploy.runtime.bundle import BUNDLE_SCHEMA, Bundle, describe
from kit.coreset import Coreset


def _describe_array(array: np.ndarray) -> str:
    return f"{array.dtype} {tuple(array.shape)}"


def _coreset_rows(artifact: Artifact, path: Path) -> list[tuple[str, str]]:
    coreset = Coreset.from_artifact(artifact, path)
    cfg = coreset.feature_config
    labels = "soft" if coreset.labels.ndim == 2 else "hard"
    counts = ", ".join(f"{name}:{n}" for name, n in coreset.class_counts().items())
    return [
        ("method", coreset.method),
        ("samples", f"{len(coreset.features)} ({coreset.ipc} per class, {labels} labels)"),
        ("classes", counts),
        ("features", f"{cfg.kind} {cfg.shape} @ {cfg.sample_rate} Hz, {cfg.duration_s:g} s"),
        ("storage", artifact.meta.get("storage_dtype", "?")),
        ("seed", str(coreset.seed)),
        ("source", json.dumps(coreset.source, sort_keys=True)),
        ("params", json.dumps(coreset.params, sort_keys=True)),
    ]


def _bundle_rows(artifact: Artifact, path: Path) -> list[tuple[str, str]]:
    """A bundle is verified as the device would load it (head, models, front-end, replay)."""
    bundle = Bundle.from_artifact(artifact, path)
    return [
        ("bundle schema", f"{artifact.meta.get('bundle_schema')} (this kit reads <= {BUNDLE_SCHEMA})"),
        *describe(bundle, path),
    ]


def _generic_rows(artifact: Artifact) -> list[tuple[str, str]]:
    rows = []
    for key, value in sorted(artifact.meta.items()):
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        rows.append((key, text if len(text) < 400 else text[:397] + "..."))
    return rows


def inspect_command(
    path: Path = typer.Argument(..., help="A coreset, model or bundle file written by the kit."),
    as_json: bool = typer.Option(False, "--json", help="Print the verified manifest metadata as JSON."),
) -> None:
    """Verify a kit artifact (format version, checksums) and show its contents."""
    artifact = read_artifact(path)
    if artifact.kind == "bundle":
        rows = _bundle_rows(artifact, path)  # verifies the bundle before anything is shown
    elif artifact.kind == "coreset":
        rows = _coreset_rows(artifact, path)
    elif artifact.kind == "model":
        from kit.models.artifact import load_model  # lazy: torch-side: only for model files

        load_model(path)  # rebuilds the network: weights that do not fit the architecture are refused
        rows = _generic_rows(artifact)
    else:
        rows = _generic_rows(artifact)
    if as_json:
        print(
            json.dumps(
                {"kind": artifact.kind, "created": artifact.created, "meta": artifact.meta}, indent=1, sort_keys=True
            )
        )
        return
    table = Table(title=f"{path} — {artifact.kind}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("format version", str(artifact.format_version))
    table.add_row("created", artifact.created)
    for key, value in rows:
        table.add_row(key, value)
    for name, array in sorted(artifact.arrays.items()):
        table.add_row(f"array {name}", _describe_array(array))
    for name, blob in sorted(artifact.blobs.items()):
        table.add_row(f"blob {name}", f"{len(blob)} bytes")
    table.add_row("checksums", f"OK ({len(artifact.arrays) + len(artifact.blobs)} members verified)")
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.command("inspect")(inspect_command)
