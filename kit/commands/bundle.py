"""``kit bundle MODEL --coreset CORESET --out BUNDLE``: package a model for a device.

``--int8`` files can be calibrated on real training clips (``--calibration-data auto``) after a few
epochs of quantisation-aware fine-tuning (``--qat-epochs``), and ``--max-fa-per-hour N`` chooses
per-keyword detection thresholds on a validation stream of training audio (``bundle_thresholds``).

The bundle holds the exported model(s), the front-end, the classifier head, the coreset as
replay memory and the detector settings (``deploy/bundle_builder.py`` builds it,
``deploy/runtime/bundle.py`` reads it). torch is imported inside the command only.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import typer

from deploy.bundle_builder import build_bundle
from deploy.runtime.artifact import atomic_write_bytes, read_key, read_manifest
from deploy.runtime.bundle import Bundle, describe
from deploy.runtime.errors import KitError
from deploy.runtime.features import FeatureConfig
from deploy.runtime.recognizer import DetectorSettings
from deploy.runtime.safeio import check_output_path, require_regular_file

from .bundle_thresholds import check_budget, set_thresholds
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
    coreset: Path = typer.Option(
        ..., "--coreset", "-c", help="The coreset (.kit) the model was trained on (replay memory)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Bundle file to write (.kit)."),
    fmt: list[str] = typer.Option(
        ["onnx"], "--format", "-f", help="Model format(s): onnx, tflite (repeat or comma-separate)."
    ),
    int8: bool = typer.Option(
        False, "--int8", help="Add a full-integer int8 model per format, calibrated on the coreset (the default model)."
    ),
    replay_dtype: str = typer.Option(
        "int8", "--replay-dtype", help="Replay coreset storage: int8 (per-row scale) or float16."
    ),
    sign: Path | None = typer.Option(
        None,
        "--sign",
        metavar="KEYFILE",
        help="Sign the bundle with HMAC-SHA256 using the key in KEYFILE (>= 16 bytes).",
    ),
    calibration_data: str | None = typer.Option(
        None,
        "--calibration-data",
        metavar="DATASET|auto",
        help="With --int8: calibrate on real training clips of DATASET (auto: the model's own), not the coreset.",
    ),
    calibration_clips: int = typer.Option(400, "--calibration-clips", help="Clips drawn for --calibration-data."),
    qat_epochs: int = typer.Option(
        0, "--qat-epochs", help="With --int8: epochs of fake-quant fine-tuning first (0 = none)."
    ),
    max_fa_per_hour: float | None = typer.Option(
        None,
        "--max-fa-per-hour",
        metavar="N",
        help="Per-keyword thresholds for at most N false accepts per hour on a validation stream of training audio.",
    ),
    validation_minutes: float = typer.Option(
        120.0,
        "--validation-minutes",
        help="Length of that validation stream (120 min: a 2 FA/h budget then allows 4 false accepts, not 1; "
        "on the kws12 benchmark streams 30 min gave 19 FA/h for a 2 FA/h request, 120 min 10 FA/h).",
    ),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Where the datasets live (calibration, validation)."),
    detector: dict[str, Any] | None = None,
) -> None:
    """Bundle a trained model with its coreset, front-end and detector settings for a device."""
    check_output_path(out, "--out", inputs=(model_path, coreset))

    key = read_key(sign, "--sign") if sign is not None else None
    settings = None
    if detector and any(v is not None for v in detector.values()):
        require_regular_file(model_path, "model")  # "no such" only when missing; a folder/FIFO is said to be one
        config = read_manifest(model_path).get("meta", {}).get("feature_config")
        window = FeatureConfig.from_dict(config).duration_s if isinstance(config, dict) else 1.0
        settings = DetectorSettings(window_s=window).with_options(detector)
    if max_fa_per_hour is not None:
        check_budget(max_fa_per_hour, validation_minutes)  # before any work: a budget the stream cannot resolve
    x_cal = None
    if (calibration_data is not None or qat_epochs) and not int8:
        raise KitError("--calibration-data and --qat-epochs prepare the int8 model: add --int8")
    if qat_epochs < 0:
        raise KitError(f"--qat-epochs must be >= 0, got {qat_epochs}")
    if calibration_data is not None:
        from kit.models import load_model  # lazy: pulls in torch
        from kit.training.calibration import calibration_set  # lazy: pulls in torch, soundfile

        _, meta = load_model(model_path)
        x_cal = calibration_set(
            meta, data_dir, dataset=None if calibration_data == "auto" else calibration_data, n=calibration_clips
        )
    with tempfile.TemporaryDirectory(prefix="kit-qat-") as scratch:
        if qat_epochs:
            model_path = _qat_model(model_path, Path(scratch), qat_epochs, data_dir)
        _bundle(
            model_path,
            coreset,
            out,
            fmt,
            int8,
            replay_dtype,
            settings,
            x_cal,
            calibration_data,
            max_fa_per_hour,
            validation_minutes,
            data_dir,
            key,
        )


def _qat_model(model_path: Path, scratch: Path, epochs: int, data_dir: Path | None) -> Path:
    """``model_path`` fine-tuned with fake quantisation, written to ``scratch`` (its train config records it)."""
    from kit.models import load_model, save_model  # lazy: pulls in torch
    from kit.models.artifact import saveable_meta  # lazy: pulls in torch
    from kit.training.qat import qat_for_int8  # lazy: pulls in torch, soundfile

    model, meta = load_model(model_path)
    done = qat_for_int8(model, meta, data_dir, epochs=epochs)
    print(f"quantisation-aware fine-tuning: {done['epochs']} epochs, {done['steps']} steps on {done['n']} clips")
    meta = {**saveable_meta(meta), "train_config": {**(meta.get("train_config") or {}), "qat": done}}
    return save_model(scratch / model_path.name, model, meta)


def _bundle(
    model_path: Path,
    coreset: Path,
    out: Path,
    fmt: list[str],
    int8: bool,
    replay_dtype: str,
    settings: Any,
    x_cal: Any,
    calibration_data: str | None,
    max_fa_per_hour: float | None,
    validation_minutes: float,
    data_dir: Path | None,
    sign_key: bytes | None,
) -> None:
    source = None if x_cal is None else f"{len(x_cal)} training clips ({calibration_data})"

    def build(target: Path) -> Path:
        return build_bundle(
            model_path,
            coreset,
            target,
            formats=_formats(fmt),
            int8=int8,
            replay_dtype=replay_dtype.lower(),
            detector=settings,
            calibration=x_cal,
            calibration_source=source,
            sign_key=sign_key,
        )

    if max_fa_per_hour is None:
        path = build(out)
    else:
        # built beside the target and renamed only once the thresholds are in: no bundle without them is left
        tmp = out.with_name(f".{out.name}.thresholds.tmp")
        try:
            build(tmp)
            choice = set_thresholds(tmp, model_path, max_fa_per_hour, validation_minutes, data_dir, sign_key=sign_key)
            atomic_write_bytes(out, tmp.read_bytes(), lock=True)
            path = out
        finally:
            tmp.unlink(missing_ok=True)
        print(
            f"thresholds for <= {max_fa_per_hour:g} false accepts per hour ({choice['hours'] * 60:.0f}-min "
            f"validation stream of training audio): {choice['fa_per_hour']:g} FA/h, "
            f"false rejects {100 * choice['frr']:.1f} %"
        )
        print(f"  validation material: {choice['validation_material']}")
        for label, row in choice["per_keyword"].items():
            print(
                f"  {label}: {row['threshold']:g} ({row['hits']}/{row['words']} words, "
                f"{row['false_accepts']} false accepts)"
            )
    bundle = Bundle.load(path)
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB, verified)")
    for key, value in describe(bundle, path):
        print(f"  {key}: {value}")


def register(app: typer.Typer) -> None:
    app.command("bundle")(bundle_command)
