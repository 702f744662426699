"""The generated C firmware computes what firmware_sim computes, on the host and on an emulated Cortex-M4F.

Two MCU-ready models are trained briefly on the real Speech Commands kws12 split and bundled with
their int8 TFLite files; the firmware is generated, compiled and fed real test clips (bit-exact
int8 logits and embeddings) and a one-minute stream of real held-out clips (the same detections as
the Python device runtime and ``kit firmware stream``). The Cortex-M tests need the Debian packages
gcc-arm-none-eabi, libnewlib-arm-none-eabi and qemu-system-arm (``./run.sh test`` installs them).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from deploy.runtime.errors import KitError

KB = 1024
ARM_TOOLS = ("arm-none-eabi-gcc", "arm-none-eabi-size", "qemu-system-arm")


def _need(target: str) -> None:
    tools = ("cc", "make") if target == "host" else ("make", *ARM_TOOLS)
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed")


@pytest.fixture(scope="module")
def built(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Bundles of convnet-mcu and dscnn-mcu (S) trained briefly on kws12, plus 60 real test clips' features."""
    import torch

    from deploy.bundle_builder import build_bundle
    from deploy.runtime.recognizer import DetectorSettings
    from kit.pipeline import distill_coreset, load_training_set
    from kit.training import TrainConfig, train_and_save

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("firmware")
    fs, loader = load_training_set("speech_commands", data_dir, task="kws12", progress=False)
    coreset, _, _ = distill_coreset(fs, loader, "random", 20, seed=0)
    coreset_path = coreset.save(root / "coreset.kit")
    bundles = {}
    # a low threshold so a briefly trained model still reports words: the test compares detections
    detector = DetectorSettings(threshold=0.3, minimum_count=2)
    for arch, epochs in (("convnet-mcu", 8), ("dscnn-mcu", 5)):
        config = TrainConfig(
            arch=arch, arch_kwargs={"norm": "batch"}, epochs=epochs, batch_size=64, max_samples=None, seed=0, threads=1
        )
        model = train_and_save(root / f"{arch}.kit", fs.x_train, fs.y_train, fs, config, progress=False)
        bundles[arch] = build_bundle(
            model.path, coreset_path, root / f"{arch}.bundle.kit", formats=("tflite",), int8=True, detector=detector
        )
    per_class = [np.flatnonzero(fs.y_test == k)[:5] for k in range(len(fs.classes))]
    clips = np.concatenate(per_class)
    return {"root": root, "bundles": bundles, "x": fs.x_test[clips], "data_dir": data_dir}


def _project(built: dict, arch: str, target: str, **memory: int) -> Path:
    from firmware_sim.c_project import write_project

    return write_project(built["bundles"][arch], target, built["root"] / f"{arch}-{target}", **memory)


@pytest.mark.parametrize("target", ["host", "cortex-m4f"])
@pytest.mark.parametrize("arch", ["convnet-mcu", "dscnn-mcu"])
def test_firmware_logits_and_embeddings_equal_firmware_sim_on_real_clips(built: dict, arch: str, target: str) -> None:
    _need(target)
    from firmware_sim.c_run import feature_input_bytes, run
    from firmware_sim.interpreter import Interpreter
    from firmware_sim.model import features_to_input, load_model

    x = built["x"]
    assert len(x) >= 50
    model = load_model(built["bundles"][arch])
    interpreter = Interpreter(model)
    q = interpreter.quantize_input(features_to_input(model, x))
    expected = interpreter.run(q)
    out = run(_project(built, arch, target), feature_input_bytes(q))
    logits, embeddings = np.array(out.logits), np.array(out.embeddings)
    assert logits.shape == (len(x), 12) and len(np.unique(logits)) > 3
    assert np.array_equal(logits, expected["logits"].reshape(len(x), -1))
    assert np.array_equal(embeddings, expected["embedding"].reshape(len(x), -1))
    assert out.model_cost and out.model_cost > 0
    assert out.cost_unit == ("host ns" if target == "host" else "instructions")


@pytest.mark.parametrize("arch", ["convnet-mcu", "dscnn-mcu"])
def test_border_positions_without_the_patch_buffer_give_the_same_integers(built: dict, arch: str) -> None:
    """A 16-byte patch buffer sends every border position through the reference loop (offset added per tap)."""
    _need("host")
    from firmware_sim.c_project import write_project
    from firmware_sim.c_run import feature_input_bytes, run
    from firmware_sim.interpreter import Interpreter
    from firmware_sim.model import features_to_input, load_model

    project = write_project(built["bundles"][arch], "host", built["root"] / f"{arch}-host-nopatch")
    makefile = project / "Makefile"
    text = makefile.read_text()
    assert "-DKWS_DETECTOR_MAX_CLASSES" in text
    flag = "-DKWS_DETECTOR_MAX_CLASSES"
    makefile.write_text(text.replace(flag, f"-DKWS_PATCH_BYTES=16 {flag}", 1))
    model = load_model(built["bundles"][arch])
    interpreter = Interpreter(model)
    q = interpreter.quantize_input(features_to_input(model, built["x"][:12]))
    out = run(project, feature_input_bytes(q))
    assert np.array_equal(np.array(out.logits), interpreter.run(q)["logits"].reshape(len(q), -1))


