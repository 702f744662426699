"""MCU-ready models (issue 14, part 1): DS-CNN S/M and the small ConvNet export to int8 TFLite graphs
holding only ops CMSIS-NN accelerates, with batch norm folded, no TRANSPOSE (NHWC input) and the
``embedding`` output kept; TensorFlow Lite Micro runs them bit-identically to LiteRT's reference
kernels on real Speech Commands clips, and the small kws12 model fits 64 KB flash / 32 KB arena.

Real data: Speech Commands kws12 (test-set speakers), a few clips per class.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from export_fixtures import with_realistic_batch_norm
from torch import nn
from typer.testing import CliRunner

from deploy.edge_graph import MCU_OPS
from deploy.export_tflite import export_tflite
from deploy.model_report import model_report
from deploy.runtime.errors import KitError
from deploy.runtime.tflite_model import TfliteModel
from firmware_sim.reference import TflmModel
from kit.cli import app
from kit.models import build_model

REPO = Path(__file__).resolve().parents[1]
EDGE = [("dscnn-mcu", {"size": "small"}), ("dscnn-mcu", {"size": "medium"}), ("convnet-mcu", {})]
IDS = ["dscnn-mcu-s", "dscnn-mcu-m", "convnet-mcu"]
FORBIDDEN = {"TRANSPOSE", "MEAN", "RSQRT", "PAD", "MUL", "SUB", "QUANTIZE", "DEQUANTIZE"}
KB = 1024


@pytest.fixture(scope="module")
def kws12(data_dir: Path):
    from kit.pipeline import load_training_set

    torch.set_num_threads(1)
    fs, _ = load_training_set("speech_commands", data_dir, task="kws12", limit_per_class=8, progress=False)
    return fs


@pytest.fixture(scope="module")
def exports(kws12, tmp_path_factory):
    """(model, fp32 path, int8 path) per edge model, int8 calibrated on the real training clips.

    Untrained weights keep the fixture cheap; graph, layout, arena and bit-exactness do not depend
    on training (the trained path is covered by ``test_selectable_in_distill_train_and_bundle``)."""
    root = tmp_path_factory.mktemp("mcu")
    out = {}
    for (arch, kwargs), name in zip(EDGE, IDS):
        model = with_realistic_batch_norm(arch, kwargs, kws12)
        meta = {"classes": kws12.classes, "feature_config": kws12.config.to_dict()}
        fp32 = export_tflite(model, root / f"{name}.fp32.tflite", meta=meta)
        int8 = export_tflite(
            model, root / f"{name}.int8.tflite", int8=True, calibration=kws12.x_train, meta=meta, min_agreement=0.0
        )  # untrained: near-tied logits, top-1 agreement means little
        out[name] = (model, fp32, int8)
    return out


@pytest.mark.parametrize("name", IDS)
def test_graph_uses_only_cmsis_nn_ops_with_batch_norm_folded(exports, name: str) -> None:
    model, fp32, int8 = exports[name]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    depthwise = sum(m.groups > 1 for m in convs)
    for path in (fp32, int8):
        report = model_report(path)
        assert set(report.ops) <= MCU_OPS, report.ops_line()
        assert not set(report.ops) & FORBIDDEN, report.ops_line()
        # one op per convolution (norm folded in, nothing added), one global pool, the head
        assert report.ops.get("DEPTHWISE_CONV_2D", 0) == depthwise
        assert report.ops["CONV_2D"] == len(convs) - depthwise
        assert report.ops["FULLY_CONNECTED"] == 1 and report.ops["AVERAGE_POOL_2D"] >= 1
        assert report.inputs[0]["shape"] == [1, *model.in_shape[1:], model.in_shape[0]]  # NHWC
    report = model_report(int8)
    assert report.integer_only and report.inputs[0]["dtype"] == "int8"
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == len(convs)


@pytest.mark.parametrize("name", IDS)
def test_embedding_output_and_host_side_layout(exports, kws12, name: str) -> None:
    model, fp32, int8 = exports[name]
    x = kws12.x_test[:12]
    runtime = TfliteModel(fp32)
    assert runtime.layout == "NHWC" and runtime.input_shape == tuple(model.in_shape)
    assert runtime.output_names == ["logits", "embedding"]
    out = runtime.run(x)  # (N, C, F, T) in: the runtime transposes on the host
    with torch.no_grad():
        ref_logits, ref_embedding = model.forward_with_embedding(torch.from_numpy(x))
    assert out["embedding"].shape == (12, model.embedding_dim)
    assert np.abs(out["embedding"] - ref_embedding.numpy()).max() < 1e-4
    assert np.abs(out["logits"] - ref_logits.numpy()).max() < 1e-4
    head = out["embedding"] @ model.head.weight.detach().numpy().T + model.head.bias.detach().numpy()
    assert np.abs(head - out["logits"]).max() < 1e-4  # on-device learning replaces only this head
    meta = json.loads(TfliteModel(int8).metadata.props["kit.quantization"])
    assert meta["type"] == "int8" and 0.0 <= meta["calibration_top1_agreement"] <= 1.0


def _double_rounding(acc: np.ndarray, real_multiplier: float) -> np.ndarray:
    """TFLM's MultiplyByQuantizedMultiplier: SaturatingRoundingDoublingHighMul, then RoundingDivideByPOT."""
    mantissa, exponent = np.frexp(real_multiplier)
    q = int(round(float(mantissa) * (1 << 31)))
    if q == 1 << 31:
        q, exponent = q // 2, exponent + 1
    out = []
    for a in (int(v) << max(int(exponent), 0) for v in acc):
        ab = a * q
        high = (
            int(np.trunc((ab + ((1 << 30) if ab >= 0 else 1 - (1 << 30))) / 2**31))
            if abs(ab) < 2**52
            else ((ab + ((1 << 30) if ab >= 0 else 1 - (1 << 30))) // (1 << 31))
        )
        shift = max(-int(exponent), 0)
        mask = (1 << shift) - 1
        out.append((high >> shift) + int((high & mask) > (mask >> 1) + (1 if high < 0 else 0)))
    return np.array(out)


@pytest.mark.parametrize("name", IDS)
def test_tflm_matches_litert_reference_kernels_on_real_clips(exports, kws12, name: str) -> None:
    """TFLM vs LiteRT BUILTIN_REF on 24 real clips (2 per class).

    Measured: the convolution / pooling part (the ``embedding`` output) is bit-identical; the
    FULLY_CONNECTED logits may differ by 1 LSB at a rounding tie, because LiteRT 2.3's reference FC
    rounds once and TFLM's twice; TFLM's logits are exactly the double-rounding FC of its embedding.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    _, _, int8 = exports[name]
    data = int8.read_bytes()
    tflm = TflmModel(data, name)
    ref = Interpreter(model_content=data, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    ref.allocate_tensors()
    (inp,) = ref.get_input_details()
    scale, zero = inp["quantization"]
    order = json.loads(TfliteModel(data).metadata.props["kit.outputs"])
    li, ei = order.index("logits"), order.index("embedding")
    details = ref.get_output_details()
    (fc,) = [op for op in ref._get_ops_details() if op["op_name"] == "FULLY_CONNECTED"]
    tensors = {t["index"]: t for t in ref.get_tensor_details()}
    weights, bias = (ref.get_tensor(int(i)).astype(np.int64) for i in fc["inputs"][1:3])
    w_scale = float(tensors[int(fc["inputs"][1])]["quantization_parameters"]["scales"][0])
    (e_scale, e_zero), (l_scale, l_zero) = details[ei]["quantization"], details[li]["quantization"]
    x = kws12.x_test[:: max(1, len(kws12.x_test) // 24)][:24]
    assert len(x) == 24
    identical_logits = 0
    runtime = TfliteModel(data, reference=True)
    for clip in x:
        q = np.clip(np.round(clip.transpose(1, 2, 0)[None] / scale) + zero, -128, 127).astype(np.int8)
        got = tflm.run(q)
        ref.set_tensor(inp["index"], q)
        ref.invoke()
        want = [ref.get_tensor(d["index"]) for d in details]
        assert [g.dtype for g in got] == [np.int8, np.int8]
        assert np.array_equal(got[ei], want[ei])  # convolutions + pooling: bit-identical
        assert np.abs(got[li].astype(int) - want[li]).max() <= 1
        identical_logits += np.array_equal(got[li], want[li])
        acc = weights @ (got[ei].reshape(-1).astype(np.int64) - e_zero) + bias
        expected = np.clip(_double_rounding(acc, e_scale * w_scale / l_scale) + l_zero, -128, 127)
        assert np.array_equal(got[li].reshape(-1), expected)  # TFLM's FC arithmetic, reproduced exactly
        # the kit runtime (host-side quantise + NHWC transpose, BUILTIN_REF) sees LiteRT's bytes
        embedding = runtime.run(clip)["embedding"]
        assert np.array_equal(np.round(embedding / e_scale).astype(int) + e_zero, want[ei].astype(int))
    assert identical_logits >= 20, identical_logits


def test_small_kws12_model_fits_64kb_flash_and_32kb_arena(exports, kws12) -> None:
    _, _, int8 = exports["convnet-mcu"]
    arena = TflmModel(int8.read_bytes()).arena_bytes()
    assert int8.stat().st_size <= 64 * KB and arena <= 32 * KB, (int8.stat().st_size, arena)
    # DS-CNN-S fits the same budget; M does not fit the arena (its 172 channels at 5 x 28)
    small = TflmModel(exports["dscnn-mcu-s"][2].read_bytes()).arena_bytes()
    medium = TflmModel(exports["dscnn-mcu-m"][2].read_bytes()).arena_bytes()
    assert exports["dscnn-mcu-s"][2].stat().st_size <= 64 * KB and small <= 32 * KB < medium


def test_log_mel_input_also_fits_the_budget() -> None:
    from deploy.mcu_budget import measure_budget

    torch.manual_seed(0)
    row = measure_budget(build_model("convnet-mcu", (1, 40, 64), 12))
    assert row["mcu_ops_only"] and row["layout"] == "NHWC", row
    assert row["int8_flash_bytes"] <= 64 * KB and row["arena_bytes"] <= 32 * KB, row


def test_instance_norm_variant_is_not_mcu_ready_and_dscnn_spec_is_unchanged() -> None:
    shape = (3, 13, 64)
    inst = build_model("convnet-mcu", shape, 12, norm="instance")
    assert not inst.mcu_ready and inst.tflite_layout == "NCHW"
    assert build_model("dscnn-mcu", shape, 12).mcu_ready
    plain = build_model("dscnn", shape, 12)  # artifacts written before the padding option rebuild unchanged
    assert "padding" not in plain.spec["arch_kwargs"] and not plain.mcu_ready
    assert build_model("dscnn-mcu", shape, 12).spec["arch_kwargs"]["padding"] == "valid"
    with pytest.raises(KitError, match="padding"):
        build_model("dscnn", shape, 12, padding="same")


def test_kit_models_shows_int8_flash_and_tflm_arena(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    runner = CliRunner()
    args = ["models", "--arch", "convnet-mcu", "--arch", "dscnn-mcu", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = {(r["arch"], r["variant"]): r for r in json.loads(result.stdout)["models"]}  # stderr: quantiser bars
    assert set(rows) == {("convnet-mcu", "width 32"), ("dscnn-mcu", "small"), ("dscnn-mcu", "medium")}
    for row in rows.values():
        assert row["mcu_ops_only"] is True and set(row["ops"]) <= MCU_OPS
        assert 10 * KB < row["int8_flash_bytes"] and 4 * KB < row["arena_bytes"]
    assert rows[("convnet-mcu", "width 32")]["arena_bytes"] <= 32 * KB
    assert rows[("dscnn-mcu", "medium")]["int8_flash_bytes"] > 3 * rows[("dscnn-mcu", "small")]["int8_flash_bytes"]
    cache = tmp_path / "audio-distill-kit" / "mcu_budget.json"
    assert len(json.loads(cache.read_text())) == 3
    again = runner.invoke(app, args)  # from the cache: the same numbers
    assert json.loads(again.stdout)["models"] == json.loads(result.stdout)["models"]
    table = runner.invoke(app, ["models", "--arch", "convnet-mcu"])
    assert table.exit_code == 0 and "TFLM arena" in table.output and "KiB" in table.output
    bad = runner.invoke(app, ["models", "--arch", "nope", "--no-mcu"])
    assert bad.exit_code != 0 and "--arch" in str(bad.exception) and "\n" not in str(bad.exception)


def test_without_tflite_micro_the_arena_degrades_to_a_note(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['tflite_micro'] = None\n"
        "import torch; torch.manual_seed(0)\n"
        "from kit.models import build_model\n"
        "from deploy.mcu_budget import measure_budget\n"
        "from firmware_sim.reference import TflmModel\n"
        "from deploy.runtime.errors import KitError\n"
        "row = measure_budget(build_model('convnet-mcu', (1, 13, 32), 3))\n"
        "print(row['arena_bytes'], row['int8_flash_bytes'] > 0, row['note'])\n"
        "try:\n    TflmModel(b'')\nexcept KitError as exc:\n    print('KitError:', exc)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert lines[-2].startswith("None True tflite-micro not installed")
    assert lines[-1].startswith("KitError: tflite-micro is not installed") and "pip install" in lines[-1]


def test_selectable_in_distill_train_and_bundle(kws12, data_dir: Path, tmp_path: Path) -> None:
    """``-p arch=`` for a distiller, ``kit train --arch``, ``kit bundle --format tflite --int8``."""
    from deploy.runtime.bundle import Bundle, BundleClassifier
    from deploy.runtime.coreset import Coreset
    from deploy.runtime.wavio import read_wav

    runner = CliRunner()
    coreset, run = tmp_path / "c.kit", tmp_path / "run"
    result = runner.invoke(
        app,
        [
            "distill",
            "speech_commands",
            "--task",
            "kws12",
            "--method",
            "dm",
            "--ipc",
            "1",
            "--limit-per-class",
            "8",
            "-p",
            "arch=convnet-mcu",
            "--steps",
            "2",
            "--threads",
            "1",
            "--no-progress",
            "--data-dir",
            str(data_dir),
            "-o",
            str(coreset),
        ],
    )
    assert result.exit_code == 0, result.output
    assert Coreset.load(coreset).params["arch"] == "convnet-mcu"
    result = runner.invoke(
        app,
        [
            "train",
            str(coreset),
            "--arch",
            "dscnn-mcu",
            "--epochs",
            "3",
            "--seeds",
            "0",
            "--test-limit",
            "2",
            "--data-dir",
            str(data_dir),
            "--out",
            str(run),
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    bundle_path = tmp_path / "b.kit"
    result = runner.invoke(
        app,
        [
            "bundle",
            str(run / "model.kit"),
            "--coreset",
            str(coreset),
            "--format",
            "tflite",
            "--int8",
            "-o",
            str(bundle_path),
        ],
    )
    assert result.exit_code == 0, result.output
    bundle = Bundle.load(bundle_path)
    data = bundle.models["model.int8.tflite"]
    report = model_report(data, "tflite")
    assert set(report.ops) <= MCU_OPS and report.inputs[0]["shape"][-1] == kws12.x_train.shape[1]
    assert bundle.provenance["model"]["arch"] == "dscnn-mcu" and bundle.default_model == "model.int8.tflite"
    model = TfliteModel(data)
    assert model.layout == "NHWC" and model.predict(kws12.x_test[:4]).shape == (4, len(kws12.classes))
    wav = sorted((data_dir / "speech_commands" / "yes").glob("*.wav"))[0]
    y, rate = read_wav(wav)
    top = BundleClassifier(bundle).classify_waveform(y, rate, top_k=3)
    assert len(top) == 3 and {label for label, _ in top} <= set(kws12.classes)
