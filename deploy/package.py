"""``kit deploy``: turn a bundle into a self-contained folder for a Raspberry Pi, a phone or a disk.

Why a folder and not a wheel: the device gets exactly what it runs (the numpy-only runtime copied
as ``kit_runtime/``, the verified bundle, pinned requirements, a ``run.sh``), can be inspected and
checked with ``verify.py`` against ``manifest.json``, and needs neither the kit nor a package
index beyond its three requirements. Layout (see the shared contracts)::

    <dest>/kit_runtime/        copy of deploy/runtime/*.py (relative imports, so it works renamed)
    <dest>/bundle.kit          the bundle, verified with Bundle.load
    <dest>/requirements.txt    numpy + onnxruntime or ai-edge-litert + sounddevice, pinned
    <dest>/run.sh              ./run.sh [--setup] ARGS -> python3 -m kit_runtime listen bundle.kit ARGS
    <dest>/README.md           device instructions
    <dest>/verify.py           stdlib-only check of every file against manifest.json
    <dest>/manifest.json       format "kit-deployment", target, runtime, SHA-256 of every file
    rpi:     kit-kws.service   systemd unit (User, WorkingDirectory, ExecStart run.sh --input mic)
    android: model.tflite, frontend.json, labels.txt

The folder is always built in a temporary place and renamed into position (locally or on the
remote host, see ``deploy.remote``), so a failed deploy never leaves half a folder, and an
existing folder is replaced only when it is a kit deployment itself.
"""

from __future__ import annotations

import dataclasses
import getpass
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import numpy as np

from deploy.remote import DEPLOYMENT_FORMAT, RemoteSpec, copy_folder, parse_destination, probe, ssh_session
from deploy.runtime.artifact import atomic_write_bytes, sha256_bytes
from deploy.runtime.bundle import Bundle, BundleClassifier, model_format, model_precision
from deploy.runtime.errors import KitError
from deploy.runtime.features import FeatureConfig, dct_matrix, extract_features, hann_window, mel_filterbank
from deploy.runtime.safeio import check_output_dir, require_regular_file
from deploy.runtime.tflite_model import kit_props
from kit import __version__

TARGETS = ("rpi", "android", "dir")
RUNTIMES = ("onnx", "tflite")
DEPLOYMENT_VERSION = 1
FRONTEND_FORMAT = "kit-frontend"
FRONTEND_VERSION = 1

PACKAGE_DIR = Path(__file__).resolve().parent
RUNTIME_DIR = PACKAGE_DIR / "runtime"
TEMPLATES = PACKAGE_DIR / "templates"
CONSTRAINTS = PACKAGE_DIR.parent / "requirements" / "constraints.txt"
RUNTIME_PACKAGE = "kit_runtime"
SERVICE_NAME = "kit-kws.service"

#: pip distribution per runtime; numpy and sounddevice are always needed (sounddevice for ``--input mic``)
RUNTIME_REQUIREMENT = {"onnx": "onnxruntime", "tflite": "ai-edge-litert"}
BASE_REQUIREMENTS = ("numpy", "sounddevice")

# The signal of frontend.json's test vector: two tones, generated from the formula on any platform.
TEST_SIGNAL = "0.5*sin(2*pi*440*t) + 0.25*sin(2*pi*1250*t), t = n / sample_rate, n = 0 .. clip_samples-1"


@dataclass
class DeployResult:
    """What ``deploy`` did: where the folder is, how it got there and what it holds."""

    destination: str  # local absolute path or user@host:/abs/path
    target: str
    runtime: str
    model: str
    method: str  # "local", "rsync" or "scp"
    manifest: dict

    @property
    def total_bytes(self) -> int:
        return sum(info["size"] for info in self.manifest["files"].values())


# Choosing the model and its runtime -------------------------------------------------------------
def _prefer_int8(names: list[str]) -> str:
    """Edge devices want the smaller, faster integer model when the bundle has one."""
    return sorted(names, key=lambda n: (model_precision(n) != "int8", n))[0]