def test_a_one_minute_real_stream_gives_the_runtimes_detections(built: dict) -> None:
    """Python runtime (LiteRT int8), firmware_sim's stream, host firmware and emulated Cortex-M4F agree."""
    from bench.stream_builder import StreamSpec, build_stream, load_material
    from deploy.runtime.bundle import Bundle, BundleClassifier
    from deploy.runtime.stream import detect_stream
    from firmware_sim.c_run import pcm_bytes, run
    from firmware_sim.stream import simulate_stream

    material = load_material(built["data_dir"], keywords_per_class=3, unknown=2, fsdd=2, esc=1, seed=0)
    stream = build_stream(material, StreamSpec(minutes=1.0, negative_rate=0.3), seed=0)
    # what a microphone delivers: 16-bit samples
    y = (np.clip(np.round(stream.audio * 32768), -32768, 32767) / 32768.0).astype(np.float32)
    path = built["bundles"]["convnet-mcu"]
    bundle = Bundle.load(path)
    hop = bundle.detector.hop_s
    reference = [(d.label, d.time_s) for d in detect_stream(BundleClassifier(bundle), y, stream.rate, bundle.detector)]
    assert len(reference) >= 3, reference
    simulated = [(d.label, d.time_s) for d in simulate_stream(path, y, stream.rate)[0]]
    runs = {"kit firmware stream": simulated}
    for target in ("host", "cortex-m4f"):
        if target == "cortex-m4f" and any(shutil.which(t) is None for t in ARM_TOOLS):
            continue
        _need(target)
        out = run(_project(built, "convnet-mcu", target), pcm_bytes(y))
        runs[target] = [(label, t) for t, label, _ in out.detections]
    for name, found in runs.items():
        assert [label for label, _ in found] == [label for label, _ in reference], (name, found, reference)
        assert all(abs(a - b) <= hop + 1e-6 for (_, a), (_, b) in zip(found, reference, strict=True)), name


def test_the_small_model_fits_256k_flash_and_64k_sram_per_arm_none_eabi_size(built: dict) -> None:
    _need("cortex-m4f")
    from firmware_sim.c_run import section_sizes

    project = _project(built, "convnet-mcu", "cortex-m4f", flash_bytes=256 * KB, sram_bytes=64 * KB)
    sizes = section_sizes(project)
    assert sizes["flash"] <= 256 * KB and sizes["static_ram"] <= 64 * KB, sizes


def test_a_model_that_cannot_fit_is_refused_before_anything_is_written(built: dict) -> None:
    from firmware_sim.c_project import write_project

    out = built["root"] / "too-big"
    with pytest.raises(KitError) as info:
        write_project(built["bundles"]["dscnn-mcu"], "cortex-m4f", out, flash_bytes=256 * KB, sram_bytes=48 * KB)
    message = str(info.value)
    assert "does not fit cortex-m4f" in message and "RAM" in message and "\n" not in message
    assert not out.exists()


def test_a_missing_toolchain_names_the_debian_packages(
    built: dict, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from firmware_sim.c_run import build

    project = _project(built, "convnet-mcu", "cortex-m4f")
    bare = tmp_path / "bin"
    bare.mkdir()
    make = shutil.which("make")
    if make:
        os.symlink(make, bare / "make")
    monkeypatch.setenv("PATH", str(bare))
    with pytest.raises(
        KitError,
        match=r"arm-none-eabi-gcc.*not found; install the Debian packages "
        r"gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm",
    ):
        build(project)


def test_kit_firmware_build_and_run_stream_a_real_wav(built: dict, tmp_path: Path) -> None:
    _need("host")
    from typer.testing import CliRunner

    from kit.cli import app

    wav = sorted((built["data_dir"] / "speech_commands" / "yes").glob("*.wav"))[0]
    runner = CliRunner()
    out = tmp_path / "fw"
    result = runner.invoke(
        app, ["firmware", "build", str(built["bundles"]["convnet-mcu"]), "--target", "host", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["firmware", "run", str(out), "--input", str(wav)])
    assert result.exit_code == 0, result.output
    assert "per inference:" in result.output and "host wall-clock" in result.output
