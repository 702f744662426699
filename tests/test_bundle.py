"""The deployable bundle: build from a real model + coreset, round trip, replay quantisation error,
head == model logits, one-line verification errors, ``kit bundle``, ``kit inspect``, and the
device's ``info`` / ``classify`` sub-commands."""

from __future__ import annotations

import dataclasses
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from deploy.bundle_builder import build_bundle
from deploy.runtime.artifact import read_artifact, sha256_bytes, write_artifact
from deploy.runtime.bundle import BUNDLE_SCHEMA, Bundle, BundleClassifier, quantize_replay
from deploy.runtime.coreset import Coreset
from deploy.runtime.errors import KitError
from deploy.runtime.recognizer import DetectorSettings
from deploy.runtime.wavio import read_wav
from distill import make_distiller
from kit.cli import app
from kit.features import load_feature_set
from kit.models import load_model, save_model
from kit.training import TrainConfig, train_model

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()
#: |bundle logits (embedding @ head) - PyTorch logits| on real clips for fp32 files
FP32_ATOL = 1e-4


@pytest.fixture(scope="module")
def fsdd(data_dir: Path):
    return load_feature_set("fsdd", data_dir, limit_per_class=10, progress=False, jobs=1)  # no fork after JAX threads


@pytest.fixture(scope="module")
def built(fsdd, tmp_path_factory) -> dict:
    """A briefly trained FSDD ConvNet, a random 5-per-class coreset, and a bundle with fp32 + int8 ONNX."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("bundle")
    config = TrainConfig(arch_kwargs={"width": 32}, max_samples=1000)
    model = train_model(fsdd.x_train, fsdd.y_train, 10, config, progress=False)
    model_path = save_model(
        out / "digits.kit",
        model,
        {
            "classes": fsdd.classes,
            "feature_config": fsdd.config,
            "normalizer": fsdd.normalizer,
            "source": fsdd.source,
            "train_config": config.to_dict(),
            "seed": 0,
        },
    )
    selector = make_distiller("random", ipc=5, seed=0).fit(fsdd.x_train, fsdd.y_train, 10)
    coreset_path = Coreset(
        selector.features_,
        selector.labels_,
        fsdd.classes,
        fsdd.config,
        fsdd.normalizer,
        method="random",
        params={"ipc": 5},
        seed=0,
        source=fsdd.source,
    ).save(out / "coreset.kit")
    bundle_path = build_bundle(
        model_path,
        coreset_path,
        out / "digits.bundle.kit",
        formats=("onnx",),
        int8=True,
        detector=DetectorSettings(threshold=0.65, ignore=()),
    )
    return {"dir": out, "model": model_path, "coreset": coreset_path, "bundle": bundle_path}


@pytest.fixture(scope="module")
def bundle(built) -> Bundle:
    return Bundle.load(built["bundle"])


def _one_line(call, *needles: str) -> str:
    with pytest.raises(KitError) as exc:
        call()
    message = str(exc.value)
    assert "\n" not in message and all(n in message for n in needles), message
    return message


# Round trip ------------------------------------------------------------------------------------------
def test_bundle_round_trip_keeps_every_part(built, bundle: Bundle) -> None:
    model, meta = load_model(built["model"])
    coreset = Coreset.load(built["coreset"])
    assert bundle.classes == coreset.classes == meta["classes"]
    assert bundle.feature_config == coreset.feature_config
    assert np.array_equal(bundle.normalizer.mean, coreset.normalizer.mean) and np.array_equal(
        bundle.normalizer.std, coreset.normalizer.std
    )
    assert sorted(bundle.models) == ["model.fp32.onnx", "model.int8.onnx"] and bundle.default_model == "model.int8.onnx"
    assert np.array_equal(bundle.head_weight, model.head.weight.detach().numpy())
    assert np.array_equal(bundle.head_bias, model.head.bias.detach().numpy())
    assert np.array_equal(bundle.replay_labels, coreset.hard_labels) and bundle.replay_dtype == "int8"
    assert bundle.detector == DetectorSettings(threshold=0.65, ignore=())
    assert bundle.provenance["model"]["sha256"] == sha256_bytes(built["model"].read_bytes())
    assert bundle.provenance["coreset"]["sha256"] == sha256_bytes(built["coreset"].read_bytes())
    assert bundle.provenance["method"] == "random" and bundle.history == []

    again = bundle.save(built["dir"] / "again.kit")
    reloaded = Bundle.load(again)
    assert reloaded.models == bundle.models and reloaded.classes == bundle.classes
    assert np.array_equal(reloaded.replay_features, bundle.replay_features), "re-saving must not drift the int8 replay"
    assert reloaded.provenance == bundle.provenance
    assert not [p for p in built["dir"].iterdir() if p.name.startswith(".")], "atomic writes leave no temporary files"


def test_replay_quantisation_error_stays_within_half_a_step(bundle: Bundle, fsdd, tmp_path: Path) -> None:
    """Real normalised FSDD test features (float32, not float16-exact) as replay memory."""
    x = fsdd.x_test[:60]
    y = fsdd.y_test[:60]
    sizes, errors = {}, {}
    for dtype in ("int8", "float16"):
        path = dataclasses.replace(bundle, replay_features=x, replay_labels=y, replay_dtype=dtype).save(
            tmp_path / f"{dtype}.kit"
        )
        loaded = Bundle.load(path)
        errors[dtype] = np.abs(loaded.replay_features - x)
        with zipfile.ZipFile(path) as zf:
            member = "arrays/replay_q.npy" if dtype == "int8" else "arrays/replay_f16.npy"
            sizes[dtype] = zf.getinfo(member).file_size
    _, scale = quantize_replay(x)
    assert np.allclose(scale, np.abs(x).max(axis=(0, 3)) / 127)
    bound = scale[None, :, :, None] / 2 * (1 + 1e-5)
    assert (errors["int8"] <= bound).all(), f"int8 replay error {errors['int8'].max():.4g} exceeds half a step"
    assert errors["int8"].max() > 0  # it is quantised, not stored as float
    assert (errors["float16"] <= np.abs(x) * 2.0**-11 + 2.0**-24).all()
    assert sizes["int8"] < 0.6 * sizes["float16"]  # 1 byte vs 2 bytes per value (+ header)


# Head == logits --------------------------------------------------------------------------------------
def test_bundle_head_reproduces_the_model_logits_on_real_clips(built, bundle: Bundle, fsdd, data_dir: Path) -> None:
    model, _ = load_model(built["model"])
    x = fsdd.x_test
    with torch.no_grad():
        reference = model(torch.from_numpy(x)).numpy()
    fp32 = BundleClassifier(bundle, "model.fp32.onnx")
    diff = float(np.abs(fp32.logits(x) - reference).max())
    assert diff <= FP32_ATOL, f"embedding @ head differs from PyTorch logits by {diff:.2e}"
    int8 = BundleClassifier(bundle)  # the default: int8 ONNX
    assert int8.model_name == "model.int8.onnx"
    agreement = float(np.mean(int8.logits(x).argmax(1) == reference.argmax(1)))
    assert agreement >= 0.9, f"int8 bundle agrees with fp32 PyTorch on only {agreement:.0%} of real clips"
    checks = bundle.provenance["checks"]
    assert set(checks) == {"model.fp32.onnx", "model.int8.onnx"}
    assert checks["model.fp32.onnx"]["max_abs_head_vs_pytorch"] <= checks["model.fp32.onnx"]["limit"] <= 1e-2
    # one real clip through the device front-end: the same probabilities as PyTorch on its features
    clip = sorted((data_dir / "fsdd" / "recordings").glob("3_*_0.wav"))[0]
    probs = fp32.probabilities(*read_wav(clip))
    with torch.no_grad():
        expected = torch.softmax(model(torch.from_numpy(fp32.features(*read_wav(clip))[None])), 1)[0].numpy()
    assert np.abs(probs - expected).max() <= 1e-4


def test_with_head_appends_classes_and_keeps_history(bundle: Bundle, tmp_path: Path) -> None:
    k, d = bundle.head_weight.shape
    weight = np.vstack([bundle.head_weight, np.ones((1, d), np.float32)])
    bias = np.append(bundle.head_bias, 0.5).astype(np.float32)
    grown = bundle.with_head([*bundle.classes, "eleven"], weight, bias, {"op": "add_keyword", "keyword": "eleven"})
    loaded = Bundle.load(grown.save(tmp_path / "grown.kit"))
    assert loaded.classes[-1] == "eleven" and loaded.head_weight.shape == (k + 1, d)
    assert loaded.history == [{"op": "add_keyword", "keyword": "eleven"}] and loaded.models == bundle.models
    _one_line(lambda: bundle.with_head(["a", *bundle.classes], weight, bias, {}), "append only")
    _one_line(
        lambda: bundle.with_head([*bundle.classes, "x"], bundle.head_weight, bundle.head_bias, {}),
        "head has 10 rows",
        "11 classes",
    )


# Verification errors -------------------------------------------------------------------------------------
def _rewrite(source: Path, target: Path, mutate) -> Path:
    """Change a bundle's content and write it as a valid artifact (fresh checksums), so the
    bundle's own checks, not the container's, must catch the problem."""
    artifact = read_artifact(source)
    mutate(artifact)
    return write_artifact(target, artifact)


def _drop_blob(artifact) -> None:
    del artifact.blobs["models/model.fp32.onnx"]


def _bad_head(artifact) -> None:
    artifact.arrays["head_weight"] = artifact.arrays["head_weight"][:-1]


def _newer_schema(artifact) -> None:
    artifact.meta["bundle_schema"] = BUNDLE_SCHEMA + 1


def _feature_config(artifact) -> None:
    artifact.meta["feature_config"] = {**artifact.meta["feature_config"], "n_mfcc": 20}


def _labels(artifact) -> None:
    artifact.arrays["replay_labels"] = artifact.arrays["replay_labels"] + 5


def _default(artifact) -> None:
    artifact.meta["default_model"] = "model.int8.tflite"


@pytest.mark.parametrize(
    "mutate,needles",
    [
        (_drop_blob, ["model file 'model.fp32.onnx'", "missing"]),
        (_bad_head, ["head has 9 rows", "10 classes"]),
        (_newer_schema, [f"bundle schema version {BUNDLE_SCHEMA + 1} is newer"]),
        (_feature_config, ["feature config gives feature maps of shape (3, 20, 64)", "expects (3, 13, 64)"]),
        (_labels, ["replay labels fall outside"]),
        (_default, ["default model 'model.int8.tflite' is missing"]),
    ],
)
def test_inconsistent_bundles_give_their_own_one_line_error(built, tmp_path: Path, mutate, needles) -> None:
    path = _rewrite(built["bundle"], tmp_path / "bad.kit", mutate)
    _one_line(lambda: Bundle.load(path), "bad.kit", *needles)


def test_damaged_or_foreign_files_are_refused(built, tmp_path: Path) -> None:
    data = built["bundle"].read_bytes()
    truncated = tmp_path / "truncated.kit"
    truncated.write_bytes(data[: len(data) // 2])
    _one_line(lambda: Bundle.load(truncated), "truncated.kit", "truncated or corrupted")

    tampered = tmp_path / "tampered.kit"  # one weight changed inside the zip, manifest untouched
    with zipfile.ZipFile(built["bundle"]) as src, zipfile.ZipFile(tampered, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            member = src.read(info.filename)
            if info.filename == "arrays/head_bias.npy":
                array = np.load(io.BytesIO(member))
                array[0] += 1.0
                buffer = io.BytesIO()
                np.save(buffer, array)
                member = buffer.getvalue()
            dst.writestr(info.filename, member)
    _one_line(lambda: Bundle.load(tampered), "tampered.kit", "arrays/head_bias.npy", "fails its checksum")

    _one_line(lambda: Bundle.load(built["coreset"]), "coreset.kit", "is a 'coreset' artifact")
    _one_line(lambda: Bundle.load(built["model"]), "digits.kit", "is a 'model' artifact")
    text = tmp_path / "notes.kit"
    text.write_text("hello\n")
    _one_line(lambda: Bundle.load(text), "notes.kit", "not a readable kit artifact")
    _one_line(lambda: Bundle.load(tmp_path / "missing.kit"), "missing.kit", "no such file")


def test_builder_refuses_what_does_not_belong_together(built, fsdd, tmp_path: Path) -> None:
    coreset = Coreset.load(built["coreset"])
    renamed = dataclasses.replace(coreset, classes=[f"d{c}" for c in coreset.classes]).save(tmp_path / "renamed.kit")
    _one_line(lambda: build_bundle(built["model"], renamed, tmp_path / "x.kit"), "renamed.kit", "coreset classes")
    shifted = dataclasses.replace(
        coreset, normalizer=dataclasses.replace(coreset.normalizer, mean=coreset.normalizer.mean + 1)
    )
    shifted_path = shifted.save(tmp_path / "shifted.kit")
    _one_line(
        lambda: build_bundle(built["model"], shifted_path, tmp_path / "x.kit"), "shifted.kit", "normaliser differs"
    )
    _one_line(
        lambda: build_bundle(built["model"], built["coreset"], tmp_path / "x.kit", formats=("coreml",)),
        "--format",
        "coreml",
    )
    _one_line(
        lambda: build_bundle(built["model"], built["coreset"], tmp_path / "x.kit", replay_dtype="int4"),
        "--replay-dtype",
    )
    _one_line(
        lambda: build_bundle(tmp_path / "none.kit", built["coreset"], tmp_path / "x.kit"),
        "none.kit",
        "no such model file",
    )
    assert not (tmp_path / "x.kit").exists()


# kit bundle / kit inspect ---------------------------------------------------------------------------------
def test_kit_bundle_tflite_float16_with_detector_options(built, fsdd, tmp_path: Path) -> None:
    out = tmp_path / "tflite.kit"
    result = runner.invoke(
        app,
        [
            "bundle",
            str(built["model"]),
            "--coreset",
            str(built["coreset"]),
            "--out",
            str(out),
            "--format",
            "tflite",
            "--replay-dtype",
            "float16",
            "--threshold",
            "0.7",
            "--hop",
            "0.05",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and "model.fp32.tflite" in result.output
    bundle = Bundle.load(out)
    assert list(bundle.models) == ["model.fp32.tflite"] and bundle.replay_dtype == "float16"
    assert bundle.detector.threshold == 0.7 and bundle.detector.hop_s == 0.05 and bundle.detector.minimum_count == 3
    model, _ = load_model(built["model"])
    with torch.no_grad():
        reference = model(torch.from_numpy(fsdd.x_test[:20])).numpy()
    assert np.abs(BundleClassifier(bundle).logits(fsdd.x_test[:20]) - reference).max() <= FP32_ATOL

    bad = runner.invoke(
        app,
        ["bundle", str(built["model"]), "--coreset", str(built["coreset"]), "--out", str(out), "--threshold", "1.5"],
    )
    assert isinstance(bad.exception, KitError) and "threshold" in str(bad.exception)


def test_kit_inspect_shows_and_verifies_a_bundle(built, bundle: Bundle, tmp_path: Path) -> None:
    result = runner.invoke(app, ["inspect", str(built["bundle"])], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    for needle in (
        "bundle",
        "model.int8.onnx",
        "model.fp32.onnx",
        "replay",
        "threshold=0.65",
        "linear 256 -> 10",
        "checksums",
    ):
        assert needle in text, needle
    broken = _rewrite(built["bundle"], tmp_path / "broken.kit", _bad_head)
    cli = subprocess.run(
        [sys.executable, "-m", "kit", "inspect", str(broken)], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert cli.returncode == 2 and "Traceback" not in cli.stderr
    assert (
        cli.stderr.strip().startswith("error:")
        and len(cli.stderr.strip().splitlines()) == 1
        and "head has 9 rows" in cli.stderr
    )


# Device sub-commands ----------------------------------------------------------------------------------
def _device(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "deploy.runtime", *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )


def test_device_info_and_classify(built, bundle: Bundle, data_dir: Path, tmp_path: Path) -> None:
    info = _device("info", str(built["bundle"]))
    assert info.returncode == 0, info.stderr
    for needle in (
        "checksums OK",
        "model.int8.onnx (default)",
        "replay",
        "50 x (3, 13, 64) int8",
        "threshold=0.65",
        "provenance",
    ):
        assert needle in info.stdout, needle
    summary = json.loads(_device("info", str(built["bundle"]), "--json").stdout)
    assert summary["classes"] == bundle.classes and summary["replay"]["n"] == 50
    assert summary["members"]["blobs/models/model.int8.onnx"]["bytes"] == len(bundle.models["model.int8.onnx"])

    clip = sorted((data_dir / "fsdd" / "recordings").glob("7_*_1.wav"))[0]
    out = _device("classify", str(built["bundle"]), str(clip), "--model", "model.fp32.onnx", "--top-k", "2", "--json")
    assert out.returncode == 0, out.stderr
    top = json.loads(out.stdout)["top"]
    expected = BundleClassifier(bundle, "model.fp32.onnx").classify_waveform(*read_wav(clip), top_k=2)
    assert [t["label"] for t in top] == [label for label, _ in expected]
    assert np.allclose([t["probability"] for t in top], [p for _, p in expected], atol=1e-5)

    broken = _rewrite(built["bundle"], tmp_path / "broken.kit", _drop_blob)
    for args in (
        ("info", str(broken)),
        ("classify", str(broken), str(clip)),
        ("classify", str(built["coreset"]), str(clip)),
    ):
        result = _device(*args)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.startswith("error:") and len(result.stderr.strip().splitlines()) == 1


def test_int8_head_check_judges_the_device_path_against_the_float_model(built, bundle: Bundle, fsdd) -> None:
    """The device computes embedding @ head; an int8 file is refused when that path strays from the float
    model's logits, not when the file's own (separately quantised) logits output differs from it."""
    from deploy.bundle_builder import INT8_HEAD_RTOL, head_check

    blob = bundle.models["model.int8.onnx"]
    x = fsdd.x_test[:60]
    weight, bias = np.asarray(bundle.head_weight), np.asarray(bundle.head_bias)
    model, _ = load_model(built["model"])
    with torch.no_grad():
        reference = model(torch.from_numpy(x)).numpy()
    check = head_check("model.int8.onnx", blob, weight, bias, x, reference)
    assert check["max_abs_head_vs_pytorch"] <= check["limit"] == INT8_HEAD_RTOL * max(1.0, float(np.ptp(reference)))
    # the same file judged against logits it does not reproduce (a model it was not exported from)
    wrong = reference + 0.5 * check["limit"] / INT8_HEAD_RTOL * np.eye(reference.shape[1])[np.arange(len(x)) % 3]
    with pytest.raises(KitError, match="embedding @ head does not reproduce"):
        head_check("model.int8.onnx", blob, weight, bias, x, wrong)
