"""``kit deploy``: the deployed folder (dir, android, rpi), running it in a fresh venv with only its
own requirements, copying it over real ssh (a throwaway sshd on 127.0.0.1), and one-line errors.

The bundle is real: a small ConvNet trained briefly on real FSDD clips plus a random coreset,
built with ``deploy.bundle_builder.build_bundle`` (ONNX and TFLite, fp32 and int8).
"""

from __future__ import annotations

import dataclasses
import getpass
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from deploy.bundle_builder import build_bundle
from deploy.package import CONSTRAINTS, pinned_versions
from deploy.remote import RemoteSpec, copy_folder, parse_destination
from deploy.runtime.bundle import Bundle, BundleClassifier
from deploy.runtime.coreset import Coreset
from deploy.runtime.errors import KitError
from deploy.runtime.features import dct_matrix, extract_features, mel_filterbank
from deploy.runtime.stream import detect_stream
from deploy.runtime.wavio import read_wav
from distill import make_distiller
from kit.cli import app, main
from kit.features import load_feature_set
from kit.models import save_model
from kit.training import TrainConfig, train_model

REPO = Path(__file__).resolve().parents[1]
SSHD = Path("/usr/sbin/sshd")
BASE_FILES = {"README.md", "bundle.kit", "manifest.json", "requirements.txt", "run.sh", "verify.py"}
RUNTIME_FILES = {f"kit_runtime/{p.name}" for p in (REPO / "deploy" / "runtime").glob("*.py")}
# Scores of the deployed listener (fresh venv, same onnxruntime version) vs the in-process runtime:
# the same numpy front-end and model file, so they agree to float32 rounding.
PARITY_ATOL = 1e-4


# Fixtures -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fsdd(data_dir: Path):
    return load_feature_set("fsdd", data_dir, limit_per_class=20, progress=False)


