"""int8 exports: full-integer TFLite and QDQ ONNX, calibrated on a real coreset, measured on the
300 clips of the real FSDD test split; the ``kit export --int8`` round trip and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from export_fixtures import digits
from typer.testing import CliRunner

from deploy.export_tflite import export_tflite
from deploy.model_report import model_report
from deploy.quantize_onnx import per_channel_weights, quantize_onnx
from deploy.runtime.coreset import Coreset, Normalizer
from deploy.runtime.errors import KitError
from deploy.runtime.inference import OnnxModel
from deploy.runtime.models import open_model
from deploy.runtime.tflite_model import TfliteModel
from kit.cli import app, main
from kit.commands.export import calibration_features

# Bounds for int8 vs fp32 on the 300 real test clips. Target: >= 99 % top-1 agreement and <= 1
# point accuracy drop. Measured with this fixture (4000-sample ConvNet, ~89 % accurate, 50-clip
# random coreset): TFLite 99.3 % agreement / 0.0 points, ONNX 100 % / 0.0. The fail bounds are
# looser because one flipped clip is 0.33 points here, and a briefly trained model has small
# margins: other seeds and training lengths measured 97.0-99.3 % for TFLite (the decomposed
# instance norm is quantised too; ONNX keeps it float). 97 % / 3 points still catches a broken
# calibration (random-order moving-average ranges gave 97.7 % on a better model, wrong input
# scales give chance level).
MIN_AGREEMENT = 0.97
MAX_ACCURACY_DROP = 0.03


@pytest.fixture(scope="module")
def d(data_dir: Path, tmp_path_factory):
    return digits(data_dir, tmp_path_factory)


def _accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    return float((logits.argmax(1) == y).mean())


def _compare(d, logits: np.ndarray, label: str) -> None:
    ref = d.torch_outputs(d.fsdd.x_test)[0]
    agreement = float((logits.argmax(1) == ref.argmax(1)).mean())
    drop = _accuracy(ref, d.fsdd.y_test) - _accuracy(logits, d.fsdd.y_test)
    print(
        f"{label}: top-1 agreement {agreement:.3f}, accuracy fp32 {_accuracy(ref, d.fsdd.y_test):.3f} "
        f"int8 {_accuracy(logits, d.fsdd.y_test):.3f} (drop {100 * drop:.1f} points) on {len(ref)} real clips"
    )
    assert agreement >= MIN_AGREEMENT, f"{label}: top-1 agreement {agreement:.3f} < {MIN_AGREEMENT}"
    assert drop <= MAX_ACCURACY_DROP, f"{label}: accuracy drop {drop:.3f} > {MAX_ACCURACY_DROP}"


# TFLite ----------------------------------------------------------------------------------------
def test_int8_tflite_is_integer_only(d) -> None:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(d.int8_tflite))
    details = interpreter.get_tensor_details()
    kinds = {np.dtype(t["dtype"]).name for t in details}
    assert kinds <= {"int8", "int32"}, f"non-integer tensors: {kinds}"
    assert sum(np.dtype(t["dtype"]).name == "int8" for t in details) > sum(
        np.dtype(t["dtype"]).name == "int32" for t in details
    )
    (inp,) = interpreter.get_input_details()
    assert np.dtype(inp["dtype"]) == np.int8 and inp["quantization"][0] > 0
    assert all(np.dtype(o["dtype"]) == np.int8 and o["quantization"][0] > 0 for o in interpreter.get_output_details())
    report = model_report(d.int8_tflite)
    assert report.integer_only and "QUANTIZE" not in report.ops and "DEQUANTIZE" not in report.ops
    model = TfliteModel(d.int8_tflite)
    quant = json.loads(model.metadata.props["kit.quantization"])
    assert model.quantized and quant["type"] == "int8" and quant["calibration_samples"] == len(d.calibration)
    assert quant["inputs"]["features"]["scale"] == pytest.approx(inp["quantization"][0])
    assert quant["calibration_top1_agreement"] >= 0.9
    out = model.run(d.fsdd.x_test[:3])  # float32 in, float32 out
    assert out["logits"].dtype == np.float32 and out["embedding"].shape == (3, 256)


def test_int8_tflite_accuracy_on_real_clips(d) -> None:
    _compare(d, TfliteModel(d.int8_tflite).predict(d.fsdd.x_test), "int8 TFLite")


def test_int8_tflite_size_and_ops(d) -> None:
    fp32, int8 = model_report(d.fp32_tflite), model_report(d.int8_tflite)
    print(f"TFLite sizes: fp32 {fp32.size_bytes} B, int8 {int8.size_bytes} B; ops {int8.ops_line()}")
    assert int8.size_bytes * 2 < fp32.size_bytes, "int8 weights: well under half the fp32 file"
    for op in ("CONV_2D", "FULLY_CONNECTED", "AVERAGE_POOL_2D", "MEAN", "RSQRT"):
        assert int8.ops.get(op) == fp32.ops.get(op), op


def test_int8_export_refuses_missing_or_bad_calibration(d, tmp_path: Path) -> None:
    for calibration, needle in (
        (None, "calibration"),
        (np.zeros((4, 3, 13, 50), np.float32), "(4, 3, 13, 50)"),
        (np.full((2, 3, 13, 64), np.nan, np.float32), "NaN"),
    ):
        with pytest.raises(KitError) as info:
            export_tflite(d.model, tmp_path / "x.tflite", int8=True, calibration=calibration)
        assert needle in str(info.value) and "\n" not in str(info.value)
    assert not list(tmp_path.iterdir())


# ONNX ------------------------------------------------------------------------------------------
def test_int8_onnx_is_qdq_per_channel_with_metadata(d) -> None:
    proto, source = onnx.load(str(d.int8_onnx)), onnx.load(str(d.fp32_onnx))
    ops = {n.op_type for n in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv", "Gemm"} <= ops
    weights = per_channel_weights(proto)
    assert sorted(weights.values()) == [10, 32, 32, 32], weights  # one scale per output channel
    inits = {i.name: i for i in proto.graph.initializer}
    activation_zero_points = [inits[n.input[2]] for n in proto.graph.node if n.op_type == "QuantizeLinear"]
    assert activation_zero_points and all(z.data_type == onnx.TensorProto.UINT8 for z in activation_zero_points)
    weight_zero_points = [
        inits[n.input[2]] for n in proto.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in weights
    ]
    assert len(weight_zero_points) == 4 and all(z.data_type == onnx.TensorProto.INT8 for z in weight_zero_points)
    props = {p.key: p.value for p in proto.metadata_props}
    for p in source.metadata_props:
        assert props[p.key] == p.value, p.key
    quant = json.loads(props["kit.quantization"])
    assert quant["format"] == "QDQ" and quant["activations"].startswith("uint8") and quant["calibration_samples"] == 50
    assert [o.name for o in proto.graph.output] == ["logits", "embedding"]
    model = open_model(d.int8_onnx)
    out = model.run(d.fsdd.x_test[:5])
    assert out["logits"].shape == (5, 10) and out["embedding"].shape == (5, 256) and out["logits"].dtype == np.float32
    assert model.metadata.classes == d.fsdd.classes and model.input_shape == (3, 13, 64)
    fp32, int8 = model_report(d.fp32_onnx), model_report(d.int8_onnx)
    print(f"ONNX sizes: fp32 {fp32.size_bytes} B, int8 {int8.size_bytes} B; ops {int8.ops_line()}")
    assert int8.size_bytes < 0.75 * fp32.size_bytes


def test_int8_onnx_accuracy_on_real_clips(d) -> None:
    _compare(d, OnnxModel(d.int8_onnx).predict(d.fsdd.x_test), "int8 ONNX")


def test_onnx_model_accepts_bytes(d) -> None:
    data = d.fp32_onnx.read_bytes()
    x = d.fsdd.x_test[:4]
    from_bytes, from_path = OnnxModel(data), OnnxModel(d.fp32_onnx)
    assert np.array_equal(from_bytes.predict(x), from_path.predict(x))
    assert from_bytes.input_shape == from_path.input_shape == (3, 13, 64)
    assert from_bytes.metadata.classes == d.fsdd.classes
    assert np.array_equal(open_model(data, fmt="onnx").embed(x), from_path.embed(x))
    for blob, needle in ((b"", "empty"), (b"\x00garbage" * 10, "not a valid ONNX")):
        with pytest.raises(KitError) as info:
            OnnxModel(blob)
        assert needle in str(info.value) and "\n" not in str(info.value)


def test_quantize_onnx_errors(d, tmp_path: Path) -> None:
    out = tmp_path / "q.onnx"
    cases = [
        (lambda: quantize_onnx(tmp_path / "missing.onnx", out, d.calibration), "missing.onnx"),
        (lambda: quantize_onnx(d.fp32_onnx, out, d.calibration[:, :, :, :32]), "needs (N, 3, 13, 64)"),
        (lambda: quantize_onnx(d.fp32_onnx, out, d.calibration, activation_type="int4"), "int4"),
        (lambda: quantize_onnx(d.fp32_onnx, out, d.calibration, min_agreement=1.01), "agrees with fp32"),
    ]
    for call, needle in cases:
        with pytest.raises(KitError) as info:
            call()
        assert needle in str(info.value) and "\n" not in str(info.value)
    assert not out.exists() and not list(tmp_path.iterdir()), "nothing written on refusal"


# CLI and calibration data ---------------------------------------------------------------------
def test_kit_export_int8_cli_round_trip(d, tmp_path: Path, capsys) -> None:
    runner = CliRunner()
    for fmt in ("tflite", "onnx"):
        out = tmp_path / f"cli.int8.{fmt}"
        result = runner.invoke(
            app,
            [
                "export",
                str(d.kit_path),
                "--format",
                fmt,
                "--int8",
                "--calibration",
                str(d.coreset_path),
                "--out",
                str(out),
            ],
        )
        assert result.exit_code == 0, result.output
        assert f"({out.stat().st_size} bytes" in result.output and "ops (" in result.output
        model = open_model(out)
        assert json.loads(model.metadata.props["kit.quantization"])["type"] == "int8"
        agreement = (model.predict(d.fsdd.x_test).argmax(1) == d.torch_outputs(d.fsdd.x_test)[0].argmax(1)).mean()
        assert agreement >= MIN_AGREEMENT, (fmt, agreement)
    assert "QuantizeLinear" in result.output  # the ONNX op histogram
    with pytest.raises(SystemExit) as exc:
        main(["export", str(d.kit_path), "--format", "tflite", "--int8", "--out", str(tmp_path / "x.tflite")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "--calibration" in err and "\n" not in err and not (tmp_path / "x.tflite").exists()


def test_calibration_features_map_a_coreset_into_the_models_input_space(d, tmp_path: Path) -> None:
    from kit.models import load_model

    _, meta = load_model(d.kit_path)
    assert np.allclose(calibration_features(d.coreset_path, meta), d.calibration, atol=1e-6)
    # The same clips stored under other normalisation statistics come back identical.
    raw = d.fsdd.normalizer.inverse(d.calibration)
    other = Normalizer(d.fsdd.normalizer.mean + 1.0, d.fsdd.normalizer.std * 2.0)
    src = Coreset.load(d.coreset_path)
    Coreset(other.transform(raw), src.labels, src.classes, src.feature_config, other, "random").save(
        tmp_path / "o.kit", dtype="float32"
    )
    assert np.allclose(calibration_features(tmp_path / "o.kit", meta), d.calibration, atol=1e-4)
    # A coreset of another front-end is refused.
    config = src.feature_config.with_(n_mfcc=src.feature_config.n_mfcc, hop_ms=src.feature_config.hop_ms * 2)
    Coreset(src.features, src.labels, src.classes, config, src.normalizer, "random").save(tmp_path / "f.kit")
    with pytest.raises(KitError, match="front-end"):
        calibration_features(tmp_path / "f.kit", meta)
