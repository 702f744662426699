"""The bad-input catalogue: every class of hostile or mistaken input from issue 17, as data.

Why one list: ``tests/test_bad_inputs.py`` asserts each case and ``bench/reliability.py`` counts
the outcomes from the very same list, so a case added here is tested and counted at once.
A case builds its bad input inside its own temporary folder (never a real device node) and returns
what to run: ``["kit", ...]`` (the CLI in-process), ``["runtime", ...]`` (the device CLI in-process),
or a zero-argument callable (a library function, where the CLI is not what is under test).
``run_case`` classifies what happened: ``error`` (exit 2, one line naming ``expect``, nothing
created, nothing changed), ``warning`` (the documented warning, exit 0), ``traceback``, ``silent``
(exit 0 without the warning, or a wrong message), ``hang`` or ``side-effect``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import traceback
import warnings
import wave
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deploy.bundle_builder import build_bundle
from deploy.runtime.__main__ import main as runtime_main
from deploy.runtime.artifact import Artifact, manifest_digest, read_artifact, write_artifact
from kit.cli import main as kit_main
from kit.errors import KitError

REPO = Path(__file__).resolve().parents[1]
HANG_S = 60


# Inputs ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Env:
    """The good files every case starts from (built once), and where they are."""

    root: Path
    data_dir: Path
    model: Path
    coreset: Path
    bundle: Path
    clips: tuple[Path, ...]  # real FSDD clips of a digit the bundle does not know
    tones: Path  # a folder-per-class dataset of generated tones (2 classes, 16 kHz)


def build_env(root: Path, data_dir: Path) -> Env:
    """A tiny ConvNet on FSDD digits 0-3 (real recordings), its random coreset and an ONNX bundle."""
    import torch  # lazy: torch only when used

    from kit.data import load_dataset  # lazy: pulls in soundfile
    from kit.features import load_feature_set  # lazy: pulls in soundfile
    from kit.pipeline import distill_coreset  # lazy: pulls in torch, soundfile
    from kit.training import TrainConfig, train_and_save  # lazy: pulls in torch, soundfile

    good = root / "good"
    good.mkdir(parents=True, exist_ok=True)
    ds = load_dataset("fsdd", data_dir)
    digits = ["0", "1", "2", "3"]
    base = dataclasses.replace(ds, classes=digits, clips=[c for c in ds.clips if c.label in digits])
    fs = load_feature_set(base, data_dir, limit_per_class=12, progress=False)
    torch.manual_seed(0)
    config = TrainConfig(arch_kwargs={"width": 8}, max_samples=400, batch_size=16)
    model_path = train_and_save(good / "m.kit", fs.x_train, fs.y_train, fs, config, progress=False).path
    # the kit's own selection path: a random 5-per-class coreset with its provenance
    coreset = distill_coreset(fs, {"dataset": "fsdd"}, "random", 5, seed=0)[0].save(good / "c.kit")
    bundle = build_bundle(model_path, coreset, good / "b.kit", formats=("onnx",))
    clips = tuple(sorted(c.path for c in ds.clips if c.label == "9" and c.split == "train")[:5])
    tones = good / "tones"
    for ci, freq in enumerate((400.0, 1500.0)):
        for i in range(6):
            write_wav(tones / f"c{ci}" / f"s{i % 3}_{i}.wav", tone(freq * (1 + 0.03 * i), 16000, 0.5, seed=i), 16000)
    return Env(root, data_dir, Path(model_path), Path(coreset), Path(bundle), clips, tones)


def tone(freq: float, rate: int, seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / max(rate, 1)
    return (0.5 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def write_wav(path: Path, y: np.ndarray, rate: int) -> Path:
    """16-bit PCM through the stdlib (any rate the header can hold, also absurd ones)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((np.clip(y, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def rewrite(
    src: Path,
    dst: Path,
    manifest: Callable[[Any], Any] | None = None,
    members: Callable[[dict[str, bytes]], None] | None = None,
    resign: bool = True,
) -> Path:
    """Copy an artifact, editing its manifest and/or members; ``resign`` recomputes every checksum as
    an attacker without a key would (so only schema, content and signature checks can catch it)."""
    with zipfile.ZipFile(src) as zf:
        man = json.loads(zf.read("manifest.json"))
        data = {n: zf.read(n) for n in zf.namelist() if n != "manifest.json"}
    if members is not None:
        members(data)
        if resign:
            man["members"] = {n: {"sha256": hashlib.sha256(b).hexdigest(), "size": len(b)} for n, b in data.items()}
    if resign and isinstance(man, dict):
        man.pop("signature", None)
    if manifest is not None:
        result = manifest(man)  # an edit returns ("replace", new) to swap the whole manifest
        if isinstance(result, tuple) and result[:1] == ("replace",):
            man = result[1]
    if resign and isinstance(man, dict) and "meta_sha256" in man:
        man["meta_sha256"] = manifest_digest(man)
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.json", json.dumps(man))
        for name, blob in data.items():
            zf.writestr(name, blob)
    return dst


def npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def edit_array(name: str, fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[dict[str, bytes]], None]:
    def apply(data: dict[str, bytes]) -> None:
        key = f"arrays/{name}.npy"
        data[key] = npy(fn(np.load(io.BytesIO(data[key]), allow_pickle=False)))

    return apply


def nan_like(a: np.ndarray) -> np.ndarray:
    out = np.array(a, dtype=a.dtype, copy=True)
    out.reshape(-1)[0] = np.nan
    return out


def drop(name: str) -> Callable[[dict[str, bytes]], None]:
    return lambda data: data.pop(name)


def first_param(data: dict[str, bytes]) -> str:
    return next(n for n in sorted(data) if n.startswith("arrays/param/") and "weight" in n)


# Cases ----------------------------------------------------------------------------------------------
Runnable = Sequence[str] | Callable[[], Any]


@dataclass(frozen=True)
class Case:
    name: str
    category: str
    build: Callable[[Env, Path], Runnable]
    expect: str  # must appear in the one-line error (a file, member or option name), or in the warning
    outcome: str = "error"  # or "warning"
    stdin: bytes | None = None
    subprocess: bool = False


def _manifest_cases() -> list[Case]:
    """Valid JSON, wrong shape: every field of the schema, on each kind, through ``kit inspect``."""
    edits: dict[str, Callable[[dict], Any]] = {
        "members-missing": lambda m: m.pop("members"),
        "members-list": lambda m: m.__setitem__("members", list(m["members"])),
        "kind-missing": lambda m: m.pop("kind"),
        "meta-missing": lambda m: m.pop("meta"),
        "meta-string": lambda m: m.__setitem__("meta", "x"),
        "member-sha-missing": lambda m: [v.pop("sha256") for v in m["members"].values()],
        "member-entry-string": lambda m: m["members"].__setitem__(next(iter(m["members"])), "x"),
        "size-negative": lambda m: [v.__setitem__("size", -1) for v in m["members"].values()],
        "format-version-negative": lambda m: m.__setitem__("format_version", -1),
        "format-version-string": lambda m: m.__setitem__("format_version", "1"),
        "format-version-bool": lambda m: m.__setitem__("format_version", True),
        "kind-unknown": lambda m: m.__setitem__("kind", "zzz"),
        "created-int": lambda m: m.__setitem__("created", 5),
        "meta-sha-missing": lambda m: m.pop("meta_sha256"),
        "manifest-list": lambda m: ("replace", [m]),
        "kind-edited-not-resigned": None,  # filled below: kind changed, checksum left alone
    }
    cases = []
    for kind in ("coreset", "model", "bundle"):
        for label, edit in edits.items():

            def build(env: Env, tmp: Path, kind: str = kind, edit: Any = edit, label: str = label) -> Runnable:
                src = getattr(env, kind)
                if label == "kind-edited-not-resigned":
                    path = rewrite(
                        src,
                        tmp / "x.kit",
                        lambda m: m.__setitem__("kind", "model" if kind != "model" else "coreset"),
                        resign=False,
                    )
                else:
                    path = rewrite(src, tmp / "x.kit", edit)
                return ["kit", "inspect", str(path)]

            cases.append(Case(f"manifest/{kind}/{label}", "traceback", build, "x.kit"))
    return cases


def _content_cases() -> list[Case]:
    c: list[Case] = []

    def add(
        name: str, category: str, expect: str, outcome: str = "error", stdin: bytes | None = None, sub: bool = False
    ) -> Callable[[Callable[[Env, Path], Runnable]], None]:
        def deco(fn: Callable[[Env, Path], Runnable]) -> None:
            c.append(Case(name, category, fn, expect, outcome, stdin, sub))

        return deco

    # relabelled kinds, re-signed: the v2 checksum covers kind, so only the kind's own checks can tell
    @add("kinds/coreset-relabelled-model", "silent", "x.kit")
    def _(env: Env, tmp: Path) -> Runnable:
        return ["kit", "inspect", str(rewrite(env.coreset, tmp / "x.kit", lambda m: m.__setitem__("kind", "model")))]

    @add("kinds/coreset-relabelled-bundle", "silent", "x.kit")
    def _(env: Env, tmp: Path) -> Runnable:
        return ["kit", "inspect", str(rewrite(env.coreset, tmp / "x.kit", lambda m: m.__setitem__("kind", "bundle")))]

    @add("kinds/member-name-escape", "silent", "blobs/../../evil")
    def _(env: Env, tmp: Path) -> Runnable:
        path = rewrite(env.bundle, tmp / "x.kit", members=lambda d: d.__setitem__("blobs/../../evil", b"x"))
        return ["kit", "deploy", str(path), "--target", "dir", "--to", str(tmp / "out")]

    @add("kinds/member-name-absolute", "silent", "/etc/evil")
    def _(env: Env, tmp: Path) -> Runnable:
        path = rewrite(env.bundle, tmp / "x.kit", members=lambda d: d.__setitem__("/etc/evil", b"x"))
        return ["kit", "inspect", str(path)]

    @add("zip/unsupported-version", "traceback", "x.kit")
    def _(env: Env, tmp: Path) -> Runnable:
        data = bytearray(env.coreset.read_bytes())
        at = data.rindex(b"PK\x01\x02")
        data[at + 6] = 69  # "version needed to extract": 6.9
        (tmp / "x.kit").write_bytes(bytes(data))
        return ["kit", "inspect", str(tmp / "x.kit")]

    @add("zip/unsupported-version-runtime", "traceback", "x.kit")
    def _(env: Env, tmp: Path) -> Runnable:
        data = bytearray(env.bundle.read_bytes())
        at = data.rindex(b"PK\x01\x02")
        data[at + 6] = 69
        (tmp / "x.kit").write_bytes(bytes(data))
        return ["runtime", "info", str(tmp / "x.kit")]

    @add("zip/fifo-artifact", "hang", "x.kit")
    def _(env: Env, tmp: Path) -> Runnable:
        os.mkfifo(tmp / "x.kit")
        return ["kit", "inspect", str(tmp / "x.kit")]

    @add("zip/bomb-ratio", "critical", "decompression bomb")
    def _(env: Env, tmp: Path) -> Runnable:
        return ["kit", "inspect", str(bomb(tmp / "x.kit", 64 << 20))]

    @add("zip/bomb-declared-small", "critical", "in the manifest")
    def _(env: Env, tmp: Path) -> Runnable:
        return ["kit", "inspect", str(bomb(tmp / "x.kit", 64 << 20, declared=15104))]

    # non-finite values
    @add("nan/coreset-features-train", "silent", "non-finite")
    def _(env: Env, tmp: Path) -> Runnable:
        path = rewrite(env.coreset, tmp / "x.kit", members=edit_array("features", nan_like))
        return ["kit", "train", str(path), "--out", str(tmp / "run"), "--seeds", "0", "--max-steps", "2", "-q"]

    @add("nan/model-classify", "silent", "non-finite")
    def _(env: Env, tmp: Path) -> Runnable:
        path = rewrite(env.model, tmp / "x.kit", members=lambda d: edit_array(first_param(d)[7:-4], nan_like)(d))
        return ["kit", "classify", str(path), str(env.clips[0])]

    @add("nan/model-bundle", "traceback", "non-finite")
    def _(env: Env, tmp: Path) -> Runnable:
        path = rewrite(env.model, tmp / "x.kit", members=lambda d: edit_array(first_param(d)[7:-4], nan_like)(d))
        return ["kit", "bundle", str(path), "--coreset", str(env.coreset), "--out", str(tmp / "o.kit")]

    @add("nan/model-export", "silent", "non-finite")
    def _(env: Env, tmp: Path) -> Runnable:
        path = rewrite(env.model, tmp / "x.kit", members=lambda d: edit_array(first_param(d)[7:-4], nan_like)(d))
        return ["kit", "export", str(path), "--out", str(tmp / "o.onnx")]

    @add("nan/bundle-head-inspect", "silent", "non-finite")
    def _(env: Env, tmp: Path) -> Runnable:
        return ["kit", "inspect", str(rewrite(env.bundle, tmp / "x.kit", members=edit_array("head_weight", nan_like)))]

    @add("nan/bundle-norm-runtime", "silent", "non-finite")
    def _(env: Env, tmp: Path) -> Runnable:
        return ["runtime", "info", str(rewrite(env.bundle, tmp / "x.kit", members=edit_array("norm_std", nan_like)))]

    @add("nan/coreset-inf-inspect", "silent", "non-finite")
    def _(env: Env, tmp: Path) -> Runnable:
        path = rewrite(env.coreset, tmp / "x.kit", members=edit_array("norm_mean", lambda a: a * np.inf))
        return ["kit", "inspect", str(path)]

    # incomplete contents (re-signed)
    @add("members/model-without-norm-mean", "silent", "normaliser")
    def _(env: Env, tmp: Path) -> Runnable:
        return [
            "kit",
            "classify",
            str(rewrite(env.model, tmp / "x.kit", members=drop("arrays/norm_mean.npy"))),
            str(env.clips[0]),
        ]

    @add("members/model-without-both-norms", "silent", "normaliser")
    def _(env: Env, tmp: Path) -> Runnable:
        path = rewrite(
            env.model, tmp / "x.kit", members=lambda d: [d.pop("arrays/norm_mean.npy"), d.pop("arrays/norm_std.npy")]
        )
        return ["kit", "classify", str(path), str(env.clips[0])]

    @add("members/coreset-without-labels", "traceback", "arrays/labels.npy")
    def _(env: Env, tmp: Path) -> Runnable:
        return ["kit", "inspect", str(rewrite(env.coreset, tmp / "x.kit", members=drop("arrays/labels.npy")))]

    @add("members/bundle-without-head-bias", "traceback", "arrays/head_bias.npy")
    def _(env: Env, tmp: Path) -> Runnable:
        return ["runtime", "info", str(rewrite(env.bundle, tmp / "x.kit", members=drop("arrays/head_bias.npy")))]

    @add("members/coreset-features-3d", "traceback", "features")
    def _(env: Env, tmp: Path) -> Runnable:
        path = rewrite(env.coreset, tmp / "x.kit", members=edit_array("features", lambda a: a[:, 0]))
        return ["kit", "inspect", str(path)]

    for command in (["kit", "inspect"], ["runtime", "info"], ["kit", "deploy"]):

        @add(f"members/garbage-model-{command[1]}", "silent", "blobs/models/")
        def _(env: Env, tmp: Path, command: list[str] = command) -> Runnable:
            def garble(d: dict[str, bytes]) -> None:
                name = next(n for n in d if n.startswith("blobs/models/"))
                d[name] = bytes(np.random.default_rng(0).integers(0, 256, len(d[name]), dtype=np.uint8))

            path = rewrite(env.bundle, tmp / "x.kit", members=garble)
            extra = ["--target", "dir", "--to", str(tmp / "out")] if command[1] == "deploy" else []
            return [*command, str(path), *extra]

    @add("members/garbage-extra-model-finetune", "silent", "extra.onnx")
    def _(env: Env, tmp: Path) -> Runnable:
        def extra(m: dict) -> None:
            first = next(iter(m["meta"]["models"].values()))
            m["meta"]["models"]["extra.onnx"] = {**first, "bytes": 64}

        path = rewrite(
            env.bundle,
            tmp / "x.kit",
            extra,
            members=lambda d: d.__setitem__("blobs/models/extra.onnx", bytes(range(64))),
        )
        return [
            "kit",
            "finetune",
            str(path),
            "--add-keyword",
            "nine",
            *map(str, env.clips),
            "--out",
            str(tmp / "o.kit"),
        ]

    @add("checkpoint/step-1e9", "silent", "claims step 1000000000")
    def _(env: Env, tmp: Path) -> Runnable:
        from distill.checkpoint import CHECKPOINT_KIND, load_checkpoint  # lazy: pulls in torch, soundfile

        path = tmp / "x.ckpt"
        write_artifact(
            path,
            Artifact(
                kind=CHECKPOINT_KIND, meta={"identity": {}, "step": 10**9, "elapsed": 1.0, "history": [{"step": 1}]}
            ),
        )
        return lambda: load_checkpoint(path)

    # datasets: CSV manifests
    def csv_case(
        name: str,
        text: bytes | Callable[[Env], bytes],
        expect: str,
        extra: Sequence[str] = (),
        category: str = "traceback",
    ) -> None:
        @add(f"csv/{name}", category, expect)
        def _(env: Env, tmp: Path) -> Runnable:
            body = text(env) if callable(text) else text
            (tmp / "m.csv").write_bytes(body)
            return [
                "kit",
                "distill",
                str(tmp / "m.csv"),
                "--method",
                "random",
                "--out",
                str(tmp / "o.kit"),
                "--no-progress",
                *extra,
            ]

    def rows(env: Env, lines: Sequence[str], header: str = "path,label") -> bytes:
        files = sorted(env.tones.rglob("*.wav"))
        return ("\n".join([header, *[line.format(*files) for line in lines]]) + "\n").encode()

    all_rows = ["{0},a", "{1},a", "{2},a", "{6},b", "{7},b", "{8},b"]
    csv_case("ragged-row", lambda e: rows(e, [*all_rows[:5], "{8},b,extra"]), "m.csv:7")
    csv_case("short-row", lambda e: rows(e, [*all_rows[:5], "{8}"]), "m.csv")
    csv_case("non-utf8", lambda e: rows(e, all_rows).replace(b"path,label", b"path,label\xff"), "m.csv")
    csv_case("nul-byte", lambda e: rows(e, all_rows) + b"\x00,a\n", "m.csv")
    csv_case(
        "leak",
        lambda e: rows(
            e, ["{0},a,train", "{0},a,test", "{1},a,train", "{6},b,train", "{7},b,test"], "path,label,split"
        ),
        "train/test leak",
        category="silent",
    )
    csv_case("duplicate", lambda e: rows(e, [*all_rows, "{0},a"]), "duplicate row", category="silent")
    csv_case("conflict", lambda e: rows(e, [*all_rows, "{0},b"]), "conflicting label", category="silent")
    csv_case("test-fold-without-folds", lambda e: rows(e, all_rows), "--test-fold 99", ["--test-fold", "99"], "silent")
    csv_case("single-class", lambda e: rows(e, all_rows[:3]), "at least 2 classes", category="silent")
    csv_case(
        "bad-class-name", lambda e: rows(e, [*all_rows[:3], "{6},b/c", "{7},b/c"]), "class name", category="silent"
    )
    csv_case("missing-file", lambda e: b"path,label\nnope.wav,a\nnope2.wav,b\n", "m.csv:2")

    # datasets: folders
    def folder_case(name: str, make: Callable[[Env, Path], None], expect: str, category: str = "silent") -> None:
        @add(f"folder/{name}", category, expect)
        def _(env: Env, tmp: Path) -> Runnable:
            shutil.copytree(env.tones, tmp / "ds")
            make(env, tmp / "ds")
            return [
                "kit",
                "distill",
                str(tmp / "ds"),
                "--method",
                "random",
                "--out",
                str(tmp / "o.kit"),
                "--no-progress",
            ]

    folder_case(
        "mixed-rates",
        lambda e, d: write_wav(d / "c0" / "a0_stray.wav", tone(300, 4000, 0.5), 4000),
        "mixed sample rates",
    )
    folder_case("single-class", lambda e, d: __import__("shutil").rmtree(d / "c1"), "at least 2 classes")
    folder_case("symlink-loop", lambda e, d: os.symlink("loop.wav", d / "c0" / "loop.wav"), "loop.wav")
    folder_case("dangling-link", lambda e, d: os.symlink("nowhere.wav", d / "c1" / "gone.wav"), "gone.wav")
    folder_case("newline-class", lambda e, d: os.rename(d / "c1", d / "c\n1"), "class name")
    folder_case(
        "one-hz-clip",
        lambda e, d: write_wav(d / "c0" / "s9_slow.wav", np.zeros(8, np.float32) + 0.1, 1),
        "sample rate 1 Hz",
    )
    folder_case(
        "group-only-in-test",
        lambda e, d: [
            p.rename(p.with_name(f"nan_f32_{i}.wav")) for i, p in enumerate(sorted((d / "c1").glob("*.wav")))
        ],
        "c1",
    )

    # parameters and options
    def distill_case(name: str, args: Sequence[str], expect: str, category: str = "traceback") -> None:
        @add(f"options/{name}", category, expect)
        def _(env: Env, tmp: Path) -> Runnable:
            return ["kit", "distill", str(env.tones), "--out", str(tmp / "o.kit"), "--no-progress", *args]

    distill_case("p-lr-abc", ["--method", "dm", "-p", "lr=abc"], "lr")
    distill_case("p-steps-abc", ["--method", "dm", "-p", "steps=abc"], "steps")
    distill_case("p-steps-overflow", ["--method", "dm", "-p", "steps=1e400"], "steps")
    distill_case("p-unknown", ["--method", "dm", "-p", "nosuch=1"], "nosuch")
    distill_case("p-no-equals", ["--method", "dm", "-p", "steps"], "steps")
    distill_case("seed-negative", ["--method", "random", "--seed", "-1"], "seed")
    distill_case("time-budget-nan", ["--method", "dm", "--time-budget", "nan"], "time_budget", "silent")
    distill_case("time-budget-negative", ["--method", "dm", "--time-budget", "-5"], "time_budget")
    distill_case("ipc-zero", ["--method", "random", "--ipc", "0"], "ipc")
    distill_case("unknown-method", ["--method", "zzz"], "zzz")

    # output paths
    @add("out/distill-empty", "traceback", "--out")
    def _(env: Env, tmp: Path) -> Runnable:
        return ["kit", "distill", str(env.tones), "--method", "random", "--out", ""]

    @add("out/bundle-empty", "traceback", "--out")
    def _(env: Env, tmp: Path) -> Runnable:
        return ["kit", "bundle", str(env.model), "--coreset", str(env.coreset), "--out", ""]

    @add("out/export-empty", "traceback", "--out")
    def _(env: Env, tmp: Path) -> Runnable:
        return ["kit", "export", str(env.model), "--out", ""]

    @add("out/finetune-empty", "traceback", "--out")
    def _(env: Env, tmp: Path) -> Runnable:
        return ["kit", "finetune", str(env.bundle), "--add-keyword", "nine", *map(str, env.clips), "--out", ""]

    for cmd in ("distill", "export", "finetune", "deploy"):

        @add(f"out/{cmd}-proc", "traceback", "/proc")
        def _(env: Env, tmp: Path, cmd: str = cmd) -> Runnable:
            return {
                "distill": ["kit", "distill", str(env.tones), "--method", "random", "--out", "/proc/x.kit"],
                "export": ["kit", "export", str(env.model), "--out", "/proc/x.onnx"],
                "finetune": [
                    "kit",
                    "finetune",
                    str(env.bundle),
                    "--add-keyword",
                    "nine",
                    *map(str, env.clips),
                    "--out",
                    "/proc/x.kit",
                ],
                "deploy": ["kit", "deploy", str(env.bundle), "--target", "dir", "--to", "/proc/kws"],
            }[cmd]

    for cmd in ("distill", "bundle", "finetune"):

        @add(f"out/{cmd}-existing-dir", "traceback", "is a directory")
        def _(env: Env, tmp: Path, cmd: str = cmd) -> Runnable:
            (tmp / "d.kit").mkdir()
            return {
                "distill": ["kit", "distill", str(env.tones), "--method", "random", "--out", str(tmp / "d.kit")],
                "bundle": ["kit", "bundle", str(env.model), "--coreset", str(env.coreset), "--out", str(tmp / "d.kit")],
                "finetune": [
                    "kit",
                    "finetune",
                    str(env.bundle),
                    "--add-keyword",
                    "nine",
                    *map(str, env.clips),
                    "--out",
                    str(tmp / "d.kit"),
                ],
            }[cmd]

    @add("out/train-onto-input", "traceback", "also an input")
    def _(env: Env, tmp: Path) -> Runnable:
        return ["kit", "train", str(env.coreset), "--out", str(env.coreset)]

    @add("out/bak-is-dir", "traceback", "b.kit.bak")
    def _(env: Env, tmp: Path) -> Runnable:
        (tmp / "b.kit").write_bytes(env.bundle.read_bytes())
        (tmp / "b.kit.bak").mkdir()
        return ["kit", "finetune", str(tmp / "b.kit"), "--add-keyword", "nine", *map(str, env.clips)]

    @add("out/export-opset-999", "traceback", "--opset 999")
    def _(env: Env, tmp: Path) -> Runnable:
        return ["kit", "export", str(env.model), "--out", str(tmp / "o.onnx"), "--opset", "999"]

    @add("out/export-opset-5", "traceback", "--opset 5")
    def _(env: Env, tmp: Path) -> Runnable:
        return ["kit", "export", str(env.model), "--out", str(tmp / "o.onnx"), "--opset", "5"]

    # audio
    def audio_case(
        name: str,
        make: Callable[[Path], Path],
        expect: str,
        category: str = "silent",
        runtime: bool = False,
        sub: bool = False,
    ) -> None:
        @add(f"audio/{name}{'-runtime' if runtime else ''}", category, expect, sub=sub)
        def _(env: Env, tmp: Path) -> Runnable:
            clip = make(tmp)
            if runtime:
                return ["runtime", "classify", str(env.bundle), str(clip)]
            return ["kit", "classify", str(env.model), str(clip)]

    def truncated(tmp: Path) -> Path:
        path = write_wav(tmp / "x.wav", tone(500, 16000, 1.0), 16000)
        path.write_bytes(path.read_bytes()[: 44 + 8000])
        return path

    def random_bytes(tmp: Path) -> Path:
        (tmp / "x.wav").write_bytes(bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8)))
        return tmp / "x.wav"

    def fifo(tmp: Path) -> Path:
        os.mkfifo(tmp / "x.wav")
        return tmp / "x.wav"

    def folder(tmp: Path) -> Path:
        (tmp / "x.wav").mkdir()
        return tmp / "x.wav"

    def rate_1e9(tmp: Path) -> Path:
        path = write_wav(tmp / "x.wav", tone(500, 16000, 1.0), 16000)
        data = bytearray(path.read_bytes())
        struct.pack_into("<I", data, 24, 1_000_000_000)
        path.write_bytes(bytes(data))
        return path

    for runtime in (False, True):
        audio_case("truncated-data-chunk", truncated, "truncated", runtime=runtime)
        audio_case(
            "one-sample",
            lambda t: write_wav(t / "x.wav", np.full(1, 0.3, np.float32), 16000),
            "too short",
            runtime=runtime,
        )
        audio_case(
            "ten-ms", lambda t: write_wav(t / "x.wav", tone(500, 16000, 0.01), 16000), "too short", runtime=runtime
        )
        audio_case("one-hz", lambda t: write_wav(t / "x.wav", np.full(4, 0.3, np.float32), 1), "1 Hz", runtime=runtime)
        audio_case("rate-1e9", rate_1e9, "1e+09 Hz", runtime=runtime)
        audio_case("directory", folder, "not a regular file", "message", runtime=runtime)
        audio_case("fifo", fifo, "not a regular file", "message", runtime=runtime)
        audio_case(
            "empty", lambda t: (t / "x.wav").write_bytes(b"") or t / "x.wav", "empty", "traceback", runtime=runtime
        )
    audio_case("random-bytes", random_bytes, "x.wav", "message", sub=True)
    audio_case("random-bytes", random_bytes, "x.wav", "message", runtime=True)

    # live through stdin
    pcm = (tone(500, 16000, 1.2) * 32767).astype("<i2").tobytes()
    for name, args, data, expect, outcome in (
        ("rate-zero", ["--rate", "0"], pcm, "--rate", "error"),
        ("rate-negative", ["--rate", "-16000"], pcm, "--rate", "error"),
        ("rate-1e9", ["--rate", "1000000000"], pcm, "--rate", "error"),
        ("empty-stdin", [], b"", "stdin", "error"),
        ("odd-trailing-byte", [], pcm + b"\x01", "odd trailing byte", "warning"),
        ("duration-negative", ["--duration", "-1"], pcm, "--duration", "error"),
    ):

        @add(f"live/{name}", "silent", expect, outcome, stdin=data)
        def _(env: Env, tmp: Path, args: list[str] = args) -> Runnable:
            return ["kit", "live", str(env.bundle), "--input", "-", *args]

    # class names
    for name, keyword, expect in (
        ("slash-newline", "a/b\nc", "class name"),
        ("silence", "_silence_", "_silence_"),
        ("unknown", "_unknown_", "_unknown_"),
        ("empty", "", "--add-keyword"),
        ("existing", "0", "already a class"),
    ):

        @add(f"names/add-keyword-{name}", "silent", expect)
        def _(env: Env, tmp: Path, keyword: str = keyword) -> Runnable:
            return [
                "kit",
                "finetune",
                str(env.bundle),
                "--add-keyword",
                keyword,
                *map(str, env.clips),
                "--out",
                str(tmp / "o.kit"),
            ]

    @add("names/l2-new-inf", "message", "--l2-new")
    def _(env: Env, tmp: Path) -> Runnable:
        return [
            "kit",
            "finetune",
            str(env.bundle),
            "--add-keyword",
            "nine",
            *map(str, env.clips),
            "--out",
            str(tmp / "o.kit"),
            "--l2-new",
            "inf",
        ]

    # deploy targets
    for name, to in (("no-path", "user@host"), ("at-colon", "@:"), ("empty-remote-path", "host:")):

        @add(f"deploy/to-{name}", "silent", "--to")
        def _(env: Env, tmp: Path, to: str = to) -> Runnable:
            return ["kit", "deploy", str(env.bundle), "--target", "rpi", "--to", to]

    # signatures
    def keyfile(tmp: Path, name: str, content: bytes) -> Path:
        (tmp / name).write_bytes(content)
        return tmp / name

    @add("sign/unsigned-with-key", "integrity", "not signed")
    def _(env: Env, tmp: Path) -> Runnable:
        return ["runtime", "--key", str(keyfile(tmp, "k", b"k" * 32)), "info", str(env.bundle)]

    @add("sign/wrong-key", "integrity", "signature does not match")
    def _(env: Env, tmp: Path) -> Runnable:
        write_artifact(tmp / "s.kit", read_artifact(env.bundle), sign_key=b"a" * 32)
        return ["runtime", "--key", str(keyfile(tmp, "k", b"b" * 32)), "info", str(tmp / "s.kit")]

    @add("sign/tampered-resigned-checksums", "integrity", "signature does not match")
    def _(env: Env, tmp: Path) -> Runnable:
        write_artifact(tmp / "s.kit", read_artifact(env.bundle), sign_key=b"a" * 32)
        with zipfile.ZipFile(tmp / "s.kit") as zf:
            signature = json.loads(zf.read("manifest.json"))["signature"]
        path = rewrite(tmp / "s.kit", tmp / "t.kit", lambda m: m["meta"]["detector"].__setitem__("threshold", 0.01))
        path = rewrite(path, tmp / "x.kit", lambda m: m.__setitem__("signature", signature), resign=False)
        return ["runtime", "--key", str(keyfile(tmp, "k", b"a" * 32)), "info", str(path)]

    @add("sign/short-key", "integrity", "--sign")
    def _(env: Env, tmp: Path) -> Runnable:
        return [
            "kit",
            "bundle",
            str(env.model),
            "--coreset",
            str(env.coreset),
            "--out",
            str(tmp / "o.kit"),
            "--sign",
            str(keyfile(tmp, "k", b"short")),
        ]

    @add("sign/missing-key", "integrity", "--sign")
    def _(env: Env, tmp: Path) -> Runnable:
        return [
            "kit",
            "bundle",
            str(env.model),
            "--coreset",
            str(env.coreset),
            "--out",
            str(tmp / "o.kit"),
            "--sign",
            str(tmp / "absent"),
        ]

    @add("sign/runtime-key-missing", "integrity", "--key")
    def _(env: Env, tmp: Path) -> Runnable:
        return ["runtime", "--key", str(tmp / "absent"), "info", str(env.bundle)]

    return c


CASES: list[Case] = [*_manifest_cases(), *_content_cases()]


def bomb(path: Path, inflated: int, declared: int | None = None) -> Path:
    """A bundle-kind artifact whose ``arrays/replay_q.npy`` inflates to ``inflated`` zero bytes
    (a v1 manifest with a correct meta checksum; ``declared``: the size the manifest claims)."""
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
    return path


# Running -----------------------------------------------------------------------------------------
@dataclass
class Outcome:
    case: str
    category: str
    result: str  # error | warning | traceback | silent | hang | side-effect
    code: int | None
    message: str
    seconds: float = 0.0


def snapshot(root: Path) -> dict[str, str]:
    """Every regular file under ``root`` with its SHA-256 (lock sidecars excluded: they are kept by design)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames:
            path = Path(dirpath) / name
            if name.startswith(".") and name.endswith(".lock"):
                continue
            if path.is_symlink() or not path.is_file():
                out[str(path)] = "special"
                continue
            out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
    for dirpath, dirnames, _ in os.walk(root):
        for name in dirnames:
            out.setdefault(str(Path(dirpath) / name) + "/", "dir")
    return out


class _Hang(Exception):
    pass


def _in_process(runnable: Runnable, stdin: bytes | None) -> tuple[int | None, str, str]:
    """(exit code, stdout, stderr) of one invocation in this interpreter; a non-KitError exception
    becomes a traceback in stderr, as it would print from the real command."""
    out, err = io.StringIO(), io.StringIO()
    code: int | None = 0
    old_stdin, old_key = sys.stdin, os.environ.get("KIT_BUNDLE_KEY")  # the device's --key sets it
    if stdin is not None:
        sys.stdin = io.TextIOWrapper(io.BytesIO(stdin))
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            warnings.simplefilter("always")
            try:
                if callable(runnable):
                    runnable()
                elif runnable[0] == "kit":
                    kit_main(list(runnable[1:]))
                else:
                    code = runtime_main(list(runnable[1:]))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except KitError as exc:  # a library call: what the CLI would print
                print(f"error: {exc}", file=sys.stderr)
                code = 2
            except _Hang:
                raise
            except BaseException:  # noqa: BLE001 - exactly what is being counted
                traceback.print_exc()
                code = 1
    finally:
        sys.stdin = old_stdin
        if old_key is None:
            os.environ.pop("KIT_BUNDLE_KEY", None)
        else:
            os.environ["KIT_BUNDLE_KEY"] = old_key
    return code, out.getvalue(), err.getvalue()


def _subprocess(runnable: Sequence[str], stdin: bytes | None, cwd: Path) -> tuple[int | None, str, str]:
    entry = ["-m", "kit"] if runnable[0] == "kit" else ["-m", "deploy.runtime"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    try:
        proc = subprocess.run(
            [sys.executable, *entry, *runnable[1:]],
            input=stdin or b"",
            capture_output=True,
            timeout=HANG_S,
            cwd=cwd,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return None, "", "hang"
    return proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")


def run_case(case: Case, env: Env, tmp: Path) -> Outcome:
    """Build the case in ``tmp``, run it and classify what happened (see the module docstring)."""
    tmp.mkdir(parents=True, exist_ok=True)
    runnable = case.build(env, tmp)
    before = {**snapshot(tmp), **snapshot(env.root / "good")}
    started = time.perf_counter()
    if case.subprocess and not callable(runnable):
        code, _, err = _subprocess(runnable, case.stdin, tmp)
        hung = code is None
    else:

        def alarm(*_: Any) -> None:
            raise _Hang()

        previous = signal.signal(signal.SIGALRM, alarm)
        signal.alarm(HANG_S)
        try:
            code, _, err = _in_process(runnable, case.stdin)
            hung = False
        except _Hang:
            code, err, hung = None, "hang", True
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
    seconds = time.perf_counter() - started
    after = {**snapshot(tmp), **snapshot(env.root / "good")}
    lines = [line for line in err.strip().splitlines() if line.strip()]
    message = " | ".join(lines)[:400]
    if hung:
        return Outcome(case.name, case.category, "hang", None, message, seconds)
    if "Traceback" in err:
        return Outcome(case.name, case.category, "traceback", code, message, seconds)
    if case.outcome == "warning":
        ok = code == 0 and any(case.expect in line and line.startswith("warning") for line in lines)
        return Outcome(case.name, case.category, "warning" if ok else "silent", code, message, seconds)
    if code == 0:
        return Outcome(case.name, case.category, "silent", code, message, seconds)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    if changed:
        return Outcome(
            case.name,
            case.category,
            "side-effect",
            code,
            f"{message} || changed: {', '.join(Path(c).name for c in changed[:4])}",
            seconds,
        )
    good = code == 2 and len(lines) == 1 and lines[0].startswith("error") and case.expect in lines[0]
    return Outcome(case.name, case.category, "error" if good else "silent", code, message, seconds)


def counts(outcomes: Sequence[Outcome]) -> dict[str, int]:
    kinds = ("error", "warning", "traceback", "silent", "hang", "side-effect")
    return {"cases": len(outcomes), **{k: sum(o.result == k for o in outcomes) for k in kinds}}