@pytest.fixture(scope="module")
def bundle_path(fsdd, tmp_path_factory) -> Path:
    """A bundle with fp32 + int8 ONNX and TFLite models of a small ConvNet trained on real FSDD."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("bundle")
    # No augmentation and a high learning rate: confident within ~100 steps (85 % on the test split),
    # enough for whole-clip detections in the stream test.
    config = TrainConfig(arch_kwargs={"width": 32}, augment=False, lr=1e-2, batch_size=64, max_samples=6000, seed=0)
    model = train_model(fsdd.x_train, fsdd.y_train, 10, config, progress=False)
    model_path = save_model(
        out / "digits.kit",
        model,
        {
            "classes": fsdd.classes,
            "feature_config": fsdd.config,
            "normalizer": fsdd.normalizer,
            "source": fsdd.source,
            "seed": 0,
        },
    )
    selector = make_distiller("random", ipc=3, seed=0).fit(fsdd.x_train, fsdd.y_train, n_classes=10)
    coreset_path = Coreset(
        selector.features_, selector.labels_, fsdd.classes, fsdd.config, fsdd.normalizer, method="random", seed=0
    ).save(out / "coreset.kit")
    return build_bundle(model_path, coreset_path, out / "digits.bundle.kit", formats=("onnx", "tflite"), int8=True)


@pytest.fixture(scope="module")
def onnx_only_bundle(bundle_path: Path, tmp_path_factory) -> Path:
    """The same bundle without its TFLite models (what an ONNX-only ``kit bundle`` writes)."""
    bundle = Bundle.load(bundle_path)
    keep = {k: v for k, v in bundle.models.items() if k.endswith(".onnx")}
    slim = dataclasses.replace(
        bundle,
        models=keep,
        model_info={k: v for k, v in bundle.model_info.items() if k in keep},
        default_model="model.fp32.onnx",
    )
    return slim.save(tmp_path_factory.mktemp("onnx-only") / "digits-onnx.kit")


def _deploy(*args: str) -> str:
    result = CliRunner().invoke(app, ["deploy", *map(str, args)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def _one_line_error(capsys, args: list[str], *needles: str) -> str:
    with pytest.raises(SystemExit) as exc:
        main(["deploy", *map(str, args)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and "Traceback" not in err, err
    assert all(n in err for n in needles), err
    return err


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _check_folder(root: Path, extras: set[str]) -> dict:
    """Every expected file is there, nothing else, and each matches manifest.json."""
    manifest = json.loads((root / "manifest.json").read_text())
    present = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and ".venv" not in p.parts}
    assert present == BASE_FILES | RUNTIME_FILES | extras
    assert set(manifest["files"]) == present - {"manifest.json"}
    for name, info in manifest["files"].items():
        assert _sha256(root / name) == info["sha256"] and (root / name).stat().st_size == info["size"], name
    for name in RUNTIME_FILES:  # the runtime is a verbatim copy
        assert (root / name).read_bytes() == (REPO / "deploy" / "runtime" / Path(name).name).read_bytes()
    assert os.access(root / "run.sh", os.X_OK)
    assert manifest["format"] == "kit-deployment"
    return manifest


# The folder ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dir_deployment(bundle_path: Path, tmp_path_factory) -> Path:
    """``kit deploy --target dir`` of the bundle (read-only for the tests that share it)."""
    dest = tmp_path_factory.mktemp("dir") / "kws"
    out = _deploy(bundle_path, "--target", "dir", "--to", dest)
    assert f"to {dest}" in out and "via local" in out
    return dest


def test_dir_target_has_everything_and_checksums_match(bundle_path: Path, dir_deployment: Path, tmp_path: Path) -> None:
    manifest = _check_folder(dir_deployment, extras=set())
    source = Bundle.load(bundle_path)
    assert (
        dir_deployment / "bundle.kit"
    ).read_bytes() == bundle_path.read_bytes()  # its default model fits: copied verbatim
    assert manifest["model"] == source.default_model == "model.int8.onnx" and manifest["runtime"] == "onnx"
    pins = pinned_versions(CONSTRAINTS)
    lines = [
        line
        for line in (dir_deployment / "requirements.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert lines == [
        f"numpy=={pins['numpy']}",
        f"onnxruntime=={pins['onnxruntime']}",
        f"sounddevice=={pins['sounddevice']}",
    ]
    assert sorted(p.name for p in dir_deployment.parent.iterdir()) == ["kws"], "no staging folder left behind"
    # the shipped verify.py passes, and catches a changed runtime file, naming it (on a copy)
    ok = subprocess.run([sys.executable, "verify.py"], cwd=dir_deployment, capture_output=True, text=True)
    assert ok.returncode == 0 and f"{len(manifest['files'])} files match" in ok.stdout
    copy = shutil.copytree(dir_deployment, tmp_path / "copy", symlinks=True)
    with open(copy / "kit_runtime" / "features.py", "a") as handle:
        handle.write("# edited\n")
    bad = subprocess.run(["./run.sh", "--verify"], cwd=copy, capture_output=True, text=True)
    assert bad.returncode == 2 and "kit_runtime/features.py: does not match its checksum" in bad.stderr


def test_runtime_option_picks_the_model_and_requirements(bundle_path: Path, tmp_path: Path) -> None:
    dest = tmp_path / "kws-tflite"
    _deploy(bundle_path, "--target", "dir", "--to", dest, "--runtime", "tflite")
    manifest = _check_folder(dest, extras=set())
    deployed = Bundle.load(dest / "bundle.kit")
    assert manifest["model"] == deployed.default_model == "model.int8.tflite" and manifest["runtime"] == "tflite"
    assert deployed.models == Bundle.load(bundle_path).models  # only the default changed
    pins = pinned_versions(CONSTRAINTS)
    assert f"ai-edge-litert=={pins['ai-edge-litert']}" in (dest / "requirements.txt").read_text()
    assert "onnxruntime" not in (dest / "requirements.txt").read_text()


def test_android_target_frontend_json_is_sufficient(bundle_path: Path, tmp_path: Path) -> None:
    from ai_edge_litert.interpreter import Interpreter

    dest = tmp_path / "phone"
    _deploy(bundle_path, "--target", "android", "--to", dest)
    manifest = _check_folder(dest, extras={"model.tflite", "frontend.json", "labels.txt"})
    bundle = Bundle.load(bundle_path)
    config = bundle.feature_config
    assert (dest / "model.tflite").read_bytes() == bundle.models["model.int8.tflite"] and manifest[
        "runtime"
    ] == "tflite"
    assert (dest / "labels.txt").read_text().splitlines() == bundle.classes
    assert "ai-edge-litert==" in (dest / "requirements.txt").read_text()

    fe = json.loads((dest / "frontend.json").read_text())
    assert fe["feature_config"] == config.to_dict() and fe["kind"] == config.kind == "fd_mfcc"
    assert fe["audio"]["sample_rate"] == config.sample_rate == 8000
    assert fe["audio"]["clip_samples"] == config.n_samples == round(config.sample_rate * config.duration_s)
    framing = fe["framing"]
    assert framing["win_length"] == config.win_length == round(config.sample_rate * config.window_ms / 1000)
    assert framing["hop_length"] == config.hop_length == round(config.sample_rate * config.hop_ms / 1000)
    assert framing["n_fft"] == config.n_fft >= framing["win_length"] and framing["n_frames"] == config.n_frames
    assert framing["pad_left"] == config.n_fft // 2
    window = np.asarray(framing["window_values"])
    assert window.shape == (config.n_fft,) and window.max() <= 1.0 and np.count_nonzero(window) == config.win_length - 1
    mel = fe["mel"]
    assert (mel["n_mels"], mel["fmin"], mel["fmax"]) == (config.n_mels, config.fmin, config.upper_hz)
    assert np.allclose(
        mel["filterbank_values"],
        mel_filterbank(config.sample_rate, config.n_fft, config.n_mels, config.fmin, config.upper_hz),
        atol=1e-9,
    )
    assert fe["mfcc"]["n_mfcc"] == config.n_mfcc and np.allclose(
        fe["mfcc"]["dct_values"], dct_matrix(config.n_mfcc, config.n_mels)
    )
    assert fe["deltas"]["width"] == config.delta_width and fe["channels"] == ["mfcc", "delta", "delta-delta"]
    assert np.allclose(fe["normalizer"]["mean"], bundle.normalizer.mean, atol=1e-6)
    assert np.allclose(fe["normalizer"]["std"], bundle.normalizer.std, atol=1e-6)
    assert fe["input_shape"] == list(config.shape) and fe["model"]["input"]["shape"][1:] == list(config.shape)
    assert fe["detector"] == bundle.detector.to_dict() and fe["classifier"]["labels"] == bundle.classes
    assert np.allclose(fe["classifier"]["weight"], bundle.head_weight, atol=1e-7)

    # The test vector's features are the runtime front-end's on the formula signal.
    t = np.arange(config.n_samples) / config.sample_rate
    signal = (0.5 * np.sin(2 * np.pi * 440 * t) + 0.25 * np.sin(2 * np.pi * 1250 * t)).astype(np.float32)
    expected = bundle.normalizer.transform(extract_features(signal, config)[None])[0]
    assert np.abs(np.asarray(fe["test_vector"]["features"]) - expected).max() < 1e-4

    # Using nothing but frontend.json and model.tflite (as an app would): quantise the test vector,
    # run the interpreter, dequantise, apply the head, softmax -> the recorded probabilities.
    model = fe["model"]
    interpreter = Interpreter(model_path=str(dest / "model.tflite"))
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    q = model["input"]["quantization"]
    assert model["input"]["dtype"] == "int8" and q["scale"] > 0
    x = np.asarray(fe["test_vector"]["features"], dtype=np.float64)[None]
    interpreter.set_tensor(inp["index"], np.clip(np.round(x / q["scale"]) + q["zero_point"], -128, 127).astype(np.int8))
    interpreter.invoke()
    details = interpreter.get_output_details()
    (emb_out,) = [o for o in model["outputs"] if o["role"] == "embedding"]
    raw = interpreter.get_tensor(details[emb_out["index"]]["index"]).astype(np.float64)
    embedding = (raw - emb_out["quantization"]["zero_point"]) * emb_out["quantization"]["scale"]
    logits = embedding @ np.asarray(fe["classifier"]["weight"]).T + np.asarray(fe["classifier"]["bias"])
    probabilities = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    assert np.abs(probabilities[0] - np.asarray(fe["test_vector"]["probabilities"])).max() < 1e-3
    assert {o["role"] for o in model["outputs"]} == {"logits", "embedding"}


def test_rpi_target_locally_has_systemd_unit(bundle_path: Path, tmp_path: Path) -> None:
    dest = tmp_path / "sdcard" / "kws"
    _deploy(bundle_path, "--target", "rpi", "--to", dest, "--service-user", "pi")
    _check_folder(dest, extras={"kit-kws.service"})
    unit = (dest / "kit-kws.service").read_text()
    for line in (
        "User=pi",
        f"WorkingDirectory={dest}",
        f"ExecStart={dest}/run.sh --input mic",
        "Restart=on-failure",
        "WantedBy=multi-user.target",
    ):
        assert line in unit.splitlines(), line
    assert "systemctl enable --now kit-kws" in (dest / "README.md").read_text()


# Running the folder in a fresh venv ----------------------------------------------------------------
def _clean_env(**extra: str) -> dict[str, str]:
    """No PYTHONPATH, no virtualenv of the kit on PATH: only the system's python3."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8", **extra}


