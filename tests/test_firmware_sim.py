"""firmware_sim against the real runtimes, on real Speech Commands clips.

The models are built here (random init: bit-exactness does not need a trained model, only real
activations) and exported int8 through the kit's own path (``deploy.export_tflite``, calibrated on
the real features), so the graphs are exactly what users ship today: DS-CNN (TRANSPOSE, PAD,
CONV_2D, DEPTHWISE_CONV_2D, MEAN, FULLY_CONNECTED), the batch-norm ConvNet (AVERAGE_POOL_2D,
RESHAPE) and a small graph for MAX_POOL_2D and ADD. TFLM and LiteRT BUILTIN_REF tests skip when
those wheels are missing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from deploy.runtime.errors import KitError
from firmware_sim import (
    ARENA_TOLERANCE,
    Interpreter,
    budget_for,
    check_budget,
    estimate,
    load_model,
    parse_model,
    plan_arena,
)
from firmware_sim.cli import main as cli_main
from firmware_sim.quant import multiply_by_quantized_multiplier, quantize_multiplier

REPO = Path(__file__).resolve().parents[1]
WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off")


@pytest.fixture(scope="module")
def features(data_dir: Path) -> np.ndarray:
    """24 real clips (3 per word), the kit's default front-end, normalised per (channel, coefficient)."""
    from deploy.runtime.features import FeatureConfig, extract_features
    from deploy.runtime.wavio import read_wav

    config = FeatureConfig(sample_rate=16000)
    paths = [p for w in WORDS for p in sorted((data_dir / "speech_commands" / w).glob("*.wav"))[:3]]
    x = np.stack([extract_features(read_wav(p)[0], config) for p in paths]).astype(np.float32)
    return (x - x.mean((0, 3), keepdims=True)) / (x.std((0, 3), keepdims=True) + 1e-6)