def choose_model(bundle: Bundle, bundle_path: Path, target: str, runtime: str | None) -> tuple[str, str]:
    """(model file name in the bundle, runtime) for this target and ``--runtime``.

    The bundle's default model wins when it fits; android always needs a TFLite model (the app
    loads ``model.tflite``) and takes the int8 one when there is one.
    """
    names = list(bundle.models)
    if target == "android":
        if runtime not in (None, "tflite"):
            raise KitError(
                f"--runtime {runtime}: the android target ships model.tflite, use --runtime tflite "
                "(or --target rpi|dir)"
            )
        tflite = [n for n in names if model_format(n) == "tflite"]
        if not tflite:
            raise KitError(
                f"{bundle_path}: has no TFLite model (it holds {', '.join(names)}); "
                "rebuild it with `kit bundle ... --format tflite` for --target android"
            )
        return _prefer_int8(tflite), "tflite"
    if runtime is None:
        return bundle.default_model, model_format(bundle.default_model)
    if runtime not in RUNTIMES:
        raise KitError(f"--runtime: '{runtime}' is not one of {', '.join(RUNTIMES)}")
    if model_format(bundle.default_model) == runtime:
        return bundle.default_model, runtime
    matching = [n for n in names if model_format(n) == runtime]
    if not matching:
        raise KitError(
            f"{bundle_path}: has no {runtime} model (it holds {', '.join(names)}); "
            f"rebuild it with `kit bundle ... --format {runtime}` or drop --runtime"
        )
    return _prefer_int8(matching), runtime


# requirements.txt ---------------------------------------------------------------------------------
def _canonical_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned_versions(constraints: Path = CONSTRAINTS) -> dict[str, str]:
    """``name -> version`` from the kit's constraints file (the versions CI tests with)."""
    pins: dict[str, str] = {}
    if constraints.is_file():
        for line in constraints.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if "==" in line:
                name, version = line.split("==", 1)
                pins[_canonical_name(name.strip())] = version.strip()
    return pins


def requirement_lines(runtime: str, constraints: Path = CONSTRAINTS) -> list[str]:
    """Pinned requirements for the device: the constraints file, else the installed version."""
    pins = pinned_versions(constraints)
    lines = []
    for name in (BASE_REQUIREMENTS[0], RUNTIME_REQUIREMENT[runtime], *BASE_REQUIREMENTS[1:]):
        version = pins.get(_canonical_name(name))
        if version is None:
            try:
                version = metadata.version(name)
            except metadata.PackageNotFoundError:
                version = None
        lines.append(f"{name}=={version}" if version else name)
    return lines


# frontend.json (android) --------------------------------------------------------------------------
def _rounded(array: np.ndarray, digits: int = 7) -> list:
    return np.round(np.asarray(array, dtype=np.float64), digits).tolist()


LAYOUT_TEXT = {
    "NCHW": "NCHW = (batch, channel, coefficient, frame)",
    "NHWC": "NHWC = (batch, coefficient, frame, channel)",
}


def _tflite_io(model_bytes: bytes, roles: dict[str, np.ndarray], probe_x: np.ndarray) -> dict:
    """Input/output tensors of the .tflite file with quantisation, outputs named by role.

    Roles are assigned by running the interpreter on ``probe_x`` and matching each output with the
    runtime's ``logits`` / ``embedding``, so the description cannot disagree with the model.
    """
    try:
        from ai_edge_litert.interpreter import Interpreter  # lazy: optional, guarded by try
    except ImportError:
        raise KitError(
            "ai-edge-litert is not installed on this machine; it is needed to describe model.tflite "
            "(pip install ai-edge-litert)"
        ) from None
    interpreter = Interpreter(model_content=model_bytes)
    interpreter.allocate_tensors()
    (inp,) = interpreter.get_input_details()

    def quant(detail: dict) -> dict | None:
        scale, zero = detail.get("quantization", (0.0, 0))
        return {"scale": float(scale), "zero_point": int(zero)} if scale else None

    layout = kit_props(model_bytes, "model.tflite").get("kit.layout", "NCHW")
    x = probe_x[None].astype(np.float32)
    if layout == "NHWC":  # MCU-ready exports take (batch, coefficient, frame, channel)
        x = x.transpose(0, 2, 3, 1)
    q_in = quant(inp)
    if q_in:
        x = np.clip(np.round(x / q_in["scale"]) + q_in["zero_point"], -128, 127)
    interpreter.resize_tensor_input(inp["index"], list(x.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], x.astype(inp["dtype"]))
    interpreter.invoke()
    outputs = []
    for detail in interpreter.get_output_details():
        value = interpreter.get_tensor(detail["index"]).astype(np.float64)
        q = quant(detail)
        if q:
            value = (value - q["zero_point"]) * q["scale"]
        role = min(
            roles, key=lambda r: np.inf if roles[r].shape != value.shape else float(np.abs(roles[r] - value).max())
        )
        outputs.append(
            {
                "name": detail["name"],
                "index": len(outputs),
                "role": role,
                "shape": [int(v) for v in detail["shape"]],
                "dtype": np.dtype(detail["dtype"]).name,
                "quantization": q,
            }
        )
    return {
        "input": {
            "name": inp["name"],
            "shape": [int(v) for v in inp["shape"]],
            "layout": LAYOUT_TEXT[layout],
            "dtype": np.dtype(inp["dtype"]).name,
            "quantization": q_in,
        },
        "outputs": outputs,
    }


