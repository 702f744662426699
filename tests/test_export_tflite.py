"""TFLite export and the TFLite runtime: parity with PyTorch on real FSDD clips, graph interface,
embedded metadata, ``open_model``, one-line errors, ``kit export --format tflite`` and the old
tflite-runtime fallback. (int8 accuracy is in tests/test_quantize.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from export_fixtures import digits
from typer.testing import CliRunner

from deploy.model_report import model_report
from deploy.runtime.errors import KitError
from deploy.runtime.features import FeatureConfig
from deploy.runtime.models import model_format, open_model
from deploy.runtime.tflite_metadata import KIT_METADATA_NAME, read_metadata
from deploy.runtime.tflite_model import TfliteModel
from kit.cli import app, main

REPO = Path(__file__).resolve().parents[1]
# Max |TFLite - PyTorch| of logits and embeddings on the real test clips. Both run fp32; measured
# about 3e-6 (XNNPACK vs oneDNN summation order), so 1e-4 only fails on a wrong graph.
PARITY_ATOL = 1e-4


@pytest.fixture(scope="module")
def d(data_dir: Path, tmp_path_factory):
    return digits(data_dir, tmp_path_factory)


def _one_line_kit_error(call, *needles: str) -> str:
    with pytest.raises(KitError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message, message
    for needle in needles:
        assert needle in message, message
    return message


def test_fp32_tflite_matches_pytorch_on_real_clips(d) -> None:
    model = TfliteModel(d.fp32_tflite)
    x = d.fsdd.x_test  # the 300 clips of the official FSDD test split, normalised
    out = model.run(x)  # batch of 300 through a batch-1 graph
    ref_logits, ref_embedding = d.torch_outputs(x)
    assert out["logits"].shape == (300, 10) and out["embedding"].shape == (300, 32 * 8)
    assert out["logits"].dtype == np.float32 and out["embedding"].dtype == np.float32
    diff = float(np.abs(out["logits"] - ref_logits).max())
    assert diff <= PARITY_ATOL, f"TFLite logits differ from PyTorch by {diff:.2e}"
    assert float(np.abs(out["embedding"] - ref_embedding).max()) <= PARITY_ATOL
    assert np.array_equal(out["logits"].argmax(1), ref_logits.argmax(1))
    assert np.array_equal(model.predict(x[:5]), out["logits"][:5]) and np.array_equal(
        model.embed(x[:5]), out["embedding"][:5]
    )
    leftovers = [p.name for p in d.root.iterdir() if p.name.startswith(".")]
    assert not leftovers, f"temporary files left behind: {leftovers}"


def test_tflite_graph_interface_ops_and_size(d) -> None:
    report = model_report(d.fp32_tflite)
    assert report.format == "tflite" and report.size_bytes == d.fp32_tflite.stat().st_size
    (inp,) = report.inputs
    assert inp["dtype"] == "float32" and inp["shape"] == [1, 3, 13, 64]
    assert [o["shape"] for o in report.outputs] == [[1, 10], [1, 256]]
    assert report.ops["CONV_2D"] == 3 and report.ops["FULLY_CONNECTED"] == 1 and report.ops["AVERAGE_POOL_2D"] == 3
    assert "DEQUANTIZE" not in report.ops and report.tensor_types.get("FLOAT32", 0) > 0
    n_params = sum(p.numel() for p in d.model.parameters())
    assert 4 * n_params <= report.size_bytes <= 4 * n_params + 64 * 1024, "fp32 weights plus a small graph"
    assert KIT_METADATA_NAME in report.metadata_keys


def test_metadata_is_embedded_and_read_back(d) -> None:
    model = TfliteModel(d.fp32_tflite)
    meta = model.metadata
    assert meta.classes == d.fsdd.classes and meta.arch == "convnet" and meta.in_shape == (3, 13, 64)
    assert meta.feature_config == d.fsdd.config and isinstance(meta.feature_config, FeatureConfig)
    assert np.allclose(meta.normalizer.mean, d.fsdd.normalizer.mean) and np.allclose(
        meta.normalizer.std, d.fsdd.normalizer.std
    )
    assert json.loads(meta.props["kit.quantization"]) == {"type": "float32"}
    assert model.input_shape == (3, 13, 64) and model.output_names == ["logits", "embedding"] and not model.quantized
    # The recorded output order is the subgraph's, checked with the interpreter itself.
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(d.fp32_tflite))
    sizes = [int(o["shape"][-1]) for o in interpreter.get_output_details()]
    order = json.loads(meta.props["kit.outputs"])
    assert sizes == [{"logits": 10, "embedding": 256}[name] for name in order]
    # The stdlib flatbuffer reader agrees with the official schema parser.
    from ai_edge_litert import schema_py_generated as schema

    data = d.fp32_tflite.read_bytes()
    fb = schema.Model.GetRootAs(data, 0)
    official = {
        fb.Metadata(i).Name().decode(): fb.Buffers(fb.Metadata(i).Buffer()).DataAsNumpy().tobytes()
        for i in range(fb.MetadataLength())
    }
    assert read_metadata(data) == official and KIT_METADATA_NAME in official


def test_open_model_paths_bytes_and_shapes(d) -> None:
    x = d.fsdd.x_test[:4]
    by_path = open_model(d.fp32_tflite)
    by_bytes = open_model(d.fp32_tflite.read_bytes(), fmt="tflite", threads=2)
    sniffed = open_model(d.fp32_tflite.read_bytes())  # TFL3 identifier
    assert isinstance(by_path, TfliteModel) and isinstance(by_bytes, TfliteModel) and isinstance(sniffed, TfliteModel)
    assert np.allclose(by_path.predict(x), by_bytes.predict(x), atol=1e-6)
    assert by_path.predict(x[0]).shape == (1, 10)  # one (C, F, T) clip
    assert model_format("model.TFLITE") == "tflite" and model_format("a.onnx") == "onnx"
    _one_line_kit_error(lambda: by_path.predict(np.zeros((2, 3, 13, 50), np.float32)), "does not fit")
    _one_line_kit_error(lambda: open_model(b"\x08\x01\x12\x00garbage"), "fmt=")
    _one_line_kit_error(lambda: open_model(d.fp32_tflite.read_bytes(), fmt="coreml"), "coreml")
    renamed = d.root / "model.bin"
    renamed.write_bytes(d.fp32_tflite.read_bytes())
    assert isinstance(open_model(renamed), TfliteModel)


def test_corrupt_or_missing_tflite_files_give_one_line_errors(d, tmp_path: Path) -> None:
    data = d.fp32_tflite.read_bytes()
    _one_line_kit_error(lambda: TfliteModel(tmp_path / "missing.tflite"), "missing.tflite", "no such")
    _one_line_kit_error(lambda: open_model(tmp_path / "missing.tflite"), "missing.tflite")
    cases = {
        "empty.tflite": b"",
        "noise.tflite": np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "truncated.tflite": data[: len(data) // 3],
        "header_only.tflite": data[:8],
        "zip_renamed.tflite": d.kit_path.read_bytes(),  # a .kit zip, not a flatbuffer
        "bad_offsets.tflite": data[:4] + b"TFL3" + b"\xff" * 64,
    }
    for name, blob in cases.items():
        path = tmp_path / name
        path.write_bytes(blob)
        _one_line_kit_error(lambda: TfliteModel(path), name)  # noqa: B023 (called here)
    # Metadata edited into invalid JSON (same length, so the flatbuffer stays valid).
    start = data.index(b'{"kit.')
    tampered = tmp_path / "tampered.tflite"
    tampered.write_bytes(data[:start] + b"X" + data[start + 1 :])
    _one_line_kit_error(lambda: TfliteModel(tampered), "tampered.tflite", "JSON")


def test_missing_runtimes_give_one_line_errors(d) -> None:
    """With neither ai-edge-litert nor tflite-runtime importable, opening a model is a KitError."""
    code = (
        "import sys; sys.modules['ai_edge_litert'] = None; sys.modules['tflite_runtime'] = None\n"
        "from deploy.runtime.models import open_model\n"
        "from deploy.runtime.errors import KitError\n"
        f"try:\n    open_model({str(d.fp32_tflite)!r})\nexcept KitError as exc:\n    print('KitError:', exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip()
    assert line.startswith("KitError: no TFLite runtime") and "ai-edge-litert" in line and "\n" not in line
    _one_line_kit_error(lambda: TfliteModel(d.fp32_tflite, runtime="tensorflow"), "tensorflow")


def test_kit_export_tflite_cli_round_trip(d, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli.tflite"
    result = CliRunner().invoke(app, ["export", str(d.kit_path), "--format", "tflite", "--out", str(out)])
    assert result.exit_code == 0, result.output
    size = out.stat().st_size
    assert f"({size} bytes" in result.output and "CONV_2D x3" in result.output and "FULLY_CONNECTED x1" in result.output
    x = d.fsdd.x_test[:8]
    assert np.abs(TfliteModel(out).predict(x) - d.torch_outputs(x)[0]).max() <= PARITY_ATOL
    for argv, needle in (
        (["export", str(tmp_path / "nope.kit"), "--format", "tflite"], "nope.kit"),
        (["export", str(d.kit_path), "--format", "coreml", "--out", str(tmp_path / "x.mlmodel")], "coreml"),
        (["export", str(d.kit_path), "--format", "tflite", "--calibration", str(tmp_path / "none.kit")], "none.kit"),
    ):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and "\n" not in err and "Traceback" not in err


def test_exports_run_on_the_old_tflite_runtime(d, tmp_path_factory) -> None:
    """fp32 and int8 files through TfliteModel's tflite-runtime fallback in a numpy<2 venv.

    With the built-in kernels on both sides the outputs must be identical; with each runtime's
    defaults (ai-edge-litert sends int8 ops to XNNPACK, tflite-runtime 2.14 does not) the int8
    outputs may differ by a few steps, so only top-1 agreement on the real clips is checked.
    """
    from bench.tflite_runtime_compat import DEFAULT_CACHE, CompatUnavailable, build_venv, run_compat

    cache = DEFAULT_CACHE  # built once (about 20 s with PyPI reachable), reused by later runs
    try:
        build_venv(cache, timeout_s=120)
    except CompatUnavailable as exc:
        pytest.skip(f"tflite-runtime environment cannot be built here: {exc}")
    x = d.fsdd.x_test[:100]
    models = [d.fp32_tflite, d.int8_tflite]
    record = run_compat(models, tmp_path_factory.mktemp("compat"), cache, inputs={str(m): x for m in models})
    assert record["tflite_runtime"] == "2.14.0" and record["tflite_runtime_numpy"].startswith("1.")
    fp32, int8 = record["models"]["digits.tflite"], record["models"]["digits.int8.tflite"]
    assert fp32["runtime_used"] == int8["runtime_used"] == "tflite_runtime"
    assert max(fp32["builtin"]["max_abs_diff"].values()) <= 1e-5
    assert max(fp32["default"]["max_abs_diff"].values()) <= PARITY_ATOL
    assert int8["quantized"] and max(int8["builtin"]["max_diff_in_int8_steps"].values()) <= 1.0
    assert int8["default"]["top1_agreement"] >= 0.97, int8["default"]
    assert record["passed"] is True