def _tiny_ops_model(in_shape: tuple[int, ...], softmax: bool):
    """conv -> MAX_POOL_2D -> residual ADD -> FULLY_CONNECTED (optionally SOFTMAX): ops the kit models lack."""
    import torch
    from torch import nn

    class Ops(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.in_shape = in_shape
            self.conv = nn.Conv2d(in_shape[0], 8, 3, padding=1)
            self.pool = nn.MaxPool2d(2)
            self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
            self.fc = nn.Linear(8 * (in_shape[1] // 2) * (in_shape[2] // 2), 5)

        def forward(self, x):
            return self.forward_with_embedding(x)[0]

        def forward_with_embedding(self, x):
            h = self.pool(torch.relu(self.conv(x)))
            h = h + torch.relu(self.conv2(h))
            e = h.flatten(1)
            logits = self.fc(e)
            return (torch.softmax(logits, 1) if softmax else logits), e

    torch.manual_seed(0)
    return Ops().eval()


@pytest.fixture(scope="module")
def exports(features: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    import torch

    from deploy.export_tflite import convert_fp32, export_tflite, quantize_int8
    from deploy.runtime.features import FeatureConfig
    from kit.models import build_model

    torch.manual_seed(0)
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("fwsim")
    meta = {"classes": [f"c{i}" for i in range(12)], "feature_config": FeatureConfig(sample_rate=16000)}
    out = {}
    for name, arch, kwargs in [
        ("dscnn", "dscnn", {"channels": 16, "blocks": 2}),
        ("convnet", "convnet", {"width": 8, "depth": 2, "norm": "batch"}),
    ]:
        net = build_model(arch, features.shape[1:], 12, **kwargs).eval()
        path = export_tflite(
            net, root / f"{name}.int8.tflite", int8=True, calibration=features, meta=meta, min_agreement=0.0
        )
        out[name] = path.read_bytes()
    ops = _tiny_ops_model(features.shape[1:], softmax=False)
    out["ops"] = quantize_int8(convert_fp32(ops), features)
    out["ops_fp32"] = convert_fp32(ops)
    out["softmax"] = quantize_int8(convert_fp32(_tiny_ops_model(features.shape[1:], softmax=True)), features)
    return out


# Arithmetic ---------------------------------------------------------------------------------------
def test_requantisation_matches_hand_computed_fixed_point() -> None:
    # 0.3 = 0.6 * 2**-1 -> multiplier round(0.6 * 2**31), shift -1
    assert quantize_multiplier(0.3) == (1288490189, -1)
    assert quantize_multiplier(0.5) == (1 << 30, 0)
    assert quantize_multiplier(1.0) == (1 << 30, 1)  # frexp(1) = 0.5 * 2**1
    m, s = quantize_multiplier(0.3)
    got = multiply_by_quantized_multiplier(np.array([1000, 1005, -1005, 7, 0]), m, s)
    # 1000*0.3 = 300; 1005*0.3 = 301.5 -> 302 (half away from zero); -301.5 -> -302; 2.1 -> 2
    assert got.tolist() == [300, 302, -302, 2, 0]
    # left shift (multiplier > 1): 3 * 1.0 = 3; per-channel broadcast over the last axis
    assert multiply_by_quantized_multiplier(np.array([3]), *quantize_multiplier(1.0)).tolist() == [3]
    mm = np.array([quantize_multiplier(0.5)[0], quantize_multiplier(0.25)[0]])
    ss = np.array([quantize_multiplier(0.5)[1], quantize_multiplier(0.25)[1]])
    # 10*0.25 = 2.5 -> 3 and -6*0.25 = -1.5 -> -2: RoundingDivideByPOT rounds halves away from zero
    assert multiply_by_quantized_multiplier(np.array([[10, 10], [-6, -6]]), mm, ss).tolist() == [[5, 3], [-3, -2]]


# Bit-exactness -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["dscnn", "convnet", "ops"])
def test_bit_identical_to_tflite_micro_and_litert_reference(
    name: str, exports: dict[str, bytes], features: np.ndarray
) -> None:
    pytest.importorskip("tflite_micro")
    from firmware_sim.reference import compare, litert_ref_run, tflm_run

    model = load_model(exports[name])
    interpreter = Interpreter(model)
    x = interpreter.quantize_input(features)
    ours = interpreter.run(x)
    assert set(ours) == {"logits", "embedding"}
    expected_ops = {
        "dscnn": {"TRANSPOSE", "PAD", "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"},
        "convnet": {"TRANSPOSE", "CONV_2D", "AVERAGE_POOL_2D", "RESHAPE", "FULLY_CONNECTED"},
        "ops": {"CONV_2D", "MAX_POOL_2D", "ADD", "FULLY_CONNECTED"},
    }[name]
    assert expected_ops <= set(model.op_counts())
    assert len(np.unique(ours["logits"])) > 3  # real, varied activations, not a saturated constant
    tflm = compare(ours, tflm_run(model, x))
    assert tflm == {"clips": len(x), "identical": len(x), "max_lsb_diff": 0}
    ref = compare(ours, litert_ref_run(model, x))
    assert ref["identical"] == len(x)
    floats = interpreter.run_float(features)
    assert floats["logits"].dtype == np.float32 and np.isfinite(floats["logits"]).all()


# Memory ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["dscnn", "convnet", "ops"])
def test_arena_plan_matches_tflite_micro(name: str, exports: dict[str, bytes]) -> None:
    pytest.importorskip("tflite_micro")
    from firmware_sim.reference import tflm_arena

    model = load_model(exports[name])
    plan = plan_arena(model)
    recorded = tflm_arena(model)
    assert plan.head_bytes == recorded["head"]  # the greedy plan itself is exact
    assert abs(plan.total_bytes - recorded["total"]) <= ARENA_TOLERANCE * recorded["total"]
    buffers = plan.buffers  # no two simultaneously live buffers overlap in the arena
    for i, a in enumerate(buffers):
        for b in buffers[i + 1 :]:
            if a.first <= b.last and b.first <= a.last:
                assert a.offset + a.size <= b.offset or b.offset + b.size <= a.offset


def test_cost_model_counts_the_macs_vela_counts(exports: dict[str, bytes]) -> None:
    model = load_model(exports["dscnn"])
    m4 = estimate(model, "cortex-m4f")
    assert estimate(model, "cortex-m4f", cmsis_nn=False).ms > 2 * m4.ms > 0
    assert estimate(model, "cortex-m55").ms < m4.ms
    pytest.importorskip("ethosu.vela")
    npu = estimate(model, "ethos-u55")
    # vela also counts one operation per channel for the global average pool's scaling (16 here)
    assert abs(npu.macs - m4.macs) <= 0.001 * m4.macs and npu.cpu_ops == 0 and 0 < npu.ms < m4.ms


# Import rule --------------------------------------------------------------------------------------
def test_import_pulls_no_torch_librosa_scipy_kit_or_tensorflow() -> None:
    code = (
        "import sys, pkgutil, importlib, firmware_sim\n"
        "for m in pkgutil.iter_modules(firmware_sim.__path__): importlib.import_module('firmware_sim.' + m.name)\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in "
        "{'torch', 'librosa', 'scipy', 'kit', 'distill', 'tensorflow', 'tflite_micro', 'ai_edge_litert', 'rich'})\n"
        "print(','.join(bad))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert done.stdout.strip() == ""


# One-line errors ----------------------------------------------------------------------------------
def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_unsupported_op_names_the_op(exports: dict[str, bytes]) -> None:
    with pytest.raises(KitError) as exc:
        Interpreter(exports["softmax"])
    assert "SOFTMAX" in _one_line(exc)
    assert "ADD" not in _one_line(exc).split("supported:")[0]


def test_float_model_is_refused_in_one_line(exports: dict[str, bytes]) -> None:
    with pytest.raises(KitError) as exc:
        Interpreter(exports["ops_fp32"])
    assert "int8" in _one_line(exc) and "float32" in _one_line(exc)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupted_tflite_is_one_line_error_naming_the_file(
    damage: str, exports: dict[str, bytes], tmp_path: Path
) -> None:
    data = exports["dscnn"]
    broken = {"truncate": data[: len(data) // 3], "garbage": data[:8] + bytes(range(256)) * 8, "empty": b""}[damage]
    path = tmp_path / "broken.tflite"
    path.write_bytes(broken)
    with pytest.raises(KitError) as exc:
        Interpreter(load_model(path))
    assert str(path) in _one_line(exc)
    assert cli_main(["report", str(path)]) == 2


def test_over_budget_says_what_and_by_how_much(exports: dict[str, bytes], capsys: pytest.CaptureFixture) -> None:
    model = load_model(exports["dscnn"])
    roomy = check_budget(model, budget_for("cortex-m7", hop_ms=1000))
    assert roomy.fits and "fits cortex-m7" in roomy.line
    arena = plan_arena(model).total_bytes
    tight = budget_for("cortex-m4f", hop_ms=1.0, sram_bytes=arena - 2048)
    verdict = check_budget(model, tight)
    assert not verdict.fits and "\n" not in verdict.line
    assert "arena" in verdict.line and "(+2.0 KB)" in verdict.line and "ms per inference > 1 ms" in verdict.line
    with pytest.raises(KitError) as exc:
        verdict.raise_if_over()
    assert _one_line(exc) == verdict.line
    path_free = parse_model(exports["dscnn"], "dscnn.tflite")
    assert check_budget(path_free, budget_for("cortex-m4f", 1000.0)).fits


def test_cli_report_and_check(
    exports: dict[str, bytes], features: np.ndarray, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    model_path = tmp_path / "dscnn.int8.tflite"
    model_path.write_bytes(exports["dscnn"])
    assert cli_main(["report", str(model_path), "--target", "cortex-m4f", "--hop-ms", "1000"]) == 0
    out = capsys.readouterr().out
    assert "DEPTHWISE_CONV_2D" in out and "arena" in out and "fits cortex-m4f" in out
    assert cli_main(["report", str(model_path), "--hop-ms", "1"]) == 1
    assert "does not fit" in capsys.readouterr().out
    assert cli_main(["report", str(tmp_path / "missing.tflite")]) == 2
    assert "missing.tflite: no such model file" in capsys.readouterr().err
    pytest.importorskip("tflite_micro")
    np.save(tmp_path / "x.npy", features[:4])
    assert cli_main(["check", str(model_path), "--clips", str(tmp_path / "x.npy")]) == 0
    assert "4/4 clips" in capsys.readouterr().out


def test_bundle_gives_its_int8_tflite_member(exports: dict[str, bytes], features: np.ndarray, tmp_path: Path) -> None:
    from deploy.runtime.bundle import Bundle
    from deploy.runtime.features import FeatureConfig

    bundle = Bundle(
        classes=[f"c{i}" for i in range(12)],
        feature_config=FeatureConfig(sample_rate=16000),
        normalizer=None,
        models={"model.int8.tflite": exports["dscnn"]},
        default_model="model.int8.tflite",
        head_weight=np.zeros((12, 16), np.float32),
        head_bias=np.zeros(12, np.float32),
        replay_features=features[:2],
        replay_labels=np.array([0, 1]),
    )
    path = bundle.save(tmp_path / "b.kit")
    model = load_model(path)
    assert model.data == exports["dscnn"] and model.name.endswith("b.kit:model.int8.tflite")
    assert Interpreter(model).run(features[:2])["embedding"].shape == (2, 16)
    with pytest.raises(KitError) as exc:
        load_model(path, member="other.tflite")
    assert "no model 'other.tflite'" in _one_line(exc)