def frontend_description(bundle: Bundle, model_name: str, classifier: BundleClassifier) -> dict:
    """Everything an app needs to turn audio into the model's input and its outputs into labels.

    Prose says what the numpy front-end (``deploy/runtime/features.py``) does; the tables (Hann
    window, mel filter matrix, DCT matrix, normaliser) are the exact numbers it uses, and the test
    vector lets a port check itself end to end.
    """
    config: FeatureConfig = bundle.feature_config
    n = np.arange(config.n_samples)
    t = n / config.sample_rate
    signal = 0.5 * np.sin(2 * np.pi * 440 * t) + 0.25 * np.sin(2 * np.pi * 1250 * t)
    raw = extract_features(signal.astype(np.float32), config)
    x = classifier.features(signal.astype(np.float32), config.sample_rate)
    embedding = classifier.embed(x[None])
    logits = classifier.logits(x[None])[0]
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    run = classifier.model.run(x[None])
    io = _tflite_io(bundle.models[model_name], {k: run[k] for k in ("logits", "embedding") if k in run}, x)

    hop, win, n_fft = config.hop_length, config.win_length, config.n_fft
    window = hann_window(win, n_fft)  # the front-end's own table, not a re-derivation
    channels = {
        "fd_mfcc": ["mfcc", "delta", "delta-delta"],
        "mfcc": ["mfcc"],
        "log_mel": ["log_mel"],
        "lpcc": ["lpcc"],
    }[config.kind]
    description: dict[str, Any] = {
        "format": FRONTEND_FORMAT,
        "format_version": FRONTEND_VERSION,
        "feature_config": config.to_dict(),
        "fingerprint": config.fingerprint(),
        "kind": config.kind,
        "audio": {
            "sample_rate": config.sample_rate,
            "channels": 1,
            "samples": "float in [-1, 1) (int16 / 32768); multi-channel audio is averaged",
            "resample": "other rates are resampled to sample_rate (band-limited, FFT based)",
            "clip_samples": config.n_samples,
            "fit_length": "a longer clip is cropped to its loudest clip_samples window (largest sum of squares); "
            "a shorter one is centre-padded with zeros ((clip_samples - n) // 2 on the left)",
        },
        "framing": {
            "win_length": win,
            "hop_length": hop,
            "n_fft": n_fft,
            "n_frames": config.n_frames,
            "pad_left": n_fft // 2,
            "frame": "frame t = padded[t*hop : t*hop + n_fft] * window, padded = pad_left zeros + clip + zeros",
            "window": (
                "periodic Hann of win_length samples, centred in n_fft ((n_fft - win_length) // 2 zeros on the left)"
            ),
            "window_values": _rounded(window, 9),
        },
        "spectrum": {"kind": "power", "formula": "|rfft(frame, n_fft)|^2", "n_bins": n_fft // 2 + 1},
        "channels": channels,
        "input_shape": list(config.shape),
    }
    if config.kind in ("fd_mfcc", "mfcc", "log_mel"):
        description["mel"] = {
            "n_mels": config.n_mels,
            "fmin": config.fmin,
            "fmax": config.upper_hz,
            "scale": "slaney",
            "htk": False,
            "norm": "slaney (each triangle scaled by 2 / (f_upper - f_lower))",
            "log": "10 * log10(max(mel_power, floor))",
            "floor": 1e-10,
            "filterbank": "(n_mels, n_fft // 2 + 1) matrix below; mel_power = filterbank @ power",
            "filterbank_values": _rounded(
                mel_filterbank(config.sample_rate, n_fft, config.n_mels, config.fmin, config.upper_hz), 10
            ),
        }
    if config.kind in ("fd_mfcc", "mfcc"):
        description["mfcc"] = {
            "n_mfcc": config.n_mfcc,
            "dct": "orthonormal DCT-II over the n_mels dB bands, first n_mfcc rows",
            "dct_values": _rounded(dct_matrix(config.n_mfcc, config.n_mels), 10),
        }
    if config.kind == "fd_mfcc":
        description["deltas"] = {
            "width": config.delta_width,
            "order": 2,
            "formula": "d[t] = sum_{k=1..N} k * (c[t+k] - c[t-k]) / (2 * sum_{k=1..N} k^2), N = width // 2, "
            "edges replicated; delta-delta is the delta of the delta",
        }
    if config.kind == "lpcc":
        description["lpcc"] = {
            "lpc_order": config.lpc_order,
            "n_ceps": config.n_mfcc,
            "method": "autocorrelation + Levinson-Durbin per frame, then the LPC-to-cepstrum recursion",
        }
    normalizer = bundle.normalizer
    description["normalizer"] = (
        None
        if normalizer is None
        else {
            "formula": "x[c, f, t] = (raw[c, f, t] - mean[c, f]) / std[c, f]",
            "mean": _rounded(normalizer.mean),
            "std": _rounded(normalizer.std),
        }
    )
    description["model"] = {
        "file": "model.tflite",
        "bundle_model": model_name,
        **io,
        "quantize": "q = clamp(round(x / scale) + zero_point, -128, 127)",
        "dequantize": "x = (q - zero_point) * scale",
    }
    description["classifier"] = {
        "formula": "logits = embedding @ weight.T + bias; probabilities = softmax(logits). Use this head on the "
        "embedding output (it carries on-device fine-tunes; the model's own logits output does not)",
        "labels": list(bundle.classes),
        "weight": _rounded(bundle.head_weight, 8),
        "bias": _rounded(bundle.head_bias, 8),
    }
    description["detector"] = bundle.detector.to_dict()
    description["test_vector"] = {
        "signal": TEST_SIGNAL,
        "raw_features": _rounded(raw, 5),
        "features": _rounded(x, 5),
        "embedding": _rounded(embedding[0], 5),
        "probabilities": _rounded(probabilities, 6),
    }
    return description


# Building the folder ------------------------------------------------------------------------------
def _render(template: str, values: dict[str, Any]) -> str:
    text = (TEMPLATES / template).read_text()
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", str(value))
    leftover = re.findall(r"\{\{(\w+)\}\}", text)
    if leftover:
        raise RuntimeError(f"template {template} has unfilled fields {leftover}")  # a bug, not a user error
    return text


def _classes_short(classes: list[str], limit: int = 6) -> str:
    shown = [c for c in classes if not c.startswith("_")][:limit]
    more = len([c for c in classes if not c.startswith("_")]) - len(shown)
    return ", ".join(shown) + (f" +{more}" if more > 0 else "")


def _write(root: Path, name: str, data: bytes | str, mode: int = 0o644) -> None:
    path = root / name
    atomic_write_bytes(path, data.encode() if isinstance(data, str) else data)
    os.chmod(path, mode)


def _smoke_test(root: Path) -> None:
    """Run the copied runtime's ``info`` on the copied bundle with ``deploy`` and ``kit`` blocked.

    This catches at deploy time what would otherwise fail on the device: a runtime module that
    imports the kit by absolute name, or a bundle the copied runtime cannot read.
    """
    code = (
        "import runpy, sys; sys.path.insert(0, sys.argv[1]); sys.modules['deploy'] = None; sys.modules['kit'] = None; "
        f"sys.argv = ['{RUNTIME_PACKAGE}', 'info', 'bundle.kit']; runpy.run_module('{RUNTIME_PACKAGE}', "
        "run_name='__main__')"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", code, str(root)], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise KitError(f"the deployed runtime cannot read its bundle ({RUNTIME_PACKAGE} info failed: {last[:200]})")


def _verify_folder(root: Path) -> None:
    """Run the shipped ``verify.py`` on the staged folder: the device's own check, before shipping."""
    result = subprocess.run([sys.executable, "verify.py"], cwd=root, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise KitError(f"the staged deployment fails its own verification ({' '.join(result.stderr.split())[:200]})")


def build_folder(
    bundle_path: str | os.PathLike,
    target: str,
    root: str | os.PathLike,
    *,
    runtime: str | None = None,
    install_dir: str | None = None,
    service_user: str | None = None,
    smoke_test: bool = True,
) -> dict:
    """Write the deployed folder's files into the empty folder ``root``; returns its manifest.

    ``install_dir`` is where the folder will live on the device (the systemd unit needs absolute
    paths); ``service_user`` is the unit's ``User=``.
    """
    bundle_path = Path(bundle_path)
    if target not in TARGETS:
        raise KitError(f"--target: '{target}' is not one of {', '.join(TARGETS)}")
    require_regular_file(bundle_path, "bundle")  # "no such" only when missing; a folder/FIFO is said to be one
    root = Path(root)
    bundle = Bundle.load(bundle_path)
    model_name, runtime = choose_model(bundle, bundle_path, target, runtime)

    # The bundle: byte-for-byte when its default model is the one to run, else re-saved with the
    # chosen default (the device's listener runs the default model).
    if model_name == bundle.default_model:
        bundle_bytes = bundle_path.read_bytes()
        _write(root, "bundle.kit", bundle_bytes)
    else:
        bundle = dataclasses.replace(bundle, default_model=model_name)
        bundle.save(root / "bundle.kit")
        os.chmod(root / "bundle.kit", 0o644)
    deployed = Bundle.load(root / "bundle.kit")
    if deployed.default_model != model_name or list(deployed.classes) != list(bundle.classes):
        raise KitError(f"{root / 'bundle.kit'}: the copied bundle does not match {bundle_path}")

    (root / RUNTIME_PACKAGE).mkdir()
    os.chmod(root / RUNTIME_PACKAGE, 0o755)
    for source in sorted(RUNTIME_DIR.glob("*.py")):
        _write(root, f"{RUNTIME_PACKAGE}/{source.name}", source.read_bytes())

    requirements = requirement_lines(runtime)
    _write(
        root,
        "requirements.txt",
        "# Pinned by `kit deploy` for the device (the versions the kit is tested with); Python >= 3.11.\n"
        "# Install with ./run.sh --setup (a venv in this folder).\n" + "\n".join(requirements) + "\n",
    )
    _write(root, "run.sh", (TEMPLATES / "run.sh").read_text(), mode=0o755)
    _write(root, "verify.py", (TEMPLATES / "verify.py").read_text())

    classes = list(deployed.classes)
    config = deployed.feature_config
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    dest_for_docs = install_dir or str(root)
    user = service_user or getpass.getuser()
    values = {
        "classes_short": _classes_short(classes),
        "classes": ", ".join(classes),
        "n_classes": len(classes),
        "target": target,
        "created": created,
        "bundle_name": bundle_path.name,
        "model": model_name,
        "runtime": runtime,
        "model_note": ("models " if len(deployed.models) > 1 else "model ") + ", ".join(sorted(deployed.models)),
        "input_shape": "x".join(str(v) for v in config.shape),
        "frontend": f"{config.kind}, {config.sample_rate} Hz, {config.duration_s:g} s window, "
        f"{config.win_length}-sample frames every {config.hop_length} samples",
        "numpy_version": requirements[0].partition("==")[2] or "2",
        "sample_rate": config.sample_rate,
        "dest": dest_for_docs,
        "user": user,
    }
    readme = _render("README.md", values)
    if target == "rpi":
        _write(root, SERVICE_NAME, _render(SERVICE_NAME, values))
        readme += _render("README.rpi.md", values)
    if target == "android":
        classifier = BundleClassifier(deployed, model_name)
        frontend = frontend_description(deployed, model_name, classifier)
        _write(root, "model.tflite", deployed.models[model_name])
        _write(root, "frontend.json", json.dumps(frontend, indent=1) + "\n")
        _write(root, "labels.txt", "\n".join(classes) + "\n")
        inp = frontend["model"]["input"]
        values["tflite_input"] = f"{inp['name']} {inp['dtype']} {inp['shape']}"
        values["tflite_outputs"] = ", ".join(
            f"{o['index']}: {o['role']} {o['dtype']} {o['shape']}" for o in frontend["model"]["outputs"]
        )
        readme += _render("README.android.md", values)
    _write(root, "README.md", readme)

    files = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        files[path.relative_to(root).as_posix()] = {"sha256": sha256_bytes(data), "size": len(data)}

    manifest = {
        "format": DEPLOYMENT_FORMAT,
        "format_version": DEPLOYMENT_VERSION,
        "created": created,
        "kit_version": __version__,
        "target": target,
        "runtime": runtime,
        "model": model_name,
        "install_dir": install_dir,
        "service_user": user if target == "rpi" else None,
        "bundle": {
            "source": str(bundle_path.resolve()),
            "classes": classes,
            "default_model": model_name,
            "models": sorted(deployed.models),
            "sha256": files["bundle.kit"]["sha256"],
        },
        "requirements": requirements,
        "files": files,
    }
    _write(root, "manifest.json", json.dumps(manifest, indent=1) + "\n")
    _verify_folder(root)
    if smoke_test:
        _smoke_test(root)
    for pycache in root.rglob("__pycache__"):
        shutil.rmtree(pycache)
    return manifest


# Placing the folder -------------------------------------------------------------------------------
def is_deployment(path: Path) -> bool:
    """Whether ``path`` is a folder written by ``kit deploy`` (so it may be replaced)."""
    try:
        return json.loads((path / "manifest.json").read_text()).get("format") == DEPLOYMENT_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _check_local_destination(dest: Path) -> None:
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise KitError(f"{dest}: exists and is not a folder; refusing to overwrite it")
    if dest.is_dir() and any(dest.iterdir()) and not is_deployment(dest):
        raise KitError(f"{dest}: exists and is not a kit deployment; refusing to overwrite it (choose another --to)")


def _place_local(staging: Path, dest: Path) -> None:
    """Rename ``staging`` over ``dest`` (same file system), keeping the old folder's ``.venv``."""
    old = None
    if dest.exists():
        if (dest / ".venv").is_dir() and not (staging / ".venv").exists():
            os.rename(dest / ".venv", staging / ".venv")
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}-{time.monotonic_ns()}")
        os.rename(dest, old)
    try:
        os.rename(staging, dest)
    except OSError:
        if old is not None:
            os.rename(old, dest)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def deploy(
    bundle_path: str | os.PathLike,
    target: str,
    to: str,
    *,
    runtime: str | None = None,
    port: int | None = None,
    identity: str | os.PathLike | None = None,
    ssh_options: tuple[str, ...] | list[str] = (),
    transfer: str = "auto",
    service_user: str | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> DeployResult:
    """Build the deployed folder for ``target`` and put it at ``to`` (a path or ``user@host:PATH``)."""
    if target not in TARGETS:
        raise KitError(f"--target: '{target}' is not one of {', '.join(TARGETS)}")
    if runtime is not None and runtime not in RUNTIMES:
        raise KitError(f"--runtime: '{runtime}' is not one of {', '.join(RUNTIMES)}")
    bundle_path = Path(bundle_path)
    require_regular_file(bundle_path, "bundle")  # "no such" only when missing; a folder/FIFO is said to be one
    user, host, path = parse_destination(str(to))

    if host is None:
        if port is not None or identity is not None or ssh_options:
            raise KitError(f"--to {to}: --port, --identity and --ssh-option apply to user@host:PATH destinations only")
        if not str(path).strip():
            raise KitError("--to: empty path")
        dest = Path(path).expanduser().absolute()
        _check_local_destination(dest)
        check_output_dir(dest, "--to")
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.deploy-", dir=dest.parent))
        try:
            os.chmod(staging, 0o755)
            log(f"building the {target} folder")
            manifest = build_folder(
                bundle_path, target, staging, runtime=runtime, install_dir=str(dest), service_user=service_user
            )
            _check_local_destination(dest)
            _place_local(staging, dest)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return DeployResult(str(dest), target, manifest["runtime"], manifest["model"], "local", manifest)

    if identity is not None and not Path(identity).expanduser().is_file():
        raise KitError(f"--identity {identity}: no such key file")
    Bundle.load(bundle_path)  # a broken bundle is reported before any connection is made
    spec = RemoteSpec(
        host=host,
        path=path,
        user=user,
        port=port,
        identity=Path(identity).expanduser() if identity is not None else None,
        ssh_options=tuple(ssh_options),
    )
    with ssh_session(spec) as shared, tempfile.TemporaryDirectory(prefix="kit-deploy-") as tmp:
        log(f"connecting to {spec.login}")
        state = probe(shared)
        if state.existing == "foreign":
            raise KitError(
                f"{spec.display(state.path)}: exists and is not a kit deployment; refusing to overwrite it "
                "(choose another --to)"
            )
        staging = Path(tmp) / "deployment"
        staging.mkdir(mode=0o755)
        log(f"building the {target} folder")
        manifest = build_folder(
            bundle_path,
            target,
            staging,
            runtime=runtime,
            install_dir=state.path,
            service_user=service_user or state.user,
        )
        log(f"copying to {spec.display(state.path)}")
        files = dict(manifest["files"])
        files["manifest.json"] = {"sha256": sha256_bytes((staging / "manifest.json").read_bytes())}
        remote_path, method = copy_folder(staging, shared, files, transfer=transfer, state=state)
    return DeployResult(spec.display(remote_path), target, manifest["runtime"], manifest["model"], method, manifest)
