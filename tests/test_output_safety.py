"""Outputs never replace special files, readers never hang, hostile zips stay bounded, and two
writers of one file never lose an update (issue 17, "Critical" and "Output paths").

Everything happens in temporary folders with real files: FIFOs (``os.mkfifo``), a bound unix
socket, directories, symlinks, zips built here. No device node is ever written; ``/dev/null`` is
only *checked*. The concurrency tests start real ``python -m kit`` processes on a small bundle
built from real FSDD recordings.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import resource
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from deploy.bundle_builder import build_bundle
from deploy.runtime.artifact import Artifact, read_artifact, read_manifest, sha256_file, write_artifact
from deploy.runtime.bundle import Bundle
from deploy.runtime.coreset import Coreset
from deploy.runtime.errors import KitError
from deploy.runtime.models import open_model
from deploy.runtime.safeio import (
    atomic_write_files,
    check_output_dir,
    check_output_path,
    file_lock,
    open_regular,
    read_regular_bytes,
)
from deploy.runtime.wavio import read_wav
from kit.audio import load_audio
from kit.cli import main as kit_main
from kit.data import load_dataset
from kit.features import load_feature_set
from kit.pipeline import distill_coreset
from kit.training import TrainConfig, train_and_save

REPO = Path(__file__).resolve().parents[1]
BASE_DIGITS = ("0", "1", "2", "3")


# Special files -----------------------------------------------------------------------------------
@pytest.fixture
def specials(tmp_path: Path):
    """A FIFO, a bound unix socket, a directory, and symlinks to each kind of target."""
    fifo = tmp_path / "f.kit"
    os.mkfifo(fifo)
    sock_path = tmp_path / "s.kit"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(sock_path))
    folder = tmp_path / "d.kit"
    folder.mkdir()
    regular = tmp_path / "r.kit"
    regular.write_bytes(b"old")
    links = {}
    targets = {"to_reg": regular, "to_dir": folder, "to_fifo": fifo, "dangling": tmp_path / "nowhere"}
    for name, target in targets.items():
        links[name] = tmp_path / f"{name}.kit"
        links[name].symlink_to(target)
    yield {"fifo": fifo, "socket": sock_path, "dir": folder, "regular": regular, **links}
    sock.close()


@pytest.mark.parametrize(
    "kind, word",
    [
        ("fifo", "FIFO"),
        ("socket", "socket"),
        ("dir", "directory"),
        ("to_dir", "directory"),
        ("to_fifo", "FIFO"),
        ("dangling", "dangling"),
    ],
)
def test_check_output_path_refuses_non_regular_targets(specials, kind, word) -> None:
    with pytest.raises(KitError, match=word) as info:
        check_output_path(specials[kind], "--out")
    assert "\n" not in str(info.value) and str(specials[kind]) in str(info.value)


def test_check_output_path_refuses_a_device_without_touching_it() -> None:
    before = os.stat("/dev/null")
    with pytest.raises(KitError, match="is a device; refusing"):
        check_output_path("/dev/null", "--out")
    after = os.stat("/dev/null")
    assert (after.st_ino, after.st_mode, after.st_rdev) == (before.st_ino, before.st_mode, before.st_rdev)


def test_check_output_path_other_refusals_and_what_it_accepts(tmp_path: Path, specials) -> None:
    with pytest.raises(KitError, match="empty path"):
        check_output_path("", "--out")
    with pytest.raises(KitError, match="cannot create files in /proc"):
        check_output_path("/proc/x.kit", "--out")
    with pytest.raises(KitError, match="is not a directory"):
        check_output_path(specials["regular"] / "x.kit", "--out")
    with pytest.raises(KitError, match="is also an input"):
        check_output_path(specials["to_reg"], "--out", inputs=(specials["regular"],))
    # missing parents are fine (created at write time), and the check creates nothing
    deep = tmp_path / "new" / "deeper" / "x.kit"
    assert check_output_path(deep) == deep and not (tmp_path / "new").exists()
    assert check_output_path(specials["to_reg"]) == specials["to_reg"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["f.kit", "s.kit", "d.kit", "r.kit", "to_reg.kit", "to_dir.kit", "to_fifo.kit", "dangling.kit"]
    )
    with pytest.raises(KitError, match="exists and is a regular file, not a directory"):
        check_output_dir(specials["regular"], "--out")
    with pytest.raises(KitError, match="directory"):
        check_output_dir(tmp_path, "--out", ("d.kit",))


def test_writes_refuse_special_files_and_write_through_symlinks(specials) -> None:
    for kind in ("fifo", "socket", "dir", "to_dir", "to_fifo", "dangling"):
        with pytest.raises(KitError):
            write_artifact(specials[kind], Artifact(kind="coreset", meta={}))
    assert specials["fifo"].is_fifo() and specials["socket"].is_socket() and specials["dir"].is_dir()
    assert not list(specials["dir"].iterdir())
    # the documented symlink rule: the link stays, its regular-file target is replaced atomically
    write_artifact(specials["to_reg"], Artifact(kind="model", meta={"x": 1}))
    assert specials["to_reg"].is_symlink() and read_artifact(specials["regular"]).meta == {"x": 1}
    assert not [p for p in specials["regular"].parent.iterdir() if p.name.endswith(".tmp")]


# Readers never block ------------------------------------------------------------------------------
def test_readers_refuse_a_fifo_at_once(specials, tmp_path: Path) -> None:
    fifo = specials["fifo"]
    for read in (
        lambda: open_regular(fifo),
        lambda: read_regular_bytes(fifo),
        lambda: read_artifact(fifo),
        lambda: read_manifest(fifo),
        lambda: sha256_file(fifo),
        lambda: read_wav(fifo),
        lambda: load_audio(fifo, 16000),
        lambda: open_model(fifo, fmt="onnx"),
    ):
        with pytest.raises(KitError, match="is a FIFO, not a regular file"):
            read()
    folder_wav = tmp_path / "x.wav"
    folder_wav.mkdir()
    with pytest.raises(KitError, match="x.wav: is a directory"):  # not "no such audio file"
        read_wav(folder_wav)


def _kit(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "kit", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_kit_inspect_of_a_fifo_errors_instead_of_hanging(specials) -> None:
    result = _kit(["inspect", specials["fifo"].name], specials["fifo"].parent, timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == "error: f.kit: is a FIFO, not a regular file"


# Decompression bombs ------------------------------------------------------------------------------
def _bomb(path: Path, inflated: int, declared: int | None, header_size: int | None = None) -> Path:
    """A coreset-like artifact whose ``arrays/replay_q.npy`` inflates to ``inflated`` zero bytes.

    ``declared``: the size the manifest states (None: the true size and SHA-256, a "consistent"
    bomb). ``header_size``: patch the zip's central directory to claim this size instead.
    """
    digest = hashlib.sha256()
    zero = bytes(1 << 20)
    for _ in range(inflated >> 20):
        digest.update(zero)
    meta = {"what": "bomb"}
    manifest = {
        "format": "kit-artifact",
        "format_version": 1,
        "kind": "bundle",
        "created": "",
        "meta": meta,
        "meta_sha256": hashlib.sha256(json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()).hexdigest(),
        "members": {
            "arrays/replay_q.npy": {"size": inflated if declared is None else declared, "sha256": digest.hexdigest()}
        },
    }
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("manifest.json", json.dumps(manifest))
        with zf.open("arrays/replay_q.npy", "w") as member:
            for _ in range(inflated >> 20):
                member.write(zero)
    if header_size is not None:  # lie in the central directory (what zipfile trusts) about the size
        data = bytearray(path.read_bytes())
        at = data.rindex(b"PK\x01\x02")  # the last central-directory entry is the member's
        assert data[at + 46 : at + 46 + 19] == b"arrays/replay_q.npy"
        data[at + 24 : at + 28] = header_size.to_bytes(4, "little")
        path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(
    "declared, header_size, message",
    [
        (15104, None, "in the zip but 15104 in the manifest"),
        (None, None, "decompression bomb"),
    ],
)
def test_bombs_are_refused_before_inflating(tmp_path: Path, declared, header_size, message) -> None:
    bomb = _bomb(tmp_path / "bomb.kit", 256 << 20, declared, header_size)
    assert bomb.stat().st_size < 1 << 20
    with pytest.raises(KitError, match=message):
        read_artifact(bomb)


def test_kit_inspect_of_a_bomb_stays_small(tmp_path: Path) -> None:
    """The issue's case: a ~250 KB file inflating to 256 MB. ``kit inspect`` must refuse it in one
    line without inflating it (the old reader held the whole member in memory, 1.3 GB for 600 MB)."""
    bomb = _bomb(tmp_path / "bomb.kit", 256 << 20, 15104)
    code = (
        "import runpy, sys; sys.argv = ['kit', 'inspect', sys.argv[1]]\n"
        "try:\n    runpy.run_module('kit', run_name='__main__')\n"
        "finally:\n    hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
        "    print('peak_kb', hwm, file=sys.stderr)"
    )  # VmHWM: this image's peak; ru_maxrss counts the parent
    result = subprocess.run(
        [sys.executable, "-c", code, str(bomb)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and lines[0].startswith("error: ") and "Traceback" not in result.stderr, result.stderr
    rss_mb = int(lines[-1].split()[1]) / 1024
    assert rss_mb < 200, f"kit inspect peaked at {rss_mb:.0f} MB on a bomb"


def test_a_lying_header_is_cut_at_the_declared_size(tmp_path: Path) -> None:
    """Central directory and manifest both claim 15104 bytes; the stream inflates to 64 MB."""
    bomb = _bomb(tmp_path / "liar.kit", 64 << 20, 15104, header_size=15104)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(KitError, match="liar.kit"):
        read_artifact(bomb)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 32 * 1024  # KB: nowhere near 64 MB


def test_an_oversized_manifest_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.kit"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.json", b" " * (16 << 20))
    with pytest.raises(KitError, match="manifest.json declares"):
        read_manifest(path)


# Commands check every output before any work ------------------------------------------------------
def _one_line(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as info:
        kit_main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def small(data_dir: Path, tmp_path_factory) -> dict:
    """A tiny ConvNet on FSDD digits 0-3 (real recordings), its random 5-per-class coreset and a bundle."""
    ds = load_dataset("fsdd", data_dir)
    base = dataclasses.replace(ds, classes=list(BASE_DIGITS), clips=[c for c in ds.clips if c.label in BASE_DIGITS])
    fs = load_feature_set(base, data_dir, limit_per_class=12, progress=False)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("safety")
    config = TrainConfig(arch_kwargs={"width": 8}, max_samples=600, batch_size=16)
    model_path = train_and_save(out / "m.kit", fs.x_train, fs.y_train, fs, config, progress=False).path
    # the kit's own selection path: a random 5-per-class coreset with its provenance
    coreset = distill_coreset(fs, {"dataset": "fsdd"}, "random", 5, seed=0)[0].save(out / "c.kit")
    bundle = build_bundle(model_path, coreset, out / "b.kit", formats=("onnx",))
    clips = {d: sorted(c.path for c in ds.clips if c.label == d and c.split == "train")[:5] for d in ("8", "9")}
    return {"model": model_path, "coreset": coreset, "bundle": bundle, "clips": clips}


def test_every_command_refuses_bad_outputs_before_work(small, specials, tmp_path: Path, capsys) -> None:
    m, c, b = (str(small[k]) for k in ("model", "coreset", "bundle"))
    fifo, folder, sock = str(specials["fifo"]), str(specials["dir"]), str(specials["socket"])
    nine = [str(p) for p in small["clips"]["9"]]
    missing = str(tmp_path / "no-such-dataset")  # proves the output check runs before any loading
    snapshot = {p: p.read_bytes() for p in (small["model"], small["coreset"], small["bundle"])}
    cases = [
        (["distill", missing, "--method", "random", "--out", fifo], "is a FIFO"),
        (["distill", missing, "--method", "random", "--out", folder], "is a directory"),
        (["distill", missing, "--method", "random", "--out", sock], "is a socket"),
        (["distill", missing, "--method", "random", "--out", str(specials["to_dir"])], "symlink to a directory"),
        (["distill", missing, "--method", "random", "--out", "/proc/c.kit"], "cannot create files in /proc"),
        (
            ["distill", missing, "--method", "dm", "--out", str(tmp_path / "o.kit"), "--checkpoint", folder],
            "--checkpoint",
        ),
        (["train", c, "--out", c], "is also an input"),
        (["train", c, "--out", fifo], "not a directory"),
        (["export", m, "--out", folder], "is a directory"),
        (["export", m, "--out", m], "is also an input"),
        (["bundle", m, "--coreset", c, "--out", fifo], "is a FIFO"),
        (["bundle", m, "--coreset", c, "--out", c], "is also an input"),
        (["finetune", b, "--add-keyword", "nine", *nine, "--out", folder], "is a directory"),
        (["finetune", b, "--add-keyword", "nine", *nine, "--out", "/proc/b.kit"], "/proc"),
        (["deploy", b, "--target", "dir", "--to", "/proc/kws"], "/proc"),
        (["deploy", b, "--target", "dir", "--to", ""], "--to: empty path"),
        (["xarch", missing, "--out", fifo], "not a directory"),
        (["report", c, "--out", folder], "is a directory"),
    ]
    for argv, message in cases:
        err = _one_line(argv, capsys)
        assert message in err, (argv, err)
    # the distill sidecar: a directory where <out>.config.json goes
    (tmp_path / "o2.kit.config.json").mkdir()
    assert "o2.kit.config.json: exists and is a directory" in _one_line(
        ["distill", missing, "--method", "random", "--out", str(tmp_path / "o2.kit")], capsys
    )
    # a .bak that is a directory: refused before the bundle is even read
    work = tmp_path / "inplace.kit"
    work.write_bytes(small["bundle"].read_bytes())
    (tmp_path / "inplace.kit.bak").mkdir()
    err = _one_line(["finetune", str(work), "--add-keyword", "nine", *nine], capsys)
    assert "inplace.kit.bak: exists and is a directory" in err
    assert work.read_bytes() == small["bundle"].read_bytes()
    # nothing was created and nothing earlier changed
    assert not [p for p in ("o.kit", "o.kit.ckpt", "o2.kit") if (tmp_path / p).exists()]
    assert not list(specials["dir"].iterdir()) and specials["fifo"].is_fifo() and specials["socket"].is_socket()
    assert {p: p.read_bytes() for p in snapshot} == snapshot


# Concurrent writers -----------------------------------------------------------------------------
def _run_pair(first: list[str], second: list[str], cwd: Path) -> list[tuple[int, str]]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "kit", *argv],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for argv in (first, second)
    ]
    out = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=240)
        out.append((proc.returncode, stdout + stderr))
    return out


def test_two_concurrent_finetunes_of_one_bundle_keep_both_words(small, tmp_path: Path) -> None:
    """The issue's lost update: both keywords must land and ``.bak`` must be a true previous version."""
    eight, nine = ([str(p) for p in small["clips"][d]] for d in ("8", "9"))
    original = small["bundle"].read_bytes()
    for trial in range(3):
        work = tmp_path / f"same{trial}.kit"
        work.write_bytes(original)
        results = _run_pair(
            ["finetune", work.name, "--add-keyword", "eight", *eight, "--seed", str(trial)],
            ["finetune", work.name, "--add-keyword", "nine", *nine, "--seed", str(trial)],
            tmp_path,
        )
        assert [code for code, _ in results] == [0, 0], results
        final = Bundle.load(work)
        assert final.classes[: len(BASE_DIGITS)] == list(BASE_DIGITS)
        assert sorted(final.classes[len(BASE_DIGITS) :]) == ["eight", "nine"], final.classes
        backup = Bundle.load(work.with_name(work.name + ".bak"))
        # .bak is the bundle the second update started from: the original plus the first word only
        assert backup.classes == final.classes[:-1]
        assert np.array_equal(backup.replay_labels, final.replay_labels[: len(backup.replay_labels)])


