"""Data loading: every loader on the real recordings and on generated trees, split hygiene
(no speaker, fold or noise second on both sides), audio decoding errors, safe downloads, CLI."""

from __future__ import annotations

import csv
import hashlib
import io
import re
import tarfile
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import tone
from typer.testing import CliRunner

from kit.audio import audio_info, load_audio
from kit.cli import app, main
from kit.data import (
    REGISTRY,
    ArchiveSpec,
    AudioDataset,
    Clip,
    groups_in_both,
    install_archive,
    load_dataset,
    resolve_data_dir,
    summarize,
)
from kit.data.fsdd import FSDD_TEST_SPEAKERS
from kit.data.paths import cache_dir
from kit.data.speech_commands import KEYWORDS, SILENCE, UNKNOWN
from kit.data.splits import tf_which_set
from kit.errors import KitError

FSDD_NAME = re.compile(r"^(\d)_([a-z]+)_(\d+)$")


# --- paths -----------------------------------------------------------------------------------
def test_resolve_data_dir_prefers_argument_then_env_then_user_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("KIT_DATA_DIR", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_dir() == tmp_path / "env"
    monkeypatch.delenv("KIT_DATA_DIR")
    assert resolve_data_dir() == tmp_path / "xdg" / "audio-distill-kit" / "data"
    monkeypatch.setenv("KIT_CACHE_DIR", str(tmp_path / "cache"))
    assert cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("KIT_CACHE_DIR")
    assert cache_dir() == tmp_path / "xdg" / "audio-distill-kit" / "features"


# --- FSDD --------------------------------------------------------------------------------------
def test_fsdd_official_split_is_takes_0_to_4(data_dir):
    ds = load_dataset("fsdd", data_dir)
    assert ds.classes == [str(d) for d in range(10)]
    assert len(ds.clips_in("train")) == 2700 and len(ds.clips_in("test")) == 300
    for clip in ds.clips:
        digit, speaker, take = FSDD_NAME.match(clip.path.stem).groups()
        assert clip.label == digit and clip.group == speaker
        assert clip.split == ("test" if int(take) < 5 else "train")
    per_cell = Counter((c.group, c.label) for c in ds.clips_in("test"))
    assert set(per_cell.values()) == {5} and len(per_cell) == 60


def test_fsdd_speaker_split_holds_out_whole_speakers(data_dir):
    ds = load_dataset("fsdd", data_dir, split="speaker")
    test_speakers = {c.group for c in ds.clips_in("test")}
    train_speakers = {c.group for c in ds.clips_in("train")}
    assert test_speakers == set(FSDD_TEST_SPEAKERS)
    assert not test_speakers & train_speakers and len(train_speakers) == 4
    assert groups_in_both(ds) == set()
    assert (len(ds.clips_in("train")), len(ds.clips_in("test"))) == (2000, 1000)
    assert ds.fingerprint()["sha256"] != load_dataset("fsdd", data_dir).fingerprint()["sha256"]


def test_fingerprint_is_stable_and_describes_the_clip_list(data_dir):
    a, b = load_dataset("fsdd", data_dir), load_dataset("fsdd", data_dir)
    fp = a.fingerprint()
    assert fp == b.fingerprint()
    assert fp["name"] == "fsdd" and fp["n_clips"] == 3000 and fp["classes"] == a.classes
    assert re.fullmatch(r"[0-9a-f]{64}", fp["sha256"])
    moved = AudioDataset(
        a.name, a.root, a.classes, [Clip(c.path, c.label, "train", c.group) for c in a.clips], a.feature_config
    )
    assert moved.fingerprint()["sha256"] != fp["sha256"]


# --- Speech Commands -------------------------------------------------------------------------
def test_speech_commands_kws10_falls_back_to_a_speaker_split(data_dir):
    ds = load_dataset("speech_commands", data_dir)
    assert ds.classes == sorted(KEYWORDS)
    assert ds.feature_config.sample_rate == 16000
    # the premise of the fallback: the dataset's own rule sends every shared speaker to test
    assert {tf_which_set(c.group) for c in ds.clips} == {"test"}
    assert "mod 100" in ds.split_rule and ds.fingerprint()["split_rule"] == ds.split_rule
    assert "mod 100" in ds.description
    n_train, n_test = len(ds.clips_in("train")), len(ds.clips_in("test"))
    assert (
        n_train + n_test
        == len(ds.clips)
        == sum(len(list((data_dir / "speech_commands" / w).glob("*.wav"))) for w in KEYWORDS)
    )
    assert 0.1 < n_test / len(ds.clips) < 0.3
    assert groups_in_both(ds) == set()
    assert {c.label for c in ds.clips_in("test")} == set(KEYWORDS)


def test_speech_commands_kws12_adds_unknown_and_time_disjoint_silence(data_dir):
    ds = load_dataset("speech_commands", data_dir, task="kws12")
    assert ds.classes == sorted([*KEYWORDS, UNKNOWN, SILENCE])
    assert set(ds.classes[:2]) == {UNKNOWN, SILENCE}  # underscores sort first
    # speakers never straddle the split; noise recordings are split in time instead
    assert groups_in_both(ds, exclude_prefix="_background_noise_/") == set()
    unknown = [c for c in ds.clips if c.label == UNKNOWN]
    assert unknown and all(c.path.stem.split("_nohash_")[0].endswith("_" + c.group) for c in unknown)
    cuts = [c for c in ds.clips if c.duration_s is not None]
    assert cuts and all(c.label == SILENCE for c in cuts)
    by_file = defaultdict(lambda: {"train": [], "test": []})
    for c in cuts:
        by_file[c.path][c.split].append((c.offset_s, c.offset_s + c.duration_s))
    assert len(by_file) == 6
    for path, sides in by_file.items():
        length = audio_info(path).duration_s
        train_end = max(end for _, end in sides["train"])
        test_start = min(start for start, _ in sides["test"])
        assert train_end <= test_start <= max(end for _, end in sides["test"]) <= length
        assert train_end >= 0.75 * length and test_start <= 0.81 * length
        for side in sides.values():  # cuts within a side do not overlap either
            side.sort()
            assert all(a[1] <= b[0] for a, b in zip(side, side[1:]))
    silence_files = [c for c in ds.clips if c.label == SILENCE and c.duration_s is None]
    assert {c.split for c in silence_files} == {"train", "test"}
    y = load_audio(cuts[3].path, 16000, cuts[3].offset_s, cuts[3].duration_s)
    full = load_audio(cuts[3].path, 16000)
    start = int(round(cuts[3].offset_s * 16000))
    np.testing.assert_array_equal(y, full[start : start + 16000])


# --- ESC ---------------------------------------------------------------------------------------
def test_esc10_holds_out_a_fold(data_dir):
    ds = load_dataset("esc10", data_dir)
    assert len(ds.classes) == 10 and "Dog bark" in ds.classes
    assert (len(ds.clips_in("train")), len(ds.clips_in("test"))) == (320, 80)
    assert all(c.path.name.startswith("5-") and c.group == "fold5" for c in ds.clips_in("test"))
    assert groups_in_both(ds) == set()
    assert ds.feature_config.duration_s == 5.0 and ds.feature_config.shape[2] == 160
    ds2 = load_dataset("esc10", data_dir, test_fold=2)
    assert all(c.path.name.startswith("2-") for c in ds2.clips_in("test"))
    with pytest.raises(KitError, match="test-fold 7"):
        load_dataset("esc10", data_dir, test_fold=7)


def test_esc50_reads_its_metadata_csv(tmp_path):
    root = tmp_path / "esc50"
    (root / "audio").mkdir(parents=True)
    (root / "meta").mkdir()
    rows = []
    for fold in range(1, 6):
        for ci, category in enumerate(["dog", "rain"]):
            name = f"{fold}-{100 + ci}-A-{ci}.wav"
            sf.write(root / "audio" / name, tone(300 + 500 * ci, 16000, 0.5), 16000)
            rows.append([name, fold, ci, category, "True", 100 + ci, "A"])
    with (root / "meta" / "esc50.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        writer.writerows(rows)
    ds = load_dataset("esc50", tmp_path, test_fold=3)
    assert ds.classes == ["dog", "rain"]
    assert {c.path.name[0] for c in ds.clips_in("test")} == {"3"} and len(ds.clips_in("train")) == 8


# --- folders and manifests -----------------------------------------------------------------
def test_folder_dataset_holds_out_speakers(tone_tree):
    ds = load_dataset(tone_tree)
    assert ds.classes == ["high", "low", "mid"] and len(ds.clips) == 24
    assert ds.feature_config.sample_rate == 8000
    assert {c.group for c in ds.clips} == {"spk0", "spk1", "spk2", "spk3"}
    test_groups = {c.group for c in ds.clips_in("test")}
    assert len(test_groups) == 1 and groups_in_both(ds) == set()
    assert len(ds.clips_in("test")) == 6
    other = load_dataset(tone_tree, seed=1)
    assert [c.split for c in load_dataset(tone_tree).clips] == [c.split for c in ds.clips]  # deterministic
    assert other.fingerprint()["n_clips"] == 24


def test_folder_without_speakers_splits_every_class_by_name_hash(tmp_path):
    for label, freq in (("a", 300.0), ("b", 1200.0)):
        (tmp_path / "t" / label).mkdir(parents=True)
        for i in range(10):
            sf.write(tmp_path / "t" / label / f"clip{i}.wav", tone(freq, 16000, 0.3, seed=i), 16000)
    ds = load_dataset(tmp_path / "t")
    assert Counter((c.label, c.split) for c in ds.clips) == {
        ("a", "train"): 8,
        ("a", "test"): 2,
        ("b", "train"): 8,
        ("b", "test"): 2,
    }


def _write_manifest(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_csv_manifest_split_fold_and_group_columns(tone_tree, tmp_path):
    files = sorted(tone_tree.rglob("*.wav"))
    rel = [f.relative_to(tone_tree).as_posix() for f in files]
    labels = [f.parent.name for f in files]
    splits = ["test" if f.stem.endswith(("_0", "_1")) else "train" for f in files]
    ds = load_dataset(
        _write_manifest(
            tone_tree / "split.csv", ["path", "label", "split"], [[r, lab, s] for r, lab, s in zip(rel, labels, splits)]
        )
    )
    assert ds.classes == ["high", "low", "mid"]
    assert sorted(c.split for c in ds.clips) == sorted(splits)
    assert all(c.path.is_absolute() and c.path.is_file() for c in ds.clips)

    folds = [str(1 + i % 4) for i in range(len(files))]
    ds = load_dataset(
        _write_manifest(
            tone_tree / "fold.csv", ["path", "label", "fold"], [[r, lab, f] for r, lab, f in zip(rel, labels, folds)]
        ),
        test_fold=2,
    )
    assert {c.group for c in ds.clips_in("test")} == {"fold2"} and groups_in_both(ds) == set()

    groups = [f.stem.split("_")[0] for f in files]
    ds = load_dataset(
        _write_manifest(
            tone_tree / "group.csv", ["path", "label", "group"], [[r, lab, g] for r, lab, g in zip(rel, labels, groups)]
        )
    )
    assert groups_in_both(ds) == set() and len({c.group for c in ds.clips_in("test")}) == 1

    # a relative path outside the CSV folder (../) also resolves against the CSV
    sub = tmp_path / "lists"
    sub.mkdir()
    ds = load_dataset(
        _write_manifest(sub / "up.csv", ["path", "label"], [[f"../tones/{r}", lab] for r, lab in zip(rel, labels)])
    )
    assert len(ds.clips) == 24 and {c.split for c in ds.clips} == {"train", "test"}


# --- errors a user can fix ---------------------------------------------------------------------
def test_unknown_name_and_missing_data_dir_say_where_they_looked(tmp_path):
    with pytest.raises(KitError, match="unknown dataset 'nosuchset'.*kit data download"):
        load_dataset("nosuchset", tmp_path)
    with pytest.raises(KitError, match=r"data directory .*nowhere does not exist.*kit data download fsdd"):
        load_dataset("fsdd", tmp_path / "nowhere")
    with pytest.raises(KitError, match=r"speech_commands.*does not exist.*KIT_DATA_DIR"):
        load_dataset("speech_commands", tmp_path)  # data dir exists, dataset folder does not
    with pytest.raises(KitError, match="ESC-10"):
        load_dataset("esc10", tmp_path)
    with pytest.raises(KitError, match="unknown split"):
        load_dataset("fsdd", tmp_path, split="random")


def test_empty_class_and_test_only_class_are_named(tone_tree):
    (tone_tree / "silent").mkdir()
    with pytest.raises(KitError, match="class 'silent' has no audio files"):
        load_dataset(tone_tree)
    (tone_tree / "silent").rmdir()
    files = sorted(tone_tree.rglob("*.wav"))
    rows = [[f.relative_to(tone_tree).as_posix(), f.parent.name, "train"] for f in files]
    rows[0][1], rows[0][2] = "orphan", "test"
    with pytest.raises(KitError, match="class 'orphan' is in the test split but has no training clips"):
        load_dataset(_write_manifest(tone_tree / "m.csv", ["path", "label", "split"], rows))


def test_load_audio_errors_name_the_file_and_the_problem(tmp_path):
    garbage = tmp_path / "x.wav"
    garbage.write_bytes(b"this is not a wav file at all" * 10)
    with pytest.raises(KitError, match=r"x\.wav: unreadable or corrupt audio"):
        load_audio(garbage, 16000)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(KitError, match=r"empty\.wav: empty file \(0 bytes\)"):
        load_audio(empty, 16000)
    silent = tmp_path / "nosamples.wav"
    sf.write(silent, np.zeros(0, np.float32), 16000)
    with pytest.raises(KitError, match=r"nosamples\.wav: empty audio \(0 samples\)"):
        load_audio(silent, 16000)
    nan = tmp_path / "nan.wav"
    sf.write(nan, np.full(800, np.nan, np.float32), 8000, subtype="FLOAT")
    with pytest.raises(KitError, match=r"nan\.wav: every sample is NaN"):
        load_audio(nan, 8000)
    with pytest.raises(KitError, match=r"missing\.wav: no such audio file"):
        load_audio(tmp_path / "missing.wav", 16000)
    for exc_info in (garbage, empty):
        with pytest.raises(KitError) as err:
            load_audio(exc_info, 16000)
        assert "\n" not in str(err.value)


def test_load_audio_mixes_channels_and_resamples_like_the_device(tmp_path, data_dir):
    import librosa

    from deploy.runtime.features import resample as device_resample

    left, right = tone(440.0, 44100, 0.5), tone(660.0, 44100, 0.5, seed=3)
    path = tmp_path / "stereo.flac"
    sf.write(path, np.stack([left, right], axis=1), 44100)
    y = load_audio(path, 16000)
    assert y.dtype == np.float32 and y.ndim == 1 and len(y) == 8000
    mono, _ = sf.read(path, dtype="float32")
    np.testing.assert_allclose(y, device_resample(mono.mean(axis=1), 44100, 16000), atol=1e-6)
    # and it is a proper band-limited resampler: close to librosa's soxr away from the clip edges
    expected = librosa.resample(mono.mean(axis=1), orig_sr=44100, target_sr=16000, res_type="soxr_hq")
    assert np.abs(y[400:-400] - expected[400:-400]).max() < 5e-3
    ogg = next((data_dir / "esc10").glob("*/*.ogg"))
    assert len(load_audio(ogg, 16000)) == pytest.approx(5 * 16000, abs=40)


# --- download -----------------------------------------------------------------------------------
def _tar(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return path


def _spec(archive: Path, sha: str | None = None) -> ArchiveSpec:
    data = archive.read_bytes()
    return ArchiveSpec(
        name="toy",
        url=archive.as_uri(),
        sha256=sha or hashlib.sha256(data).hexdigest(),
        size=len(data),
        target="toy",
        expect="recordings",
    )


def test_download_verifies_checksum_and_installs_atomically(tmp_path):
    wav = io.BytesIO()
    sf.write(wav, tone(500.0, 8000, 0.2), 8000, format="WAV")
    archive = _tar(
        tmp_path / "toy.tar.gz", {"toy-1.0/recordings/0_a_0.wav": wav.getvalue(), "toy-1.0/README.md": b"hi"}
    )
    data_dir = tmp_path / "data"
    target = install_archive(_spec(archive), data_dir, progress=False)
    assert target == data_dir / "toy"
    assert (target / "recordings" / "0_a_0.wav").is_file() and (target / "README.md").read_bytes() == b"hi"
    assert sorted(p.name for p in data_dir.iterdir()) == ["toy"]  # no temp leftovers

    bad = tmp_path / "bad"
    with pytest.raises(KitError, match="SHA-256 .* expected 0{64}"):
        install_archive(_spec(archive, sha="0" * 64), bad, progress=False)
    assert list(bad.iterdir()) == []  # nothing extracted, temp download removed


@pytest.mark.parametrize(
    "members,links",
    [
        ({"../evil": b"x"}, None),
        ({"ok/recordings/a.wav": b"x", "ok/../../evil": b"x"}, None),
        ({"/tmp/evil-absolute-kit-test": b"x"}, None),
        ({"ok/recordings/a.wav": b"x"}, {"ok/recordings/link": "/etc/passwd"}),
    ],
)
def test_download_refuses_members_outside_the_target(tmp_path, members, links):
    archive = _tar(tmp_path / "evil.tar.gz", members, links)
    data_dir = tmp_path / "data"
    with pytest.raises(KitError, match="refusing to extract"):
        install_archive(_spec(archive), data_dir, progress=False)
    assert list(data_dir.iterdir()) == []
    assert not (tmp_path / "evil").exists() and not Path("/tmp/evil-absolute-kit-test").exists()


def test_registry_pins_real_checksums():
    assert {"fsdd", "speech_commands"} <= set(REGISTRY)
    for spec in REGISTRY.values():
        assert spec.url.startswith("https://") and (spec.size is None or spec.size > 0)
        # a SHA-256, or the MD5 where the publisher (Zenodo) lists only that
        assert re.fullmatch(r"[0-9a-f]{64}", spec.sha256) or re.fullmatch(r"[0-9a-f]{32}", spec.md5)
        assert spec.source  # where the checksum came from


# --- CLI -------------------------------------------------------------------------------------------
def test_cli_data_info_fsdd(data_dir):
    result = CliRunner().invoke(app, ["data", "info", "fsdd", "--data-dir", str(data_dir)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "2700" in result.output and "300" in result.output and "8000" in result.output
    assert "speakers/groups" in result.output
    summary = summarize(load_dataset("fsdd", data_dir, split="speaker"))
    assert (summary["train"].n_groups, summary["test"].n_groups) == (4, 2)
    assert 0.1 < summary["train"].duration_min < summary["train"].duration_mean < summary["train"].duration_max < 3.0


def test_cli_errors_are_one_line_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "info", "fsdd", "--data-dir", str(tmp_path / "none")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err and "kit data download fsdd" in err and "Traceback" not in err


def test_cli_download_with_a_local_archive(tmp_path, monkeypatch):
    archive = _tar(tmp_path / "toy.tar.gz", {"recordings/a.wav": b"x"})
    monkeypatch.setitem(REGISTRY, "toy", _spec(archive))
    runner = CliRunner()
    result = runner.invoke(app, ["data", "download", "toy", "--data-dir", str(tmp_path / "d")])
    assert result.exit_code == 0, result.output
    assert "verified and installed" in result.output and (tmp_path / "d" / "toy" / "recordings" / "a.wav").is_file()
    again = runner.invoke(app, ["data", "download", "toy", "--data-dir", str(tmp_path / "d")])
    assert again.exit_code == 0 and "already present" in again.output
