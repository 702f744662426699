"""The container format and the coreset file: round trips and every corruption it must refuse."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from deploy.runtime.artifact import (
    FORMAT_VERSION,
    Artifact,
    safe_extract_zip,
    safe_member_path,
    write_artifact,
)
from deploy.runtime.coreset import Coreset, Normalizer
from deploy.runtime.errors import KitError
from deploy.runtime.features import FeatureConfig


def make_coreset(soft: bool = False, n_per_class: int = 2, classes=("a", "b", "c")) -> Coreset:
    rng = np.random.default_rng(0)
    config = FeatureConfig(sample_rate=8000)
    n = n_per_class * len(classes)
    labels = np.repeat(np.arange(len(classes)), n_per_class)
    if soft:
        labels = np.eye(len(classes), dtype=np.float32)[labels] * 0.9 + 0.1 / len(classes)
    return Coreset(
        features=rng.standard_normal((n, *config.shape)).astype(np.float32),
        labels=labels,
        classes=list(classes),
        feature_config=config,
        normalizer=Normalizer(rng.random((3, 13)).astype(np.float32), rng.random((3, 13)).astype(np.float32) + 0.5),
        method="random",
        params={"ipc": n_per_class},
        seed=7,
        source={"dataset": "fsdd", "split": "official"},
    )


def rewrite_zip(src: Path, dst: Path, edit) -> None:
    """Copy a zip member by member, letting ``edit(name, data)`` change the bytes."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, edit(info.filename, zin.read(info.filename)))


def test_coreset_round_trip_float16_and_soft_labels(tmp_path: Path) -> None:
    original = make_coreset(soft=True)
    path = original.save(tmp_path / "c.kit")
    loaded = Coreset.load(path)
    assert loaded.classes == original.classes
    assert loaded.feature_config == original.feature_config
    assert loaded.method == "random" and loaded.seed == 7 and loaded.source["dataset"] == "fsdd"
    np.testing.assert_allclose(loaded.features, original.features, atol=2e-3, rtol=1e-3)  # float16 storage
    np.testing.assert_allclose(loaded.labels, original.labels, rtol=1e-6)
    np.testing.assert_array_equal(loaded.normalizer.mean, original.normalizer.mean)
    assert loaded.ipc == 2 and loaded.class_counts() == {"a": 2, "b": 2, "c": 2}


def test_float32_storage_is_exact(tmp_path: Path) -> None:
    original = make_coreset()
    loaded = Coreset.load(original.save(tmp_path / "c.kit", dtype="float32"))
    np.testing.assert_array_equal(loaded.features, original.features)
    np.testing.assert_array_equal(loaded.labels, original.labels)


def test_truncated_file_is_refused(tmp_path: Path) -> None:
    path = make_coreset().save(tmp_path / "c.kit")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(KitError, match="truncated or corrupted"):
        Coreset.load(path)


def test_flipped_byte_is_refused(tmp_path: Path) -> None:
    path = make_coreset().save(tmp_path / "c.kit")
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 3] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(KitError, match=str(path.name)):
        Coreset.load(path)


def test_tampered_array_is_refused(tmp_path: Path) -> None:
    path = make_coreset().save(tmp_path / "c.kit")
    bad = tmp_path / "bad.kit"

    def edit(name: str, data: bytes) -> bytes:
        if name == "arrays/features.npy":
            buf = io.BytesIO()
            np.save(buf, np.zeros((6, 3, 13, 64), dtype=np.float16))
            return buf.getvalue()
        return data

    rewrite_zip(path, bad, edit)
    with pytest.raises(KitError, match="features.npy fails its checksum"):
        Coreset.load(bad)


def test_edited_metadata_is_refused(tmp_path: Path) -> None:
    path = make_coreset().save(tmp_path / "c.kit")
    bad = tmp_path / "bad.kit"

    def edit(name: str, data: bytes) -> bytes:
        if name == "manifest.json":
            manifest = json.loads(data)
            manifest["meta"]["classes"] = ["x", "y", "z"]
            return json.dumps(manifest).encode()
        return data

    rewrite_zip(path, bad, edit)
    with pytest.raises(KitError, match="metadata does not match"):
        Coreset.load(bad)