@pytest.fixture(scope="session")
def device_venv(tmp_path_factory) -> Path:
    """Where ``./run.sh --setup`` builds the device venv; built once per test session."""
    return tmp_path_factory.mktemp("device") / "venv"


def _padded_clip(path: Path, out: Path, pad_s: float = 0.5) -> np.ndarray:
    """A real FSDD clip with ``pad_s`` of digital silence each side, as 16-bit PCM (what a mic gives)."""
    y, rate = read_wav(path)
    pad = np.zeros(int(pad_s * rate), np.float32)
    stream = np.concatenate([pad, y, pad])
    sf.write(out, stream, rate, subtype="PCM_16")
    return read_wav(out)[0]


def test_deployed_folder_runs_in_a_fresh_venv_with_only_its_requirements(
    bundle_path: Path, dir_deployment: Path, device_venv: Path, data_dir: Path, tmp_path: Path
) -> None:
    dest = dir_deployment
    env = _clean_env(KIT_VENV=str(device_venv))
    setup = subprocess.run(["./run.sh", "--setup"], cwd=dest, env=env, capture_output=True, text=True, timeout=600)
    assert setup.returncode == 0, setup.stderr[-2000:]
    python = device_venv / "bin" / "python"
    frozen = subprocess.run(
        [str(python), "-m", "pip", "freeze"], env=env, capture_output=True, text=True
    ).stdout.lower()
    assert "onnxruntime==" in frozen and "numpy==" in frozen and "sounddevice==" in frozen
    assert not any(name in frozen for name in ("torch", "audio-distill-kit", "librosa", "typer", "rich"))
    # The import path the listener gets (run.sh: PYTHONPATH = the folder only, clean environment).
    probe = subprocess.run(
        [
            str(python),
            "-c",
            "import sys, importlib.util as u, kit_runtime; print(sys.path); "
            "print(kit_runtime.__file__); print(u.find_spec('deploy'), u.find_spec('kit'))",
        ],
        cwd=dest,
        env={**env, "PYTHONPATH": str(dest)},
        capture_output=True,
        text=True,
    )
    assert probe.returncode == 0, probe.stderr
    assert str(REPO) not in probe.stdout and probe.stdout.splitlines()[1].startswith(str(dest / "kit_runtime"))
    assert probe.stdout.splitlines()[2] == "None None"

    # Real clips: pick (in process, with the kit) official-test clips of two digits the model
    # detects correctly; the deployed folder must report the same detections, times and scores.
    bundle = Bundle.load(bundle_path)
    classifier = BundleClassifier(bundle)
    recordings = sorted((data_dir / "fsdd" / "recordings").glob("*_*_[0-4].wav"))
    chosen: list[tuple[Path, str, list]] = []
    for path in recordings[:: max(1, len(recordings) // 40)]:
        clip = tmp_path / f"stream_{path.name}"
        y = _padded_clip(path, clip)
        expected = detect_stream(classifier, y, bundle.feature_config.sample_rate, bundle.detector)
        digit = path.name.split("_")[0]
        if [d.label for d in expected] == [digit] and all(digit != c[1] for c in chosen):
            chosen.append((clip, digit, expected))
        if len(chosen) == 2:
            break
    assert len(chosen) == 2, "the model detected fewer than 2 digits of the sampled test clips correctly in process"

    (clip, digit, expected), (clip2, digit2, expected2) = chosen
    run = subprocess.run(
        ["./run.sh", "--input", str(clip), "--json"], cwd=dest, env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    events = [json.loads(line) for line in run.stdout.splitlines()]
    assert events[0]["event"] == "start" and events[0]["model"] == bundle.default_model
    found = [e for e in events if e["event"] == "detection"]
    assert [e["label"] for e in found] == [digit], (clip.name, found)
    assert abs(found[0]["time_s"] - expected[0].time_s) < 1e-6
    assert abs(found[0]["score"] - expected[0].score) < PARITY_ATOL
    # The plain text a user sees ("t=0.90s 3 0.97"), with the module run directly from the folder.
    text = subprocess.run(
        [str(python), "-m", "kit_runtime", "listen", "bundle.kit", "--input", str(clip2)],
        cwd=dest,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert text.returncode == 0, text.stderr
    when, label, score = text.stdout.split()
    assert (
        label == digit2 and when == f"t={expected2[0].time_s:.2f}s" and abs(float(score) - expected2[0].score) < 0.006
    )


# Over ssh -----------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """A throwaway OpenSSH server on 127.0.0.1 accepting one client key (CI installs openssh-server)."""
    if not SSHD.exists():
        pytest.fail(f"{SSHD} not found: install openssh-server and rsync (apt-get install -y openssh-server rsync)")
    if shutil.which("ssh-keygen") is None or shutil.which("ssh") is None:
        pytest.fail("ssh / ssh-keygen not found: install openssh-client")
    root = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "client_key", "wrong_key", "no_rsync_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / name)], check=True)
    # A login with no rsync on its PATH (a device without rsync): only the tools a deploy needs.
    bin_dir = root / "bin-without-rsync"
    bin_dir.mkdir()
    for tool in ("sh", "id", "dirname", "mkdir", "ls", "grep", "sha256sum", "mv", "rm", "cat"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    (root / "authorized_keys").write_text(
        (root / "client_key.pub").read_text()
        + f'environment="PATH={bin_dir}" '
        + (root / "no_rsync_key.pub").read_text()
    )
    port = _free_port()
    config = root / "sshd_config"
    config.write_text(
        f"ListenAddress 127.0.0.1\nHostKey {root / 'host_key'}\nAuthorizedKeysFile {root / 'authorized_keys'}\n"
        f"PidFile {root / 'sshd.pid'}\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin "
        "prohibit-password\nPermitUserEnvironment yes\n"
        "Subsystem sftp internal-sftp\nLogLevel ERROR\n"
    )
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
    log = open(root / "sshd.log", "w")
    process = subprocess.Popen(
        [str(SSHD), "-D", "-e", "-f", str(config), "-p", str(port)], stdout=log, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(
                    f"sshd could not be started on port {port}: {(root / 'sshd.log').read_text().strip()[-500:]}"
                )
            time.sleep(0.1)
    known_hosts = root / "known_hosts"
    yield {
        "port": port,
        "key": root / "client_key",
        "wrong_key": root / "wrong_key",
        "no_rsync_key": root / "no_rsync_key",
        "user": getpass.getuser(),
        "known_hosts": known_hosts,
        "options": [
            "--ssh-option",
            "StrictHostKeyChecking=accept-new",
            "--ssh-option",
            f"UserKnownHostsFile={known_hosts}",
        ],
    }
    process.terminate()
    process.wait(timeout=10)
    log.close()


def _ssh(sshd: dict, command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            "ssh",
            "-p",
            str(sshd["port"]),
            "-i",
            str(sshd["key"]),
            "-o",
            "BatchMode=yes",
            "-o",
            f"UserKnownHostsFile={sshd['known_hosts']}",
            f"{sshd['user']}@127.0.0.1",
            command,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_deploy_over_ssh_to_a_real_sshd(
    bundle_path: Path, dir_deployment: Path, sshd: dict, tmp_path: Path, capsys
) -> None:
    remote = tmp_path / "pi-home" / "kws"  # the "remote" host is this machine, so its folder can be checked directly
    login = f"{sshd['user']}@127.0.0.1"
    common = ["--port", sshd["port"], "--identity", sshd["key"], *sshd["options"]]
    out = _deploy(bundle_path, "--target", "rpi", "--to", f"{login}:{remote}", *common)
    assert "via rsync" in out and f"{login}:{remote}" in out
    manifest = _check_folder(remote, extras={"kit-kws.service"})
    assert manifest["install_dir"] == str(remote) and manifest["service_user"] == sshd["user"]
    unit = (remote / "kit-kws.service").read_text().splitlines()
    for line in (
        f"User={sshd['user']}",
        f"WorkingDirectory={remote}",
        f"ExecStart={remote}/run.sh --input mic",
        "Restart=on-failure",
    ):
        assert line in unit, line
    check = _ssh(sshd, f"cd {remote} && python3 verify.py")
    assert check.returncode == 0 and "files match manifest.json" in check.stdout, check.stderr

    # A re-deploy (scp this time) replaces the folder atomically and keeps the device's .venv.
    (remote / ".venv").mkdir()
    (remote / ".venv" / "marker").write_text("installed packages")
    out = _deploy(bundle_path, "--target", "dir", "--to", f"{login}:{remote}", "--transfer", "scp", *common)
    assert "via scp" in out
    _check_folder(remote, extras=set())  # the rpi unit is gone: it is a dir deployment now
    assert (remote / ".venv" / "marker").read_text() == "installed packages"
    assert sorted(p.name for p in remote.parent.iterdir()) == ["kws"], "no staging or old folder left behind"

    # A folder that is not a kit deployment is never overwritten.
    photos = tmp_path / "pi-home" / "photos"
    photos.mkdir()
    (photos / "cat.jpg").write_bytes(b"\xff\xd8 not a deployment")
    _one_line_error(
        capsys, [bundle_path, "--target", "dir", "--to", f"{login}:{photos}", *common], "not a kit deployment"
    )
    assert sorted(p.name for p in photos.iterdir()) == ["cat.jpg"]

    # A copy that arrives different from its manifest never replaces the deployment.
    files = dict(json.loads((dir_deployment / "manifest.json").read_text())["files"])
    files["bundle.kit"] = {**files["bundle.kit"], "sha256": "0" * 64}
    spec = RemoteSpec(
        host="127.0.0.1",
        path=str(remote),
        user=sshd["user"],
        port=sshd["port"],
        identity=sshd["key"],
        ssh_options=("StrictHostKeyChecking=accept-new", f"UserKnownHostsFile={sshd['known_hosts']}"),
    )
    with pytest.raises(KitError, match="the copied folder fails its checksums \\(bundle.kit\\)"):
        copy_folder(dir_deployment, spec, files)
    assert (
        sorted(p.name for p in remote.parent.iterdir()) == ["kws", "photos"] and (remote / ".venv" / "marker").exists()
    )
    _check_folder(remote, extras=set())  # untouched

    # A host without rsync: auto falls back to scp; insisting on rsync is a one-line error.
    no_rsync = ["--port", sshd["port"], "--identity", sshd["no_rsync_key"], *sshd["options"]]
    _one_line_error(
        capsys,
        [bundle_path, "--target", "dir", "--to", f"{login}:{remote}", "--transfer", "rsync", *no_rsync],
        "rsync is missing on the remote host",
    )
    assert "via scp" in _deploy(bundle_path, "--target", "dir", "--to", f"{login}:{remote}", *no_rsync)
    _check_folder(remote, extras=set())

    # Wrong key and an unknown host key: one line each, saying what to do.
    _one_line_error(
        capsys,
        [
            bundle_path,
            "--target",
            "dir",
            "--to",
            f"{login}:{remote}",
            "--port",
            sshd["port"],
            "--identity",
            sshd["wrong_key"],
            *sshd["options"],
        ],
        "authentication failed",
        str(sshd["wrong_key"]),
    )
    _one_line_error(
        capsys,
        [
            bundle_path,
            "--target",
            "dir",
            "--to",
            f"{login}:{remote}",
            "--port",
            sshd["port"],
            "--identity",
            sshd["key"],
            "--ssh-option",
            f"UserKnownHostsFile={tmp_path / 'empty_known_hosts'}",
            "--ssh-option",
            "StrictHostKeyChecking=yes",
        ],
        "host key not trusted",
        "StrictHostKeyChecking=accept-new",
    )


# Errors ---------------------------------------------------------------------------------------------
def test_errors_are_one_line(bundle_path: Path, onnx_only_bundle: Path, tmp_path: Path, capsys) -> None:
    _one_line_error(capsys, [bundle_path, "--target", "toaster", "--to", tmp_path / "a"], "--target", "toaster")
    _one_line_error(
        capsys, [bundle_path, "--target", "dir", "--to", tmp_path / "a", "--runtime", "tensorrt"], "--runtime"
    )
    _one_line_error(
        capsys,
        [onnx_only_bundle, "--target", "android", "--to", tmp_path / "phone"],
        str(onnx_only_bundle),
        "has no TFLite model",
    )
    _one_line_error(
        capsys,
        [onnx_only_bundle, "--target", "dir", "--to", tmp_path / "b", "--runtime", "tflite"],
        "has no tflite model",
    )
    assert not (tmp_path / "phone").exists() and not (tmp_path / "b").exists()
    # closed port: nothing listens there
    _one_line_error(
        capsys,
        [
            bundle_path,
            "--target",
            "rpi",
            "--to",
            "pi@127.0.0.1:/home/pi/kws",
            "--port",
            _free_port(),
            "--ssh-option",
            "StrictHostKeyChecking=accept-new",
        ],
        "host unreachable",
        "Connection refused",
    )
    # a bundle that fails verification: one byte changed inside a member
    tampered = tmp_path / "tampered.kit"
    data = bytearray(bundle_path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tampered.write_bytes(bytes(data))
    _one_line_error(capsys, [tampered, "--target", "dir", "--to", tmp_path / "c"], str(tampered))
    truncated = tmp_path / "truncated.kit"
    truncated.write_bytes(bundle_path.read_bytes()[:5000])
    _one_line_error(capsys, [truncated, "--target", "dir", "--to", tmp_path / "c"], str(truncated))
    assert not (tmp_path / "c").exists() and not list(tmp_path.glob(".c.deploy-*"))
    _one_line_error(
        capsys, [tmp_path / "missing.kit", "--target", "dir", "--to", tmp_path / "d"], "missing.kit", "no such bundle"
    )
    # a local folder that is not a deployment, and a file in the way
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    _one_line_error(capsys, [bundle_path, "--target", "dir", "--to", mine], "not a kit deployment")
    assert (mine / "thesis.tex").read_text() == "precious"
    (tmp_path / "file").write_text("x")
    _one_line_error(capsys, [bundle_path, "--target", "dir", "--to", tmp_path / "file"], "not a folder")
    _one_line_error(
        capsys,
        [bundle_path, "--target", "dir", "--to", tmp_path / "e", "--identity", tmp_path / "nokey"],
        "--identity",
        "user@host",
    )
    _one_line_error(
        capsys,
        [bundle_path, "--target", "dir", "--to", "pi@host:/x", "--identity", tmp_path / "nokey"],
        "no such key file",
    )


def test_destination_parsing() -> None:
    assert parse_destination("pi@raspberrypi.local:kws") == ("pi", "raspberrypi.local", "kws")
    assert parse_destination("raspberrypi:/opt/kws") == (None, "raspberrypi", "/opt/kws")
    assert parse_destination("/tmp/a:b") == (None, None, "/tmp/a:b")  # a slash before the colon: local
    assert parse_destination("./x:y") == (None, None, "./x:y")
    assert parse_destination("out/kws") == (None, None, "out/kws")
