"""``kit export MODEL --format onnx --out FILE``: a trained model for the edge runtime."""
from __future__ import annotations

from pathlib import Path

import typer

from deploy.runtime.errors import KitError

FORMATS = ("onnx",)


def export_command(
    model_path: Path = typer.Argument(..., metavar="MODEL", help="Model file (.kit) written by kit train."),
    fmt: str = typer.Option("onnx", "--format", "-f", help="Export format: onnx."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output file (default: MODEL with the format's suffix)."),
    opset: int = typer.Option(18, "--opset", help="ONNX opset (>= 17)."),
) -> None:
    """Export a trained model (fp32) with its classes, feature config and normaliser embedded."""
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise KitError(f"--format: '{fmt}' is not supported (choose from {', '.join(FORMATS)})")
    if not model_path.is_file():
        raise KitError(f"{model_path}: no such model file")
    from deploy.export_onnx import export_onnx

    target = out or model_path.with_suffix(".onnx")
    path = export_onnx(model_path, target, opset=opset)
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB, opset {opset}, checked against PyTorch in onnxruntime)")


def register(app: typer.Typer) -> None:
    app.command("export")(export_command)
