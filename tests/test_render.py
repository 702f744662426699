"""Griffin-Lim rendering (kit.render, kit render) on the real FSDD recordings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from deploy.runtime.coreset import Coreset
from deploy.runtime.errors import KitError
from deploy.runtime.features import (
    FeatureConfig,
    dct_matrix,
    extract_features,
    log_mel_spectrogram,
    mel_filterbank,
    mfcc,
)
from deploy.runtime.wavio import read_wav
from kit.cli import app
from kit.experiments.rundir import load_results
from kit.render import (
    features_to_audio,
    features_to_mel_power,
    reextract,
    render_coreset,
    round_trip_metrics,
)

runner = CliRunner()

# Bound on the correlation between the distilled (normalised) MFCC map and the MFCC re-extracted
# from its Griffin-Lim audio. Why 0.95: the 13 coefficients are recovered exactly by the inverse DCT
# (the smoothed mel envelope has the same first 13 DCT terms), so only the NNLS mel -> STFT step and
# Griffin-Lim's phase estimate lose anything; on FSDD test clips 32 iterations measured 0.988-0.993,
# white noise of the same RMS about 0 (-0.06..0.0). 0.95 leaves room for other BLAS/librosa builds
# while staying far above what a useless render (white noise) reaches.
ROUND_TRIP_BOUND = 0.95
NOISE_BOUND = 0.3


@pytest.fixture(scope="module")
def fsdd(data_dir: Path):
    from kit.pipeline import load_training_set

    return load_training_set("fsdd", data_dir, limit_per_class=12, progress=False)


@pytest.fixture(scope="module")
def dm_coreset(fsdd, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real, quickly distilled (3 DM steps) 2-per-class FSDD coreset, saved as a file."""
    from kit.pipeline import distill_coreset

    fs, loader = fsdd
    coreset, _, _ = distill_coreset(fs, loader, "dm", 2, seed=0, steps=3, progress=False)
    path = tmp_path_factory.mktemp("render") / "fsdd_dm2.kit"
    coreset.save(path)
    return path


def test_inversion_mirrors_the_front_end(fsdd) -> None:
    """mfcc -> mel power inverts the kit's dB/DCT exactly on the kept coefficients; librosa's mel filters are the
    kit's."""
    import librosa

    fs, _ = fsdd
    config = fs.config
    np.testing.assert_allclose(
        librosa.filters.mel(
            sr=config.sample_rate, n_fft=config.n_fft, n_mels=config.n_mels, fmin=config.fmin, fmax=config.upper_hz
        ),
        mel_filterbank(config.sample_rate, config.n_fft, config.n_mels, config.fmin, config.upper_hz),
        atol=1e-7,
    )
    raw = fs.normalizer.inverse(fs.x_test[:1])[0]
    mel = features_to_mel_power(raw, config)
    recovered = dct_matrix(config.n_mfcc, config.n_mels) @ (10 * np.log10(mel))
    np.testing.assert_allclose(recovered, raw[0], atol=2e-3 * np.abs(raw[0]).max())
    log_mel_config = config.with_(kind="log_mel")
    y = np.random.default_rng(0).standard_normal(config.n_samples) * 0.1
    lm = log_mel_spectrogram(y, log_mel_config)
    np.testing.assert_allclose(10 * np.log10(features_to_mel_power(lm[None], log_mel_config)), lm, atol=1e-4)
    assert mfcc(y, config).shape == (config.n_mfcc, config.n_frames)


def test_real_clip_round_trip_beats_noise(fsdd) -> None:
    fs, _ = fsdd
    x = fs.x_test[:3]
    audio = features_to_audio(x, fs.config, fs.normalizer, n_iter=32, seed=0)
    assert audio.shape == (3, fs.config.n_samples) and audio.dtype == np.float32
    rendered = round_trip_metrics(x, reextract(audio, fs.config, fs.normalizer))
    rms = np.sqrt(np.mean(audio.astype(np.float64) ** 2, axis=1, keepdims=True))
    noise = (np.random.default_rng(1).standard_normal(audio.shape) * rms).astype(np.float32)
    floor = round_trip_metrics(x, reextract(noise, fs.config, fs.normalizer))
    per_sample = np.array(rendered["correlation_per_sample"])[:, 0]
    assert per_sample.min() > ROUND_TRIP_BOUND, per_sample
    assert max(floor["correlation"]) < NOISE_BOUND, floor["correlation"]
    assert rendered["relative_error"][0] < 0.5 * floor["relative_error"][0]
    # one map alone renders exactly as inside a stack (map i of a stack uses seed + i)
    np.testing.assert_array_equal(features_to_audio(x[1], fs.config, fs.normalizer, n_iter=32, seed=1), audio[1])


@pytest.mark.parametrize("kind", ["log_mel", "mfcc"])
def test_other_invertible_kinds_round_trip(data_dir: Path, kind: str) -> None:
    """log-mel inverts from mel directly, single-channel MFCC like fd_mfcc's channel 0 (raw maps, no normaliser)."""
    from kit.audio import load_audio
    from kit.data.fsdd import FSDD_CONFIG

    config = FSDD_CONFIG.with_(kind=kind)
    paths = sorted((data_dir / "fsdd" / "recordings").glob("*.wav"))[::700][:2]
    x = np.stack([extract_features(load_audio(p, config.sample_rate), config) for p in paths])
    audio = features_to_audio(x, config, n_iter=32, seed=0)
    metrics = round_trip_metrics(x, reextract(audio, config))
    assert min(np.array(metrics["correlation_per_sample"])[:, 0]) > ROUND_TRIP_BOUND  # measured 0.993 / 0.999
    assert metrics["relative_error"][0] < 0.15  # measured 0.04


