"""``kit export MODEL --format onnx|tflite [--int8 --calibration CORESET.kit|--calibration-data auto] [--out FILE]``.

Why ``--int8`` demands ``--calibration``: static int8 quantisation fixes every activation range
from example inputs. Ranges taken from random or made-up features would silently ruin accuracy
on real audio, and a model file does not carry its training data, so the coreset (normalised
features of the same front-end) must be named explicitly, or ``--calibration-data`` draws a few
hundred real training clips of the model's dataset (``kit.training.calibration``). A coreset normalised with other
statistics than the model is re-normalised into the model's input space first.

After writing, the command prints the file size in bytes and the operator histogram
(``deploy.model_report``), what decides whether a target runtime can run the file.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import typer

from deploy.export_onnx import check_opset, export_onnx
from deploy.model_report import model_report
from deploy.quantize_onnx import quantize_onnx
from deploy.runtime.compat import FeatureSpace, renormalize, require_same_space
from deploy.runtime.coreset import Coreset
from deploy.runtime.errors import KitError
from deploy.runtime.safeio import check_output_path, require_regular_file

FORMATS = ("onnx", "tflite")


def calibration_features(coreset_path: Path, model_meta: dict) -> np.ndarray:
    """The coreset's features in the model's input space (N, C, F, T) float32."""
    coreset = Coreset.load(coreset_path)
    model_space = FeatureSpace.of(model_meta)
    if model_space.feature_config is not None:
        # calibration needs the model's front-end, not its classes: any clips of that front-end will do
        require_same_space(model_space, coreset, coreset_path, normalizer=False, classes=False)
    return renormalize(coreset.features, coreset.normalizer, model_space.normalizer)


def _default_out(model_path: Path, fmt: str, int8: bool) -> Path:
    return model_path.with_suffix(f"{'.int8' if int8 else ''}.{fmt}")


def export_command(
    model_path: Path = typer.Argument(..., metavar="MODEL", help="Model file (.kit) written by kit train."),
    fmt: str = typer.Option("onnx", "--format", "-f", help="Export format: onnx or tflite."),
    int8: bool = typer.Option(False, "--int8", help="Static int8 quantisation (needs --calibration)."),
    calibration: Path | None = typer.Option(
        None, "--calibration", "-c", metavar="CORESET.kit", help="Coreset whose features calibrate the int8 ranges."
    ),
    calibration_data: str | None = typer.Option(
        None,
        "--calibration-data",
        metavar="DATASET|auto",
        help="Calibrate on real training clips of DATASET (auto: the model's own), half augmented by the recipe.",
    ),
    calibration_clips: int = typer.Option(400, "--calibration-clips", help="Clips drawn for --calibration-data."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Where the datasets live (for --calibration-data)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output file (default: MODEL[.int8].onnx|.tflite)."),
    opset: int = typer.Option(18, "--opset", help="ONNX opset (>= 17)."),
) -> None:
    """Export a trained model (fp32 or int8) with its classes, feature config and normaliser embedded."""
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise KitError(f"--format: '{fmt}' is not supported (choose from {', '.join(FORMATS)})")
    require_regular_file(model_path, "model")  # "no such" only when missing; a folder/FIFO is said to be one
    if int8 and calibration is None and calibration_data is None:
        raise KitError("--int8 needs --calibration CORESET.kit or --calibration-data DATASET|auto (the int8 ranges)")
    if calibration is not None and calibration_data is not None:
        raise KitError("--calibration and --calibration-data: give one of them")
    if calibration is not None:
        require_regular_file(calibration, "coreset")
    target = out or _default_out(model_path, fmt, int8)
    if fmt == "onnx":
        check_opset(opset)
    check_output_path(target, "--out", inputs=(model_path, *([calibration] if calibration else [])))
    from kit.models import load_model  # lazy: pulls in torch

    model, meta = load_model(model_path)
    x_cal = calibration_features(calibration, meta) if calibration is not None else None
    if calibration_data is not None and int8:
        from kit.training.calibration import calibration_set  # lazy: pulls in torch, soundfile

        x_cal = calibration_set(
            meta, data_dir, dataset=None if calibration_data == "auto" else calibration_data, n=calibration_clips
        )
    if fmt == "tflite":
        from deploy.export_tflite import export_tflite  # lazy: pulls in torch

        path = export_tflite(model, target, int8=int8, calibration=x_cal, meta=meta)
        how = (
            "full-integer int8, checked in the TFLite interpreter"
            if int8
            else "fp32, checked against PyTorch in the TFLite interpreter"
        )
    else:
        if int8:
            with tempfile.TemporaryDirectory(prefix="kit-export-") as tmp:
                fp32 = export_onnx(model, Path(tmp) / "fp32.onnx", meta, opset=opset)
                path = quantize_onnx(fp32, target, x_cal)
            how = f"int8 QDQ, opset {opset}, checked against fp32 in onnxruntime"
        else:
            path = export_onnx(model, target, meta, opset=opset)
            how = f"fp32, opset {opset}, checked against PyTorch in onnxruntime"
    report = model_report(path)
    print(f"wrote {path} ({report.size_bytes} bytes, {how})")
    print(f"ops ({report.n_ops}): {report.ops_line()}")


def register(app: typer.Typer) -> None:
    app.command("export")(export_command)
