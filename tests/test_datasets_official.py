"""UrbanSound8K, RAVDESS and ESC-50 under their official protocols, on fixtures in the published layouts
(tests/dataset_fixtures.py), plus the downloads of their archives (zip and tar, MD5 or SHA-256)."""

from __future__ import annotations

import csv
import hashlib
import io
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from dataset_fixtures import make_esc50, make_ravdess, make_us8k, ravdess_name
from typer.testing import CliRunner

from kit.audio import load_audio
from kit.cli import app, main
from kit.data import REGISTRY, ArchiveSpec, check_groups_disjoint, fold_plan, install_archive, load_dataset, parse_folds
from kit.data.ravdess import RAVDESS_CONFIG
from kit.data.types import AudioDataset, Clip
from kit.errors import KitError


@pytest.fixture(scope="module")
def official(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("official")
    make_us8k(data)
    make_ravdess(data)
    make_esc50(data)
    return data


# --- UrbanSound8K ---------------------------------------------------------------------------------
def test_us8k_official_folds_fsid_groups_and_missing_file(official):
    ds = load_dataset("us8k", official, test_fold=10)
    assert ds.name == "urbansound8k" and len(ds.classes) == 10 and "gun_shot" in ds.classes
    assert len(ds.clips) == 200  # 201 listed, one missing on disk and left out
    assert "missing on disk" in ds.description and "100101-3-0-0.wav" in ds.description
    assert {c.path.parent.name for c in ds.clips_in("test")} == {"fold10"}
    assert all(c.group.startswith("fs") for c in ds.clips)
    assert not {c.group for c in ds.clips_in("test")} & {c.group for c in ds.clips_in("train")}
    assert load_dataset("urbansound8k", official, test_fold=3).fingerprint() != ds.fingerprint()


def test_us8k_mixed_rates_bit_depths_and_stereo_load_as_16k_mono(official):
    infos = {
        (sf.info(str(c.path)).samplerate, sf.info(str(c.path)).channels, sf.info(str(c.path)).subtype)
        for c in load_dataset("us8k", official).clips
    }
    assert {44100, 48000, 96000, 22050} <= {r for r, _, _ in infos} and {1, 2} == {ch for _, ch, _ in infos}
    assert "PCM_U8" in {s for _, _, s in infos}
    stereo = next(c for c in load_dataset("us8k", official).clips if sf.info(str(c.path)).channels == 2)
    y = load_audio(stereo.path, 16000)
    assert y.ndim == 1 and abs(len(y) - 8000) <= 1 and np.abs(y).max() > 0.1


def test_us8k_without_metadata_reads_the_file_names(tmp_path):
    make_us8k(tmp_path, per_class_per_fold=1, with_meta=False, missing=False)
    ds = load_dataset("us8k", tmp_path, test_fold=2)
    assert len(ds.clips) == 100 and "file names" in ds.split_rule
    bad = tmp_path / "UrbanSound8K" / "audio" / "fold3" / "dog-bark.wav"
    shutil.copy(next(bad.parent.glob("*.wav")), bad)
    with pytest.raises(KitError, match=r"dog-bark.wav: file name breaks the UrbanSound8K convention"):
        load_dataset("us8k", tmp_path)


def _rewrite_csv(root: Path, edit) -> None:
    meta = root / "metadata" / "UrbanSound8K.csv"
    rows = list(csv.reader(meta.open()))
    with meta.open("w", newline="") as handle:
        csv.writer(handle).writerows(edit(rows))


@pytest.mark.parametrize(
    "edit,message",
    [
        (
            lambda rows: [[c for i, c in enumerate(r) if i != 1] for r in rows],
            r"UrbanSound8K.csv: column 'fsID' is missing",
        ),
        (lambda rows: rows[:1] + [[*rows[1][:5], "11", *rows[1][6:]]] + rows[2:], r"line 2: fold 11 is out of range"),
        # one Freesound recording listed in fold 1 and fold 10: a leak across the split
        (
            lambda rows: (
                rows + [[rows[1][0].replace("-0.wav", "-9.wav"), rows[1][1], *rows[1][2:5], "10", *rows[1][6:]]]
            ),
            r"Freesound recording \(fsID\) 'fs100001' is in both train .* and test",
        ),
    ],
)
def test_us8k_metadata_errors_are_one_line(tmp_path, edit, message):
    root = make_us8k(tmp_path, per_class_per_fold=1, missing=False)
    shutil.copy(root / "audio" / "fold1" / "100001-0-0-0.wav", root / "audio" / "fold10" / "100001-0-0-9.wav")
    _rewrite_csv(root, edit)
    with pytest.raises(KitError, match=message) as info:
        load_dataset("us8k", tmp_path, test_fold=10)
    assert "\n" not in str(info.value)


def test_fold_out_of_range_and_unknown_datasets_for_folds(official):
    with pytest.raises(KitError, match=r"urbansound8k: --test-fold 11 is out of range .*1\.\.10"):
        load_dataset("us8k", official, test_fold=11)
    with pytest.raises(KitError, match=r"esc50: --test-fold 6 is out of range"):
        load_dataset("esc50", official, test_fold=6)
    assert parse_folds("all", fold_plan("us8k")) == list(range(1, 11))
    assert parse_folds("2,4", fold_plan("ravdess")) == [2, 4]
    with pytest.raises(KitError, match=r"--folds: fold 7 is out of range for ravdess"):
        parse_folds("1,7", fold_plan("ravdess"))
    with pytest.raises(KitError, match=r"--folds: dataset 'fsdd' has no official folds"):
        fold_plan("fsdd")


# --- RAVDESS --------------------------------------------------------------------------------------
def test_ravdess_emotions_actor_disjoint_fixed_rule_and_kfold(official):
    ds = load_dataset("ravdess", official)
    assert ds.classes == sorted(["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"])
    assert {c.group for c in ds.clips_in("test")} == {"actor21", "actor22", "actor23", "actor24"}
    assert "song" in ds.description  # the song file of actor 1 is read too
    seen = set()
    for fold in fold_plan("ravdess").folds:
        fold_ds = load_dataset("ravdess", official, split=fold_plan("ravdess").split, test_fold=fold)
        test = {c.group for c in fold_ds.clips_in("test")}
        assert len(test) == 4 and not test & {c.group for c in fold_ds.clips_in("train")}
        seen |= test
    assert len(seen) == 24  # six folds cover every actor exactly once
    y = load_audio(next(c.path for c in ds.clips if c.group == "actor02"), 16000)  # a stereo 48-kHz file
    assert y.ndim == 1 and abs(len(y) - 9600) <= 1


@pytest.mark.parametrize(
    "name,message",
    [
        ("03-01-09-01-01-01-05.wav", r"emotion code 09 is out of range \(01\.\.08\)"),
        ("03-01-01-01-01-05.wav", r"breaks the RAVDESS convention MM-VV-EE-II-SS-RR-AA"),
        ("03-01-01-01-01-01-07.wav", r"actor 07 in the file name but the file is in Actor_05"),
    ],
)
def test_ravdess_name_errors(tmp_path, name, message):
    root = make_ravdess(tmp_path, actors=range(1, 25), emotions=range(1, 3), seconds=0.1, song_actor=None)
    shutil.copy(next((root / "Actor_05").glob("*.wav")), root / "Actor_05" / name)
    with pytest.raises(KitError, match=message):
        load_dataset("ravdess", tmp_path)


def test_an_actor_in_both_train_and_test_is_refused(tmp_path):
    path = tmp_path / ravdess_name(1, 3)
    clips = [Clip(path, "neutral", "train", "actor03"), Clip(path.with_name("x.wav"), "neutral", "test", "actor03")]
    ds = AudioDataset("ravdess", tmp_path, ["neutral"], clips, RAVDESS_CONFIG)
    with pytest.raises(KitError, match=r"ravdess: actor 'actor03' is in both train .* and test \(x.wav\)"):
        check_groups_disjoint(ds, "actor")


# --- ESC-50 / ESC-10 from meta/esc50.csv ------------------------------------------------------------
def test_esc50_meta_and_esc10_flag(official):
    esc50 = load_dataset("esc50", official, test_fold=2)
    assert len(esc50.classes) == 4 and len(esc50.clips) == 40 and "missing on disk" in esc50.description
    esc10 = load_dataset("esc10", official)  # no esc10/ folder: the esc10-flagged rows of esc50/
    assert esc10.classes == ["dog", "pig"] and len(esc10.clips) == 20
    assert parse_folds("all", fold_plan("esc10")) == [1, 2, 3, 4, 5]


def test_esc50_csv_missing_a_column(tmp_path):
    root = make_esc50(tmp_path, classes=2, per_fold=1, missing=False)
    meta = root / "meta" / "esc50.csv"
    rows = [r[:4] for r in csv.reader(meta.open())]  # no esc10 column
    with meta.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    assert len(load_dataset("esc50", tmp_path).clips) == 10
    with pytest.raises(KitError, match=r"esc50.csv: column 'esc10' is missing"):
        load_dataset("esc10", tmp_path)


# --- kit data info ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name,expect",
    [
        ("urbansound8k", ["10 classes, 200 clips", "10 official folds", "fold 10 test", "96000"]),
        ("ravdess", ["8 classes", "actors 21-24 test", "6 folds of 4", "48000"]),
        ("esc50", ["4 classes, 40 clips", "5 official folds", "fold 5 test"]),
    ],
)
def test_cli_data_info_describes_folds_classes_groups(official, name, expect):
    fold = ["--test-fold", "10"] if name == "urbansound8k" else []
    args = ["data", "info", name, "--data-dir", str(official), *fold]
    result = CliRunner().invoke(app, args, terminal_width=240)
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())  # rich wraps long lines at the terminal width
    for text in expect + ["speakers/groups"]:
        assert text in out, text


