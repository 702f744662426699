"""``kit bundle MODEL --coreset CORESET --out BUNDLE``: package a model for a device.

The bundle holds the exported model(s), the front-end, the classifier head, the coreset as
replay memory and the detector settings (``deploy/bundle_builder.py`` builds it,
``deploy/runtime/bundle.py`` reads it). torch is imported inside the command only.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from deploy.runtime.errors import KitError
from deploy.runtime.safeio import check_output_path, require_regular_file

from .detector_options import with_detector_options


def _formats(values: list[str]) -> list[str]:
    """``--format onnx --format tflite`` or ``--format onnx,tflite``."""
    out = [part.strip().lower() for value in values for part in value.split(",") if part.strip()]
    if not out:
        raise KitError("--format: give onnx and/or tflite")
    return out


@with_detector_options("default {default}")
def bundle_command(
    model_path: Path = typer.Argument(..., metavar="MODEL", help="Model file (.kit) written by kit train."),
    coreset: Path = typer.Option(..., "--coreset", "-c", help="The coreset (.kit) the model was trained on (replay memory)."),
    out: Path = typer.Option(..., "--out", "-o", help="Bundle file to write (.kit)."),
    fmt: list[str] = typer.Option(["onnx"], "--format", "-f", help="Model format(s): onnx, tflite (repeat or comma-separate)."),
    int8: bool = typer.Option(False, "--int8", help="Add a full-integer int8 model per format, calibrated on the coreset (the default model)."),
    replay_dtype: str = typer.Option("int8", "--replay-dtype", help="Replay coreset storage: int8 (per-row scale) or float16."),
    sign: Path | None = typer.Option(None, "--sign", metavar="KEYFILE",
                                     help="Sign the bundle with HMAC-SHA256 using the key in KEYFILE (>= 16 bytes)."),
    detector: dict[str, Any] | None = None,
) -> None:
    """Bundle a trained model with its coreset, front-end and detector settings for a device."""
    from deploy.bundle_builder import build_bundle
    from deploy.runtime.bundle import Bundle, describe
    from deploy.runtime.features import FeatureConfig
    from deploy.runtime.recognizer import DetectorSettings

    check_output_path(out, "--out", inputs=(model_path, coreset))
    from deploy.runtime.artifact import read_key

    key = read_key(sign, "--sign") if sign is not None else None
    settings = None
    if detector and any(v is not None for v in detector.values()):
        from deploy.runtime.artifact import read_manifest

        require_regular_file(model_path, "model")  # "no such" only when missing; a folder/FIFO is said to be one
        config = read_manifest(model_path).get("meta", {}).get("feature_config")
        window = FeatureConfig.from_dict(config).duration_s if isinstance(config, dict) else 1.0
        settings = DetectorSettings(window_s=window).with_options(detector)
    path = build_bundle(model_path, coreset, out, formats=_formats(fmt), int8=int8, replay_dtype=replay_dtype.lower(),
                        detector=settings, sign_key=key)
    bundle = Bundle.load(path)
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB, verified)")
    for key, value in describe(bundle, path):
        print(f"  {key}: {value}")


def register(app: typer.Typer) -> None:
    app.command("bundle")(bundle_command)
