"""ONNX export: graph interface, embedded metadata, and parity with PyTorch on real FSDD clips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from typer.testing import CliRunner

from deploy.export_onnx import export_onnx
from deploy.runtime.errors import KitError
from deploy.runtime.features import FeatureConfig
from kit.cli import app, main
from kit.features import load_feature_set
from kit.models import load_model, save_model
from kit.training import TrainConfig, train_model

PARITY_ATOL = 1e-4  # max |logits_onnxruntime - logits_pytorch| on real test clips


@pytest.fixture(scope="module")
def fsdd(data_dir: Path):
    return load_feature_set("fsdd", data_dir, limit_per_class=10, progress=False)


@pytest.fixture(scope="module")
def trained(fsdd, tmp_path_factory) -> dict[str, Path]:
    """A briefly trained convnet and cnn4 (BatchNorm with non-default running stats) saved as .kit."""
    out = tmp_path_factory.mktemp("export")
    paths = {}
    for arch, kwargs in (("convnet", {"width": 32}), ("cnn4", {"widths": [16, 32, 32, 32]})):
        config = TrainConfig(arch=arch, arch_kwargs=kwargs, max_samples=1000)
        model = train_model(fsdd.x_train, fsdd.y_train, 10, config, progress=False)
        paths[arch] = save_model(
            out / f"{arch}.kit",
            model,
            {
                "classes": fsdd.classes,
                "feature_config": fsdd.config,
                "normalizer": fsdd.normalizer,
                "train_config": config.to_dict(),
                "seed": 0,
                "metrics": {},
                "source": fsdd.source,
            },
        )
    return paths


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("arch", ["convnet", "cnn4"])
def test_onnx_matches_pytorch_on_real_clips(arch: str, trained, fsdd, tmp_path: Path) -> None:
    out = export_onnx(trained[arch], tmp_path / f"{arch}.onnx")
    model, _ = load_model(trained[arch])
    session = _session(out)
    x = fsdd.x_test  # 100 real FSDD test clips, normalised
    logits, embedding = session.run(["logits", "embedding"], {"features": x})
    with torch.no_grad():
        ref_logits, ref_embedding = model(torch.from_numpy(x)).numpy(), model.embed(torch.from_numpy(x)).numpy()
    diff = float(np.abs(logits - ref_logits).max())
    assert diff <= PARITY_ATOL, f"ONNX logits differ from PyTorch by {diff:.2e}"
    assert np.abs(embedding - ref_embedding).max() <= PARITY_ATOL
    assert np.array_equal(logits.argmax(1), ref_logits.argmax(1))
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{arch}.onnx"], "no temporary files left behind"


def test_onnx_graph_interface_and_metadata(trained, fsdd, tmp_path: Path) -> None:
    out = export_onnx(trained["convnet"], tmp_path / "m.onnx")
    proto = onnx.load(str(out))
    assert max(op.version for op in proto.opset_import if op.domain in ("", "ai.onnx")) >= 17
    session = _session(out)
    (inp,) = session.get_inputs()
    assert inp.name == "features" and inp.shape[1:] == [3, 13, 64] and isinstance(inp.shape[0], str)
    assert [o.name for o in session.get_outputs()] == ["logits", "embedding"]
    for n in (1, 7):  # dynamic batch
        logits, embedding = session.run(None, {"features": fsdd.x_test[:n]})
        assert logits.shape == (n, 10) and embedding.shape == (n, 32 * 8)
    props = session.get_modelmeta().custom_metadata_map
    assert json.loads(props["kit.classes"]) == fsdd.classes
    assert FeatureConfig.from_dict(json.loads(props["kit.feature_config"])) == fsdd.config
    norm = json.loads(props["kit.normalizer"])
    assert np.allclose(norm["mean"], fsdd.normalizer.mean) and np.allclose(norm["std"], fsdd.normalizer.std)
    assert props["kit.arch"] == "convnet" and json.loads(props["kit.arch_kwargs"])["width"] == 32


def test_export_of_an_in_memory_module(tmp_path: Path) -> None:
    from kit.models import build_model

    model = build_model("cnn4", (1, 40, 64), 3, widths=[8, 8, 8, 8])
    out = export_onnx(
        model, tmp_path / "m.onnx", {"classes": ["a", "b", "c"], "feature_config": FeatureConfig(kind="log_mel")}
    )
    props = _session(out).get_modelmeta().custom_metadata_map
    assert json.loads(props["kit.classes"]) == ["a", "b", "c"] and "kit.normalizer" not in props
    with pytest.raises(KitError, match="opset"):
        export_onnx(model, tmp_path / "old.onnx", opset=13)


def test_kit_export_cli(trained, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli.onnx"
    result = CliRunner().invoke(app, ["export", str(trained["cnn4"]), "--format", "onnx", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.is_file() and "wrote" in result.output
    assert json.loads(_session(out).get_modelmeta().custom_metadata_map["kit.arch_kwargs"])["widths"] == [
        16,
        32,
        32,
        32,
    ]
    with pytest.raises(SystemExit) as exc:
        main(["export", str(trained["cnn4"]), "--format", "coreml", "--out", str(tmp_path / "x.mlmodel")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "coreml" in err and "\n" not in err
    with pytest.raises(SystemExit):
        main(["export", str(tmp_path / "nope.kit"), "--out", str(tmp_path / "x.onnx")])
    assert "nope.kit" in capsys.readouterr().err
