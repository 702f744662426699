"""Edge runtime: WAV reading, front-end parity with training, ONNX inference,
``KeywordClassifier`` and ``kit classify`` (with its one-line errors)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from deploy.export_onnx import export_onnx
from deploy.runtime.classifier import MetadataClassifier
from deploy.runtime.classify import KeywordClassifier, softmax
from deploy.runtime.coreset import Normalizer
from deploy.runtime.errors import KitError
from deploy.runtime.features import FeatureConfig, resample
from deploy.runtime.inference import ModelMetadata, OnnxModel
from deploy.runtime.recognizer import DetectorSettings
from deploy.runtime.stream import score_stream
from deploy.runtime.wavio import read_wav
from kit.cli import app, main
from kit.data import Clip
from kit.features import clip_features, load_feature_set
from kit.models import TorchPredictor, load_model, save_model
from kit.training import TrainConfig, train_model

# Same-rate front-end parity (device: read_wav + numpy DSP; training: soundfile via kit.audio +
# kit.features), max |diff| of normalised features. Both paths run the same numpy DSP on the same
# samples, so the observed difference is exactly 0; 1e-5 leaves room for BLAS summation order.
FRONTEND_ATOL = 1e-5


@pytest.fixture(scope="module")
def fsdd(data_dir: Path):
    return load_feature_set("fsdd", data_dir, limit_per_class=10, progress=False)


@pytest.fixture(scope="module")
def models(fsdd, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("edge")
    model = train_model(
        fsdd.x_train, fsdd.y_train, 10, TrainConfig(arch_kwargs={"width": 32}, max_samples=1000), progress=False
    )
    kit_path = save_model(
        out / "digits.kit",
        model,
        {"classes": fsdd.classes, "feature_config": fsdd.config, "normalizer": fsdd.normalizer, "source": fsdd.source},
    )
    return {"kit": kit_path, "onnx": export_onnx(kit_path, out / "digits.onnx")}


def _fsdd_clips(data_dir: Path, n: int) -> list[Path]:
    """``n`` official-test-split FSDD clips spread over digits and speakers."""
    paths = sorted((data_dir / "fsdd" / "recordings").glob("*_*_[0-4].wav"))
    return [paths[i] for i in np.linspace(0, len(paths) - 1, n).astype(int)]


def _speech_commands_clips(data_dir: Path, n: int) -> list[Path]:
    words = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "_silence_", "_unknown_"]
    return [sorted((data_dir / "speech_commands" / w).glob("*.wav"))[i] for i, w in enumerate(words)][:n]


# WAV reading -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "fmt,subtype",
    [
        ("WAV", "PCM_U8"),
        ("WAV", "PCM_16"),
        ("WAV", "PCM_24"),
        ("WAV", "PCM_32"),
        ("WAV", "FLOAT"),
        ("WAV", "DOUBLE"),
        ("WAVEX", "PCM_16"),
        ("WAVEX", "FLOAT"),
    ],
)
@pytest.mark.parametrize("channels", [1, 2])
def test_read_wav_decodes_like_libsndfile(tmp_path: Path, fmt: str, subtype: str, channels: int) -> None:
    rng = np.random.default_rng(channels)
    audio = np.clip(rng.standard_normal((1234, channels)) * 0.3, -1, 1).astype(np.float32)
    path = tmp_path / "x.wav"
    sf.write(path, audio, 11025, format=fmt, subtype=subtype)
    y, rate = read_wav(path)
    reference = sf.read(path, dtype="float64", always_2d=True)[0].mean(axis=1)
    assert rate == 11025 and y.dtype == np.float32 and y.shape == (1234,)
    np.testing.assert_allclose(y, reference, atol=1e-7, rtol=0)


def test_read_wav_equals_soundfile_on_real_recordings(data_dir: Path) -> None:
    for path in _fsdd_clips(data_dir, 5) + _speech_commands_clips(data_dir, 5):
        y, rate = read_wav(path)
        reference, ref_rate = sf.read(path, dtype="float32")
        assert rate == ref_rate and np.array_equal(y, reference), path


def test_write_wav_round_trips_real_recordings_and_leaves_no_partial_file(data_dir: Path, tmp_path: Path) -> None:
    from deploy.runtime.wavio import write_wav

    for i, path in enumerate(_fsdd_clips(data_dir, 3) + _speech_commands_clips(data_dir, 3)):
        y, rate = read_wav(path)  # 16-bit originals: written back, they read back sample for sample
        out = write_wav(tmp_path / f"copy{i}.wav", y, rate)
        again, again_rate = read_wav(out)
        assert again_rate == rate and np.max(np.abs(again - y)) <= 1.0 / 32767 + 1e-7, path
        assert sf.info(out).subtype == "PCM_16"
    clipped, _ = read_wav(write_wav(tmp_path / "loud.wav", np.array([2.0, -3.0] * 800), 16000))
    assert clipped.max() <= 1.0 and clipped.min() >= -1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*(f"copy{i}.wav" for i in range(6)), "loud.wav"])
    with pytest.raises(KitError, match="sample rate"):
        write_wav(tmp_path / "bad.wav", np.zeros(100), 3)


def _one_line_kit_error(call, *needles: str) -> str:
    with pytest.raises(KitError) as exc:
        call()
    message = str(exc.value)
    assert "\n" not in message and all(n in message for n in needles), message
    return message


def test_read_wav_errors_name_the_file(tmp_path: Path, data_dir: Path) -> None:
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00" + b"\xff" * 7)
    _one_line_kit_error(lambda: read_wav(corrupt), "corrupt.wav", "corrupt")
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 8000, subtype="PCM_16")
    _one_line_kit_error(lambda: read_wav(empty), "empty.wav", "no audio samples")
    zero = tmp_path / "zero.wav"
    zero.write_bytes(b"")
    _one_line_kit_error(lambda: read_wav(zero), "zero.wav", "empty file")
    text = tmp_path / "notes.wav"
    text.write_text("not audio at all\n")
    _one_line_kit_error(lambda: read_wav(text), "notes.wav", "not a WAV file")
    ogg = next((data_dir / "esc10").rglob("*.ogg"))
    _one_line_kit_error(lambda: read_wav(ogg), ogg.name, "not a WAV file")
    ulaw = tmp_path / "ulaw.wav"
    sf.write(ulaw, np.zeros(800, dtype=np.float32), 8000, subtype="ULAW")
    _one_line_kit_error(lambda: read_wav(ulaw), "ulaw.wav", "unsupported WAV encoding")
    _one_line_kit_error(lambda: read_wav(tmp_path / "missing.wav"), "missing.wav", "no such")
    # a file cut mid-data (a truncated download) is refused by name, not read to EOF in silence (issue 17)
    real = _fsdd_clips(data_dir, 1)[0]
    cut = tmp_path / "cut.wav"
    cut.write_bytes(real.read_bytes()[:3001])
    _one_line_kit_error(lambda: read_wav(cut), "cut.wav", "truncated")


# Front-end parity --------------------------------------------------------------------------------
class _FrontEndOnly(MetadataClassifier):
    """A ``Classifier`` with metadata and constant scores: lets KeywordClassifier.features run the device front-end."""

    def __init__(self, config: FeatureConfig, normalizer: Normalizer) -> None:
        self.metadata = ModelMetadata(classes=["a", "b"], feature_config=config, normalizer=normalizer)

    def logits(self, x: np.ndarray) -> np.ndarray:
        return np.zeros((len(x), 2), np.float32)

    def embed(self, x: np.ndarray) -> np.ndarray:
        return np.zeros((len(x), 1), np.float32)


def _training_path(paths: list[Path], config: FeatureConfig) -> np.ndarray:
    return np.stack([clip_features(Clip(p, "x", "test", "g"), config) for p in paths])


def test_device_front_end_matches_training_front_end(data_dir: Path, fsdd, models) -> None:
    """>= 20 real clips (12 FSDD at 8 kHz, 12 Speech Commands at 16 kHz) at their native rates."""
    fsdd_paths = _fsdd_clips(data_dir, 12)
    device = KeywordClassifier(models["onnx"])  # the real exported model's config and normaliser
    train_x = fsdd.normalizer.transform(_training_path(fsdd_paths, fsdd.config))
    edge_x = np.stack([device.features(*read_wav(p)) for p in fsdd_paths])
    diff_fsdd = float(np.abs(edge_x - train_x).max())

    sc_paths = _speech_commands_clips(data_dir, 12)
    sc_config = FeatureConfig(sample_rate=16000)
    raw = _training_path(sc_paths, sc_config)
    normalizer = Normalizer.fit(raw)
    sc_device = KeywordClassifier(_FrontEndOnly(sc_config, normalizer))
    edge_sc = np.stack([sc_device.features(*read_wav(p)) for p in sc_paths])
    diff_sc = float(np.abs(edge_sc - normalizer.transform(raw)).max())
    assert len(fsdd_paths) + len(sc_paths) >= 20
    assert diff_fsdd <= FRONTEND_ATOL and diff_sc <= FRONTEND_ATOL, (diff_fsdd, diff_sc)


def test_resampling_front_ends_match(data_dir: Path, fsdd, models) -> None:
    """16 kHz Speech Commands clips fed to the 8 kHz model: device and training share one resampler,
    so even across a rate change the features agree to float rounding."""
    paths = _speech_commands_clips(data_dir, 12)
    device = KeywordClassifier(models["onnx"])
    edge = np.stack([device.features(*read_wav(p)) for p in paths])
    train = fsdd.normalizer.transform(_training_path(paths, fsdd.config))
    assert float(np.abs(edge - train).max()) <= FRONTEND_ATOL * 10


# ONNX inference + classification -----------------------------------------------------------------
def test_onnx_model_metadata_and_predict(models, fsdd, tmp_path: Path) -> None:
    onnx_model = OnnxModel(models["onnx"])
    meta = onnx_model.metadata
    assert meta.classes == fsdd.classes and meta.feature_config == fsdd.config and meta.arch == "convnet"
    assert np.allclose(meta.normalizer.mean, fsdd.normalizer.mean) and meta.in_shape == (3, 13, 64)
    assert onnx_model.predict(fsdd.x_test[0]).shape == (1, 10)
    assert onnx_model.predict(fsdd.x_test[:6]).shape == (6, 10)
    assert onnx_model.embed(fsdd.x_test[:2]).shape == (2, 32 * 8)
    torch_model, _ = load_model(models["kit"])
    with torch.no_grad():
        reference = torch_model(torch.from_numpy(fsdd.x_test)).numpy()
    assert np.abs(onnx_model.predict(fsdd.x_test) - reference).max() <= 1e-4
    _one_line_kit_error(lambda: onnx_model.predict(np.zeros((2, 1, 40, 64), np.float32)), "does not fit")
    _one_line_kit_error(lambda: OnnxModel(models["kit"]), "digits.kit", "not a valid ONNX model")
    _one_line_kit_error(lambda: OnnxModel(tmp_path / "none.onnx"), "none.onnx", "no such")


def test_keyword_classifier_on_real_recordings(models, data_dir: Path) -> None:
    classifier = KeywordClassifier(models["onnx"])
    torch_model, meta = load_model(models["kit"])
    paths = _fsdd_clips(data_dir, 20)
    agree = 0
    for path in paths:
        top = classifier.classify_file(path, top_k=3)
        labels, probs = [t[0] for t in top], [t[1] for t in top]
        assert len(top) == 3 and len(set(labels)) == 3 and set(labels) <= set(classifier.classes)
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-9
        x = meta["normalizer"].transform(_training_path([path], classifier.feature_config))
        with torch.no_grad():
            torch_top = classifier.classes[int(torch_model(torch.from_numpy(x)).argmax())]
        agree += labels[0] == torch_top
    assert agree == len(paths), "device and training paths must pick the same top label"
    # a clip at another rate is resampled to the model's 8 kHz
    y, rate = read_wav(paths[0])
    top = classifier.classify_waveform(resample(y, rate, 16000), 16000, top_k=10)
    assert len(top) == 10 and abs(sum(p for _, p in top) - 1) < 1e-6
    with pytest.raises(KitError, match="top-k"):
        classifier.classify_waveform(y, rate, top_k=0)
    assert np.allclose(softmax(np.array([[1000.0, 0.0]])), [[1.0, 0.0]])


def test_onnx_and_torch_models_are_classifiers_with_the_same_scores(models, fsdd, data_dir: Path) -> None:
    """Both model kinds implement the ``Classifier`` protocol from the same kit metadata, and a
    ``KeywordClassifier`` on either one classifies clips and streams through the one shared path."""
    kinds = {"onnx": OnnxModel(models["onnx"]), "torch": TorchPredictor(models["kit"])}
    x = fsdd.x_test[:12]
    probs, embeddings = {}, {}
    for name, model in kinds.items():
        assert model.classes == fsdd.classes and model.feature_config == fsdd.config, name
        assert np.allclose(model.normalizer.mean, fsdd.normalizer.mean), name
        probs[name], embeddings[name] = model.predict_proba(x), model.embed(x)
        assert probs[name].shape == (12, 10) and np.allclose(probs[name].sum(axis=1), 1.0), name
        assert np.allclose(probs[name], softmax(model.logits(x))), name
    assert np.abs(probs["onnx"] - probs["torch"]).max() <= 1e-4
    assert np.abs(embeddings["onnx"] - embeddings["torch"]).max() <= 1e-3
    clip = _fsdd_clips(data_dir, 1)[0]
    tops = [KeywordClassifier(model).classify_file(clip, top_k=1)[0][0] for model in kinds.values()]
    assert tops[0] == tops[1]
    # a bare model streams like a bundle does: each hop's scores are the clip path's probabilities
    classifier = KeywordClassifier(kinds["onnx"])
    y, rate = read_wav(clip)
    y = np.pad(y[:rate], (0, 2 * rate - len(y[:rate])))  # the clip, then silence: 2 s
    scores = score_stream(classifier, y, rate, DetectorSettings(hop_s=0.5))
    assert list(scores.times) == [1.0, 1.5, 2.0]
    assert np.allclose(scores.probabilities[0], classifier.probabilities(y[:rate], rate), atol=1e-6)
    bare = _FrontEndOnly(fsdd.config, fsdd.normalizer)
    bare.metadata = ModelMetadata(classes=None, feature_config=None, normalizer=None)
    _one_line_kit_error(lambda: KeywordClassifier(bare), "lacks kit metadata")


def test_kit_classify_cli(models, data_dir: Path) -> None:
    clip = _fsdd_clips(data_dir, 1)[0]
    expected = KeywordClassifier(models["onnx"]).classify_file(clip, top_k=2)
    runner = CliRunner()
    for model_path in (models["onnx"], models["kit"]):
        result = runner.invoke(app, ["classify", str(model_path), str(clip), "--top-k", "2"])
        assert result.exit_code == 0, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 2
        label, score = lines[0].split()
        assert label == expected[0][0] and abs(float(score) - expected[0][1]) < 1e-3


def test_kit_classify_errors_are_one_line(models, tmp_path: Path, data_dir: Path, capsys) -> None:
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x24\x00\x00\x00WAVE" + b"\x00" * 20)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 8000, subtype="PCM_16")
    text = tmp_path / "clip.txt"
    text.write_text("hello")
    ogg = next((data_dir / "esc10").rglob("*.ogg"))
    garbage_onnx = tmp_path / "garbage.onnx"
    garbage_onnx.write_bytes(_fsdd_clips(data_dir, 1)[0].read_bytes())
    cases = [
        (models["onnx"], corrupt, "corrupt"),
        (models["onnx"], empty, "no audio samples"),
        (models["onnx"], text, "not a WAV file"),
        (models["onnx"], ogg, "not a WAV file"),
        (_fsdd_clips(data_dir, 1)[0], _fsdd_clips(data_dir, 1)[0], "cannot tell the model format"),
        (garbage_onnx, _fsdd_clips(data_dir, 1)[0], "not a valid ONNX model"),
    ]
    for model_path, clip, needle in cases:
        with pytest.raises(SystemExit) as exc:
            main(["classify", str(model_path), str(clip)])
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and "\n" not in err and "Traceback" not in err, err