def test_newer_format_version_is_refused(tmp_path: Path) -> None:
    path = make_coreset().save(tmp_path / "c.kit")
    newer = tmp_path / "newer.kit"

    def edit(name: str, data: bytes) -> bytes:
        if name == "manifest.json":
            manifest = json.loads(data)
            manifest["format_version"] = FORMAT_VERSION + 1
            return json.dumps(manifest).encode()
        return data

    rewrite_zip(path, newer, edit)
    with pytest.raises(KitError, match="newer than this kit reads"):
        Coreset.load(newer)


def test_missing_member_and_wrong_kind_and_not_an_artifact(tmp_path: Path) -> None:
    path = make_coreset().save(tmp_path / "c.kit")
    missing = tmp_path / "missing.kit"
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(missing, "w") as zout:
        for info in zin.infolist():
            if info.filename != "arrays/labels.npy":
                zout.writestr(info.filename, zin.read(info.filename))
    with pytest.raises(KitError, match="missing"):
        Coreset.load(missing)

    model = write_artifact(tmp_path / "m.kit", Artifact(kind="model", meta={"arch": "convnet"}))
    with pytest.raises(KitError, match="is a 'model' artifact, expected coreset"):
        Coreset.load(model)

    plain = tmp_path / "plain.wav"
    plain.write_bytes(b"RIFF....WAVEfmt ")
    with pytest.raises(KitError, match="not a readable kit artifact"):
        Coreset.load(plain)
    with pytest.raises(KitError, match="no such file"):
        Coreset.load(tmp_path / "absent.kit")


def test_inconsistent_coreset_is_refused() -> None:
    good = make_coreset()
    with pytest.raises(KitError, match="labels"):
        Coreset(good.features, good.labels[:-1], good.classes, good.feature_config, good.normalizer, "random")
    with pytest.raises(KitError, match="does not match its feature config"):
        Coreset(good.features[:, :, :5], good.labels, good.classes, good.feature_config, good.normalizer, "random")


def test_out_of_range_labels_are_refused(tmp_path: Path) -> None:
    coreset = make_coreset()
    coreset.labels = coreset.labels + 5
    path = coreset.save(tmp_path / "c.kit")
    with pytest.raises(KitError, match="outside its 3 classes"):
        Coreset.load(path)


def test_object_arrays_are_never_written(tmp_path: Path) -> None:
    with pytest.raises(KitError, match="dtype object"):
        write_artifact(
            tmp_path / "x.kit", Artifact(kind="x", meta={}, arrays={"bad": np.array([{"a": 1}], dtype=object)})
        )


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    path = make_coreset().save(tmp_path / "c.kit")
    before = path.read_bytes()
    with pytest.raises(KitError):
        write_artifact(path, Artifact(kind="x", meta={}, arrays={"bad": np.array([None], dtype=object)}))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.kit"]


def test_member_paths_never_escape(tmp_path: Path) -> None:
    assert safe_member_path(tmp_path, "models/a.onnx") == (tmp_path / "models/a.onnx").resolve()
    for evil in ("../evil", "a/../../evil", "/etc/passwd"):
        with pytest.raises(KitError, match="outside"):
            safe_member_path(tmp_path, evil)
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok.txt", "fine")
        zf.writestr("../escaped.txt", "bad")
    target = tmp_path / "out"
    with pytest.raises(KitError, match="outside"):
        safe_extract_zip(archive, target)
    assert not (tmp_path / "escaped.txt").exists()
    assert not (target / "ok.txt").exists(), "nothing is extracted when any member is unsafe"


def test_kit_inspect_shows_and_verifies(tmp_path: Path) -> None:
    from kit.cli import app

    path = make_coreset().save(tmp_path / "c.kit")
    result = CliRunner().invoke(app, ["inspect", str(path)])
    assert result.exit_code == 0, result.output
    assert "coreset" in result.output and "random" in result.output and "OK" in result.output
    as_json = CliRunner().invoke(app, ["inspect", str(path), "--json"])
    assert json.loads(as_json.output)["meta"]["method"] == "random"

    path.write_bytes(path.read_bytes()[:100])
    bad = CliRunner().invoke(app, ["inspect", str(path)])
    assert bad.exit_code != 0 and isinstance(bad.exception, KitError)