def test_cli_fold_error_exits_2_in_one_line(official, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "info", "ravdess", "--data-dir", str(official), "--split", "actors", "--test-fold", "7"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "--test-fold 7 is out of range" in err and "Traceback" not in err


# --- downloads ----------------------------------------------------------------------------------
def _zip(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path


def _md5_spec(archive: Path, name: str, expect: str, md5: str | None = None) -> ArchiveSpec:
    data = archive.read_bytes()
    return ArchiveSpec(
        name=name,
        url=archive.as_uri(),
        sha256="",
        md5=md5 or hashlib.md5(data).hexdigest(),
        size=len(data),
        target=name,
        expect=expect,
    )


def test_download_ravdess_zip_with_published_md5_loads_unchanged(tmp_path):
    staging = tmp_path / "staging"
    make_ravdess(staging, actors=range(1, 25), emotions=range(1, 3), seconds=0.1, song_actor=None)
    files = sorted((staging / "ravdess").rglob("*.wav"))
    members = {p.relative_to(staging / "ravdess").as_posix(): p.read_bytes() for p in files}
    archive = _zip(tmp_path / "Audio_Speech_Actors_01-24.zip", members)  # Actor_XX/ at the top, as published
    data_dir = tmp_path / "data"
    target = install_archive(_md5_spec(archive, "ravdess", "Actor_01"), data_dir, progress=False)
    assert target == data_dir / "ravdess" and len(load_dataset("ravdess", data_dir).clips) == 24 * 4
    marker = (target / ".kit-download.json").read_text()
    assert hashlib.sha256(archive.read_bytes()).hexdigest() in marker
    bad = tmp_path / "bad"
    with pytest.raises(KitError, match=r"MD5 [0-9a-f]{32}, expected the published 0{32}"):
        install_archive(_md5_spec(archive, "ravdess", "Actor_01", md5="0" * 32), bad, progress=False)
    assert list(bad.iterdir()) == []


def test_download_us8k_tar_strips_its_top_folder(tmp_path):
    staging = tmp_path / "staging"
    make_us8k(staging, per_class_per_fold=1, missing=False)
    archive = tmp_path / "UrbanSound8K.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(staging / "UrbanSound8K", arcname="UrbanSound8K")
    target = install_archive(_md5_spec(archive, "urbansound8k", "audio"), tmp_path / "data", progress=False)
    assert (target / "metadata" / "UrbanSound8K.csv").is_file()
    assert len(load_dataset("us8k", tmp_path / "data").clips) == 100


@pytest.mark.parametrize(
    "members,links",
    [
        ({"ESC-50-master/meta/esc50.csv": b"x", "../evil": b"x"}, None),
        ({"ESC-50-master/../../evil": b"x"}, None),
        ({"/tmp/evil-absolute-kit-zip": b"x"}, None),
        ({"ESC-50-master/meta/esc50.csv": b"x"}, {"ESC-50-master/audio/link": "/etc/passwd"}),
    ],
)
def test_download_zip_refuses_members_outside_the_target(tmp_path, members, links):
    archive = _zip(tmp_path / "evil.zip", members, links)
    data_dir = tmp_path / "data"
    with pytest.raises(KitError, match="refusing to extract"):
        install_archive(_md5_spec(archive, "esc50", "meta/esc50.csv"), data_dir, progress=False)
    assert list(data_dir.iterdir()) == [] and not (tmp_path / "evil").exists()
    assert not Path("/tmp/evil-absolute-kit-zip").exists()


def test_registry_has_the_seed_papers_datasets_with_cited_checksums():
    for name in ("urbansound8k", "ravdess", "esc50", "speech_commands", "fsdd"):
        spec = REGISTRY[name]
        assert spec.url.startswith("https://") and spec.source
        assert len(spec.sha256) == 64 or len(spec.md5) == 32
    assert REGISTRY["ravdess"].size == 208468073


def test_cli_download_alias_with_a_local_archive(tmp_path, monkeypatch):
    archive = _zip(tmp_path / "esc.zip", {"ESC-50-master/meta/esc50.csv": b"filename,fold,category\n"})
    monkeypatch.setitem(REGISTRY, "esc50", _md5_spec(archive, "esc50", "meta/esc50.csv"))
    result = CliRunner().invoke(app, ["data", "download", "ESC-50", "--data-dir", str(tmp_path / "d")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "d" / "esc50" / "meta" / "esc50.csv").is_file()
    assert io.StringIO(result.output).getvalue().count("verified and installed") == 1
