"""Features: numpy DSP against librosa on real recordings, shapes of every kind, the on-disk cache,
parallel extraction, bad-file handling and train-only normalisation."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from deploy.runtime.coreset import Normalizer
from deploy.runtime.features import FeatureConfig, extract_features, fix_length
from deploy.runtime.features import mfcc as runtime_mfcc
from kit.audio import load_audio
from kit.cli import app
from kit.data import load_dataset
from kit.errors import KitError
from kit.features import (
    CACHE_STATS,
    FEATURE_CODE_VERSION,
    cache_paths,
    extract_clips,
    fd_mfcc,
    load_feature_set,
    log_mel,
    lpcc,
    mfcc,
)


# --- DSP ---------------------------------------------------------------------------------------
def _librosa_mfcc(y: np.ndarray, config: FeatureConfig) -> np.ndarray:
    import librosa
    import scipy.fft

    mel = librosa.feature.melspectrogram(
        y=y.astype(np.float64),
        sr=config.sample_rate,
        n_fft=config.n_fft,
        hop_length=config.hop_length,
        win_length=config.win_length,
        window="hann",
        center=True,
        pad_mode="constant",
        power=2.0,
        n_mels=config.n_mels,
        fmin=config.fmin,
        fmax=config.upper_hz,
        htk=False,
        norm="slaney",
    )
    db = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None)
    return scipy.fft.dct(db, type=2, axis=0, norm="ortho")[: config.n_mfcc]


@pytest.mark.parametrize(
    "relative,rate",
    [("fsdd/recordings/7_jackson_32.wav", 8000), ("speech_commands/yes/022cd682_nohash_0.wav", 16000)],
)
def test_numpy_mfcc_matches_librosa_on_real_clips(data_dir, relative, rate):
    path = data_dir / relative
    if not path.is_file():  # any clip of the same folder will do
        path = sorted(path.parent.glob("*.wav"))[0]
    config = FeatureConfig(kind="mfcc", sample_rate=rate)
    y = fix_length(load_audio(path, rate), config.n_samples).astype(np.float64)
    ours = runtime_mfcc(y, config)
    theirs = _librosa_mfcc(y, config)[:, : config.n_frames]
    assert ours.shape == theirs.shape == (13, config.n_frames)
    np.testing.assert_allclose(ours, theirs, atol=1e-3, rtol=0)
    np.testing.assert_allclose(mfcc(y, rate), ours, atol=1e-3)  # the librosa-style wrapper


def test_functional_features_have_librosa_like_shapes():
    rng = np.random.default_rng(0)
    y = rng.standard_normal(16000).astype(np.float32) * 0.1
    hop = FeatureConfig().hop_length
    assert mfcc(y, 16000).shape == (13, 16000 // hop)
    assert mfcc(y, 16000, n_mfcc=20).shape == (20, 16000 // hop)
    assert fd_mfcc(y, 16000).shape == (3, 13, 16000 // hop)
    assert log_mel(y, 16000, n_mels=64).shape == (64, 16000 // hop)
    assert lpcc(y, 16000).shape == (13, 16000 // hop)
    assert mfcc(y[:8000], 8000).dtype == np.float32
    with pytest.raises(KitError, match="mono"):
        mfcc(np.zeros((2, 100)), 16000)


@pytest.mark.parametrize("kind", ["fd_mfcc", "mfcc", "log_mel", "lpcc"])
def test_every_kind_extracts_its_declared_shape(data_dir, kind):
    ds = load_dataset("fsdd", data_dir)
    config = ds.feature_config.with_(kind=kind)
    features, kept = extract_clips(ds.clips[:6], config, jobs=1, progress=False)
    assert features.shape == (6, *config.shape) and features.dtype == np.float32
    assert np.isfinite(features).all() and kept.tolist() == list(range(6))
    expected = {"fd_mfcc": (3, 13, 64), "mfcc": (1, 13, 64), "log_mel": (1, 40, 64), "lpcc": (1, 13, 64)}[kind]
    assert config.shape == expected
    direct = extract_features(load_audio(ds.clips[0].path, 8000), config)
    np.testing.assert_array_equal(features[0], direct)


# --- cache and parallelism ----------------------------------------------------------------------
def test_second_extraction_hits_the_cache(tone_tree, tmp_path):
    ds = load_dataset(tone_tree)
    cache = tmp_path / "cache"
    CACHE_STATS.reset()
    first, kept = extract_clips(ds.clips, ds.feature_config, cache_dir=cache, jobs=1, progress=False)
    features_path, kept_path = cache_paths(ds.clips, ds.feature_config, cache)
    assert features_path.is_file() and kept_path.is_file()
    assert features_path.parent.name == f"v{FEATURE_CODE_VERSION}"
    assert (CACHE_STATS.misses, CACHE_STATS.hits, CACHE_STATS.clips_extracted) == (1, 0, 24)
    second, _ = extract_clips(ds.clips, ds.feature_config, cache_dir=cache, jobs=1, progress=False)
    assert (CACHE_STATS.misses, CACHE_STATS.hits, CACHE_STATS.clips_extracted) == (1, 1, 24)
    assert CACHE_STATS.last_hit and CACHE_STATS.last_path == features_path
    np.testing.assert_array_equal(first, second)
    loaded = np.load(features_path, allow_pickle=False)
    np.testing.assert_array_equal(loaded, first)

    # a changed file (new mtime), a changed config or a different clip list all miss
    touched = ds.clips[5].path
    stat = touched.stat()
    os.utime(touched, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    extract_clips(ds.clips, ds.feature_config, cache_dir=cache, jobs=1, progress=False)
    extract_clips(ds.clips, ds.feature_config.with_(n_mfcc=12), cache_dir=cache, jobs=1, progress=False)
    extract_clips(ds.clips[:-1], ds.feature_config, cache_dir=cache, jobs=1, progress=False)
    assert (CACHE_STATS.misses, CACHE_STATS.hits) == (4, 1)
    assert len(list((cache / f"v{FEATURE_CODE_VERSION}").glob("*.kept.npy"))) == 4


def test_process_pool_gives_the_same_features_as_inline(data_dir, tmp_path):
    ds = load_dataset("fsdd", data_dir)
    clips = ds.clips[::50]  # 60 clips from every speaker and digit
    inline, _ = extract_clips(clips, ds.feature_config, cache_dir=tmp_path / "a", jobs=1, progress=False)
    pooled, kept = extract_clips(clips, ds.feature_config, cache_dir=tmp_path / "b", jobs=2, progress=True)
    np.testing.assert_array_equal(inline, pooled)
    assert kept.tolist() == list(range(60))


@pytest.fixture
def tree_with_bad_files(tone_tree: Path) -> Path:
    (tone_tree / "low" / "x.wav").write_bytes(b"\x00garbage, not audio\xff" * 20)
    (tone_tree / "mid" / "spk1_empty.wav").write_bytes(b"")
    return tone_tree


def test_bad_clips_raise_or_are_skipped_and_counted(tree_with_bad_files, capfd):
    ds = load_dataset(tree_with_bad_files)
    assert len(ds.clips) == 26
    with pytest.raises(KitError, match=r"(x\.wav: unreadable or corrupt|spk1_empty\.wav: empty file)"):
        extract_clips(ds.clips, ds.feature_config, jobs=2, progress=False)
    capfd.readouterr()
    features, kept = extract_clips(ds.clips, ds.feature_config, jobs=2, skip_bad=True, progress=False)
    assert len(kept) == len(features) == 24
    bad = {ds.clips[i].path.name for i in set(range(26)) - set(kept.tolist())}
    assert bad == {"x.wav", "spk1_empty.wav"}
    assert "skipped 2 of 26 clips" in capfd.readouterr().err
    # a cached result with skipped clips still refuses when skipping is not allowed
    with pytest.raises(KitError, match=r"(x\.wav|spk1_empty\.wav)"):
        extract_clips(ds.clips, ds.feature_config, jobs=1, progress=False)
    fs = load_feature_set(ds, skip_bad=True, progress=False)
    assert fs.source["n_skipped"] == 2 and len(fs.x_train) + len(fs.x_test) == 24
    assert set(fs.source["skipped"]) == {"low/x.wav", "mid/spk1_empty.wav"}


def test_cli_features_skip_bad_reports_the_count(tree_with_bad_files):
    runner = CliRunner()
    result = runner.invoke(app, ["data", "features", str(tree_with_bad_files), "--jobs", "1"])
    assert result.exit_code != 0 and isinstance(result.exception, KitError)
    result = runner.invoke(
        app, ["data", "features", str(tree_with_bad_files), "--skip-bad", "--jobs", "1"], terminal_width=200
    )
    assert result.exit_code == 0, result.output
    assert "skipped 2 unreadable clips" in result.output


# --- feature sets --------------------------------------------------------------------------------
def test_feature_set_normalises_with_training_statistics_only(data_dir):
    fs = load_feature_set("fsdd", data_dir, limit_per_class=8, progress=False)
    assert fs.classes == [str(d) for d in range(10)]
    assert fs.x_train.shape == (80, 3, 13, 64) and fs.x_test.shape == (80, 3, 13, 64)
    assert fs.y_train.dtype == np.int64 and Counter(fs.y_train.tolist()) == {i: 8 for i in range(10)}
    ds = load_dataset("fsdd", data_dir)
    from kit.features import limit_clips

    train = limit_clips(ds, ds.clips_in("train"), 8)
    test = limit_clips(ds, ds.clips_in("test"), 8)
    raw_train, _ = extract_clips(train, ds.feature_config, progress=False)
    raw_test, _ = extract_clips(test, ds.feature_config, progress=False)
    reference = Normalizer.fit(raw_train)
    np.testing.assert_allclose(fs.normalizer.mean, reference.mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(fs.normalizer.std, reference.std, rtol=1e-6, atol=1e-6)
    both = Normalizer.fit(np.concatenate([raw_train, raw_test]))
    assert not np.allclose(fs.normalizer.mean, both.mean, atol=1e-3)  # test clips did not leak in
    np.testing.assert_allclose(fs.x_train.mean(axis=(0, 3)), 0.0, atol=1e-4)
    np.testing.assert_allclose(fs.x_train.std(axis=(0, 3)), 1.0, atol=1e-3)
    np.testing.assert_allclose(fs.normalizer.inverse(fs.x_test), raw_test, atol=1e-3)
    assert [fs.classes[i] for i in fs.y_train] == [c.label for c in train]
    assert fs.groups_train.tolist() == [c.group for c in train]
    assert len(set(fs.groups_train.tolist())) > 1  # the hash order spreads a small subset over speakers
    assert (
        fs.source["dataset"]["name"] == "fsdd" and fs.source["dataset_path"] == "fsdd" and fs.source["n_skipped"] == 0
    )


def test_full_fsdd_extracts_then_hits_the_cache(data_dir, tmp_path, monkeypatch):
    # a cache of its own: earlier tests in the session may already have cached full FSDD
    monkeypatch.setenv("KIT_CACHE_DIR", str(tmp_path / "cache"))
    CACHE_STATS.reset()
    fs = load_feature_set("fsdd", data_dir, progress=False)
    assert fs.x_train.shape == (2700, 3, 13, 64) and fs.x_test.shape == (300, 3, 13, 64)
    assert CACHE_STATS.misses == 1 and CACHE_STATS.clips_extracted == 3000
    assert CACHE_STATS.last_path.is_relative_to(Path(os.environ["KIT_CACHE_DIR"]))
    again = load_feature_set("fsdd", data_dir, progress=False)
    assert CACHE_STATS.hits == 1 and CACHE_STATS.clips_extracted == 3000
    np.testing.assert_array_equal(fs.x_test, again.x_test)


@pytest.mark.parametrize(
    "name,kwargs,n_classes,shape",
    [
        ("fsdd", {"split": "speaker"}, 10, (3, 13, 64)),
        ("speech_commands", {"task": "kws10"}, 10, (3, 13, 64)),
        ("speech_commands", {"task": "kws12"}, 12, (3, 13, 64)),
        ("esc10", {}, 10, (3, 13, 160)),
    ],
)
def test_feature_sets_of_the_shared_datasets(data_dir, name, kwargs, n_classes, shape):
    fs = load_feature_set(name, data_dir, limit_per_class=3, progress=False, **kwargs)
    assert len(fs.classes) == n_classes
    assert fs.x_train.shape == (3 * n_classes, *shape) and fs.x_test.shape == (3 * n_classes, *shape)
    assert sorted(set(fs.y_test.tolist())) == list(range(n_classes))
    assert np.isfinite(fs.x_train).all() and np.isfinite(fs.x_test).all()
    assert fs.config.shape == shape


def test_feature_set_accepts_a_config_and_a_dataset_object(tone_tree):
    ds = load_dataset(tone_tree)
    fs = load_feature_set(ds, config=ds.feature_config.with_(kind="log_mel"), progress=False)
    assert fs.x_train.shape[1:] == (1, 40, 64) and fs.config.kind == "log_mel"
    assert len(fs.x_train) == 18 and len(fs.x_test) == 6
    # the source records how to load the same clips again (a folder path here)
    assert load_dataset(fs.source["dataset_path"]).fingerprint() == fs.source["dataset"] == ds.fingerprint()
    with pytest.raises(KitError, match="limit_per_class"):
        load_feature_set(ds, limit_per_class=0, progress=False)