def test_render_coreset_writes_wavs_and_resumes(dm_coreset: Path, tmp_path: Path) -> None:
    coreset = Coreset.load(dm_coreset)
    config = coreset.feature_config
    result = render_coreset(coreset, tmp_path / "audio", n_iter=16, seed=0, progress=False)
    wavs = sorted((tmp_path / "audio").glob("*.wav"))
    assert len(wavs) == len(coreset.features) == 20
    assert [p.name for p in wavs] == [p.name for p in result.paths]
    labels = [coreset.classes[i] for i in coreset.hard_labels]
    for path, label in zip(wavs, labels):
        assert path.stem.split("_", 1)[1] == label
        y, rate = read_wav(path)  # the device's reader takes the float WAVs
        assert rate == config.sample_rate == 8000 and len(y) == config.n_samples
        assert np.isfinite(y).all() and np.abs(y).max() > 0
    manifest = json.loads(result.manifest_path.read_text())
    assert [f["file"] for f in manifest["files"]] == [p.name for p in wavs]
    assert manifest["settings"]["n_iter"] == 16 and manifest["round_trip"]["n"] == 20
    assert result.metrics["correlation"][0] > 0.9  # synthetic maps render less cleanly than real ones; still close
    np.testing.assert_allclose(reextract(result.audio, config, coreset.normalizer), result.reextracted)

    stamps = [p.stat().st_mtime_ns for p in wavs]
    again = render_coreset(coreset, tmp_path / "audio", n_iter=16, seed=0, progress=False)
    assert again.reused == 20 and [p.stat().st_mtime_ns for p in wavs] == stamps
    np.testing.assert_array_equal(again.audio, result.audio)
    other = render_coreset(
        coreset, tmp_path / "audio", n_iter=16, seed=5, progress=False
    )  # other settings: re-rendered
    assert other.reused == 0 and not np.array_equal(other.audio, result.audio)


def test_lpcc_cannot_be_rendered(tmp_path: Path) -> None:
    from deploy.runtime.coreset import Normalizer

    config = FeatureConfig(kind="lpcc", sample_rate=8000)
    c, f, t = config.shape
    coreset = Coreset(
        features=np.zeros((2, c, f, t), np.float32),
        labels=np.array([0, 1]),
        classes=["a", "b"],
        feature_config=config,
        normalizer=Normalizer(np.zeros((c, f), np.float32), np.ones((c, f), np.float32)),
        method="random",
    )
    with pytest.raises(KitError, match="lpcc"):
        features_to_audio(coreset.features[0], config)
    with pytest.raises(KitError, match="lpcc"):
        render_coreset(coreset, tmp_path / "audio", progress=False)
    assert not list((tmp_path).glob("audio/*.wav"))
    path = tmp_path / "lpcc.kit"
    coreset.save(path)
    proc = subprocess.run(
        [sys.executable, "-m", "kit", "render", str(path), "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "lpcc" in proc.stderr and "Traceback" not in proc.stderr


def test_kit_render_cli_on_a_real_coreset(
    dm_coreset: Path, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    out = Path("run")  # a relative run folder, as users type it
    args = [
        "render",
        str(dm_coreset),
        "--out",
        str(out),
        "--quick",
        "--evaluate",
        "--max-samples",
        "400",
        "--data-dir",
        str(data_dir),
        "--quiet",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "round trip correlation" in result.output and "ConvNet accuracy" in result.output
    results = load_results(out)
    assert results["experiment"] == "render"
    head = results["headline"]
    assert head["n_rendered"] == 20 and head["n_test"] == 100 and head["griffin_lim_iterations"] == 16
    assert head["round_trip_correlation"] > 0.9
    assert 0.0 <= head["accuracy_rendered"] <= 1.0 and 0.0 <= head["accuracy_original"] <= 1.0
    round_trip, accuracy = results["tables"]
    assert [row[0] for row in round_trip["rows"]] == ["mfcc", "delta", "delta2"]
    assert all(row[1] > row[3] + 0.5 for row in round_trip["rows"])  # rendered audio >> white noise
    assert len(accuracy["rows"]) == 2
    assert (out / results["figures"][0]["file"]).stat().st_size > 10_000
    assert len(results["audio"]) == 20 and all((out / a["file"]).is_file() for a in results["audio"])
    config = json.loads((out / "config.json").read_text())
    assert config["experiment"] == "render" and config["config"]["settings"]["seed"] == 0
    cells = json.loads((out / "cells.json").read_text())
    assert set(cells) == {"original|seed0", "rendered|seed0"}
    # the same command again resumes: no cell recomputed (a sentinel survives into the table)
    cells["rendered|seed0"]["accuracy"] = 0.123
    (out / "cells.json").write_text(json.dumps(cells))
    assert runner.invoke(app, args).exit_code == 0
    assert load_results(out)["headline"]["accuracy_rendered"] == 0.123
    bad = runner.invoke(app, ["render", str(dm_coreset), "--out", str(tmp_path / "bad"), "--iterations", "0"])
    assert isinstance(bad.exception, KitError) and "--iterations" in str(bad.exception)