def test_finetune_lock_keeps_bak_the_original_when_serialised_in_process(small, tmp_path: Path) -> None:
    """With the lock held elsewhere, the in-place writer waits; after one update ``.bak`` is the original bytes."""
    work = tmp_path / "one.kit"
    work.write_bytes(small["bundle"].read_bytes())
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with file_lock(work):
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kit",
                "finetune",
                str(work),
                "--add-keyword",
                "nine",
                *map(str, small["clips"]["9"]),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=8)  # blocked on the lock, long after startup and the fine-tune itself
        assert work.read_bytes() == small["bundle"].read_bytes()
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert (tmp_path / "one.kit.bak").read_bytes() == small["bundle"].read_bytes()
    assert Bundle.load(work).classes[-1] == "nine"


def test_two_concurrent_distills_to_one_out_write_coreset_and_record_as_a_unit(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "same.kit"
    common = [
        "distill",
        "fsdd",
        "--method",
        "random",
        "--ipc",
        "1",
        "--limit-per-class",
        "4",
        "--out",
        out.name,
        "--no-progress",
        "--data-dir",
        str(data_dir),
    ]
    results = _run_pair([*common, "--seed", "1"], [*common, "--seed", "2"], tmp_path)
    assert [code for code, _ in results] == [0, 0], results
    record = json.loads((tmp_path / "same.kit.config.json").read_text())
    assert record["coreset_sha256"] == sha256_file(out)
    assert Coreset.load(out).seed == record["seed"]
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_atomic_write_files_is_all_or_nothing_when_one_target_is_bad(tmp_path: Path) -> None:
    good, bad = tmp_path / "a.kit", tmp_path / "b"
    good.write_bytes(b"old")
    bad.mkdir()
    with pytest.raises(KitError):
        atomic_write_files({good: b"new", bad: b"x"})
    assert good.read_bytes() == b"old" and not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
