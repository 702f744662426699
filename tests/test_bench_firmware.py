"""``python -m bench.firmware --quick`` on a real (briefly trained) kws12 bundle and real test clips.

Why a real bundle: the benchmark's numbers (bit-exactness with TFLM, arena vs TFLM's, accuracy of three
runtimes, the C front-end) only mean something on an int8 TFLite that the kit exported; a tiny
convnet-mcu trained for a few steps on 10 clips per class is enough to exercise every path in < 60 s.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="module")
def bundle(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from deploy.bundle_builder import build_bundle
    from kit.pipeline import distill_coreset, load_training_set
    from kit.training import TrainConfig, train_and_save

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("fwbench")
    fs, loader = load_training_set("speech_commands", data_dir, task="kws12", limit_per_class=10, progress=False)
    coreset, _, _ = distill_coreset(fs, loader, "random", 5, seed=0)
    coreset_path = coreset.save(root / "coreset.kit")
    config = TrainConfig(
        arch="convnet-mcu", arch_kwargs={"norm": "batch"}, epochs=3, batch_size=32, max_samples=None, seed=0, threads=1
    )
    model = train_and_save(root / "tiny.kit", fs.x_train, fs.y_train, fs, config, progress=False)
    return Path(build_bundle(model.path, coreset_path, root / "tiny.bundle.kit", formats=("tflite",), int8=True))


def test_quick_benchmark_writes_every_figure_and_its_markdown_rebuilds(
    bundle: Path, data_dir: Path, tmp_path: Path
) -> None:
    from bench.firmware import main, markdown

    code = main(["--models", str(bundle), "--quick", "--results-dir", str(tmp_path), "--data-dir", str(data_dir)])
    assert code == 0
    result = json.loads((tmp_path / "firmware.json").read_text())
    assert (tmp_path / "firmware.png").stat().st_size > 10_000
    assert (tmp_path / "firmware.md").read_text() == markdown(result, "firmware.png")
    (m,) = result["models"].values()
    acc = m["accuracy"]
    assert acc["n_clips"] == 20
    # firmware_sim computes what TFLM computes, clip for clip (the 100 % target)
    assert acc["vs_tflm"] == {"clips": 20, "identical": 20, "max_lsb_diff": 0}
    assert acc["tflm_accuracy"] == acc["fwsim_accuracy"]
    for key in ("fp32_accuracy", "int8_litert_accuracy", "fwsim_accuracy"):
        assert 0.0 <= acc[key] <= 1.0
    (row,) = [r for r in m["targets"] if r["cmsis_nn"] is True]
    assert [r["target"] for r in m["targets"]] == ["cortex-m4f", "cortex-m4f"]
    assert row["ms"] > 0 and row["hop_ms"] == 100.0 and np.isclose(row["duty_cycle"], row["ms"] / 100.0, atol=1e-4)
    assert m["arena_tflm_bytes"] > 0 and abs(m["arena_diff_pct"]) <= 10.0
    assert row["flash_bytes"] > m["flatbuffer_bytes"] > 0
    # the reference kernels are slower than CMSIS-NN by the cost model
    ref = next(r for r in m["targets"] if r["cmsis_nn"] is False)
    assert ref["ms"] > row["ms"]
    # the firmware's C front-end gives (almost) the Python front-end's int8 input on real clips
    fe = m["mcu_frontend"]
    if "skipped" not in fe:
        assert fe["clips"] == 20 and fe["input_values_equal"] > 0.999 and fe["input_max_lsb_diff"] <= 1
    assert "not run" in m["emulated_m4f"]["skipped"]
    met = {t["target"]: t["met"] for t in result["issue_targets"]}
    assert met["firmware_sim bit-exact with TFLM on every test clip"] is True
    assert len(result["issue_targets"]) == 4 and all(t["model"] == "tiny" for t in result["issue_targets"])
    from bench.remarkdown import renderer

    assert renderer("firmware")(result, "firmware") == (tmp_path / "firmware.md").read_text()


def test_bad_model_and_target_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from bench.firmware import main

    assert main(["--models", str(tmp_path / "missing.kit"), "--quick", "--results-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "missing.kit" in err and "--models" in err and "\n" not in err
    assert main(["--targets", "cortex-m99", "--results-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "cortex-m99" in err and "\n" not in err
    assert not (tmp_path / "firmware.json").exists()
