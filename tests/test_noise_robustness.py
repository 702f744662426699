"""Noise robustness (kit.experiments.noise_robustness, kit noise) on the real FSDD recordings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from deploy.runtime.errors import KitError
from deploy.runtime.features import fix_length
from kit.audio import load_audio
from kit.cli import app
from kit.experiments.noise_robustness import add_noise_at_snr, measured_snr_db, noise_rng, parse_snrs
from kit.experiments.rundir import load_results

runner = CliRunner()


@pytest.fixture(scope="module")
def fsdd_clips(data_dir: Path) -> np.ndarray:
    """Four real FSDD clips cut/padded to the 1-s window the front-end sees."""
    paths = sorted((data_dir / "fsdd" / "recordings").glob("*.wav"))[::700][:4]
    return np.stack([fix_length(load_audio(p, 8000), 8000) for p in paths])


@pytest.fixture(scope="module")
def random_coreset(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kit.pipeline import distill_coreset, load_training_set

    fs, loader = load_training_set("fsdd", data_dir, limit_per_class=8, progress=False)
    coreset, _, _ = distill_coreset(fs, loader, "random", 2, seed=0)
    path = tmp_path_factory.mktemp("noise") / "fsdd_random2.kit"
    coreset.save(path)
    return path


@pytest.mark.parametrize("snr", [30.0, 10.0, 0.0, -5.0])
def test_noise_hits_the_asked_snr(fsdd_clips: np.ndarray, snr: float) -> None:
    noisy = add_noise_at_snr(fsdd_clips, snr, np.random.default_rng(3))
    assert noisy.shape == fsdd_clips.shape and noisy.dtype == np.float32
    np.testing.assert_allclose(measured_snr_db(fsdd_clips, noisy), snr, atol=0.01)  # float32 rounding only
    residual = noisy.astype(np.float64) - fsdd_clips
    assert abs(residual.mean()) < 0.05 * residual.std()  # zero-mean
    z = (residual / residual.std(axis=1, keepdims=True)).ravel()
    assert abs(np.mean(z**4) - 3.0) < 0.2  # Gaussian kurtosis, not e.g. uniform (1.8)
    one = add_noise_at_snr(fsdd_clips[0], snr, np.random.default_rng(3))
    assert one.shape == fsdd_clips[0].shape
    np.testing.assert_array_equal(add_noise_at_snr(fsdd_clips, snr, np.random.default_rng(3)), noisy)  # seeded


def test_noise_streams_and_edge_cases(fsdd_clips: np.ndarray) -> None:
    a = add_noise_at_snr(fsdd_clips, 10.0, noise_rng(0, 10.0, "test"))
    assert np.array_equal(a, add_noise_at_snr(fsdd_clips, 10.0, noise_rng(0, 10.0, "test")))
    assert not np.array_equal(a, add_noise_at_snr(fsdd_clips, 10.0, noise_rng(0, 10.0, "rendered")))
    assert not np.array_equal(a, add_noise_at_snr(fsdd_clips, 10.0, noise_rng(1, 10.0, "test")))
    silent = add_noise_at_snr(np.zeros(100, np.float32), 10.0, np.random.default_rng(0))
    assert not silent.any()
    assert parse_snrs("clean, 30,20,20,-5") == [None, 30.0, 20.0, -5.0]
    for bad in ("", "ten", "1000", "nan"):
        with pytest.raises(KitError, match="--snrs"):
            parse_snrs(bad)
    with pytest.raises(KitError, match="SNR"):
        add_noise_at_snr(fsdd_clips, float("inf"), np.random.default_rng(0))


def test_kit_noise_quick_run_writes_table_and_resumes(
    random_coreset: Path, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    out = Path("noise")  # a relative run folder, as users type it
    args = [
        "noise",
        str(random_coreset),
        "--out",
        str(out),
        "--quick",
        "--snrs",
        "clean,10",
        "--max-samples",
        "400",
        "--data-dir",
        str(data_dir),
        "--quiet",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    results = load_results(out)
    assert results["experiment"] == "noise_robustness"
    (table,) = results["tables"]
    assert [row[0] for row in table["rows"]] == ["clean", "10 dB"]
    assert table["rows"][0][1] == "-" and abs(table["rows"][1][1] - 10.0) < 0.01  # measured on the test clips
    assert "100 test clips" in table["title"] and "20 training clips" in table["title"]
    head = results["headline"]
    assert head["snrs"] == ["clean", "10 dB"] and head["n_test"] == 100
    for key in ("accuracy_rendered", "accuracy_random_real"):
        assert len(head[key]) == 2 and all(0.0 <= a <= 1.0 for a in head[key])
    assert head["accuracy_random_real"][0] > 0.15  # trained on real clips: above chance (0.10) even this short
    png = out / results["figures"][0]["file"]
    assert png.name == "accuracy_vs_snr.png" and png.read_bytes()[:4] == b"\x89PNG"
    assert len(list((out / "audio").glob("*.wav"))) == 20
    cells = json.loads((out / "cells.json").read_text())
    assert set(cells) == {f"{v}|{s}|seed0" for v in ("rendered", "random_real") for s in ("clean", "10 dB")}

    # resume: finished cells are not recomputed (a sentinel value survives into the table)
    cells["rendered|10 dB|seed0"]["accuracy"] = 0.123
    (out / "cells.json").write_text(json.dumps(cells))
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert load_results(out)["headline"]["accuracy_rendered"][1] == 0.123
    assert "12.3 ± 0.0" in again.output
    # other settings in the same folder are refused instead of mixed in
    other = runner.invoke(app, [*args[:-1], "--seed", "1"])
    assert isinstance(other.exception, KitError) and "different run" in str(other.exception)
