"""Every module a device runs imports with numpy (and the standard library) only.

Why one walk instead of hand-written module lists: ``deploy/package.py`` ships every
``deploy/runtime/*.py`` to the device, so a new module that imports torch, librosa, scipy or the
kit would break the device without touching any list. The walk finds modules by listing files,
imports each one in a clean interpreter and records what each import added to ``sys.modules``.

The runtime is loaded the way the device loads it: as a standalone top-level package (the
deployed ``kit_runtime/`` folder), so an absolute ``deploy.runtime`` import, which only works in
this repository, is caught too. ``firmware_sim/`` (when present) is walked as a normal package.
Inference and audio back-ends (onnxruntime, ai-edge-litert, sounddevice) may be used, but only
imported lazily, inside the function that needs them: a device has one of them, not all.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RUNTIME = REPO / "deploy" / "runtime"
FIRMWARE_SIM = REPO / "firmware_sim"

#: top-level module -> why a device module must not import it (at import time)
BANNED = {
    **{
        name: "training-side dependency"
        for name in (
            "torch",
            "librosa",
            "scipy",
            "sklearn",
            "matplotlib",
            "tensorflow",
            "kit",
            "distill",
            "typer",
            "rich",
        )
    },
    **{
        name: "back-end: import it lazily where it is used"
        for name in ("onnxruntime", "ai_edge_litert", "tflite_runtime", "sounddevice")
    },
}
#: the standalone runtime must not reach back into this repository's packages either
BANNED_STANDALONE = {**BANNED, "deploy": "absolute import: the device has only the copied runtime folder"}

# Runs in the clean interpreter: argv = package folder, package name, "standalone"|"package", modules (JSON).
_CHILD = r"""
import importlib, importlib.util, json, sys
folder, name, how, modules = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])

def load_package():
    if how == "package":
        return importlib.import_module(name)
    # as deploy/package.py ships it: the folder alone, under another name
    spec = importlib.util.spec_from_file_location(name, folder + "/__init__.py", submodule_search_locations=[folder])
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package
    spec.loader.exec_module(package)

added = {}
for module in [""] + [m for m in modules if m]:  # the package first: its submodules need it
    before = set(sys.modules)
    try:
        importlib.import_module(name + "." + module) if module else load_package()
    except Exception as exc:
        added[module] = ["<error> " + type(exc).__name__ + ": " + " ".join(str(exc).split())[:200]]
        continue
    added[module] = sorted({m.split(".")[0] for m in set(sys.modules) - before})
print(json.dumps(added))
"""


def module_names(folder: Path) -> list[str]:
    """Every module under ``folder`` by listing its files ("" is the package itself)."""
    names = []
    for path in sorted(folder.rglob("*.py")):
        parts = list(path.relative_to(folder).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names.append(".".join(parts))
    return names


def walk(folder: Path, name: str, standalone: bool) -> dict[str, list[str]]:
    """{module: top-level modules its import added} for every module of ``folder``, in one fresh interpreter."""
    modules = module_names(folder)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    how = "standalone" if standalone else "package"
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, str(folder), name, how, json.dumps(modules)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def offences(added: dict[str, list[str]], banned: dict[str, str]) -> list[str]:
    """One line per module that pulled in a banned module or failed to import."""
    lines = []
    for module, names in added.items():
        for top in names:
            if top.startswith("<error>"):
                lines.append(f"{module or '__init__'}: does not import ({top[8:]})")
            elif top in banned:
                lines.append(f"{module or '__init__'}: imports {top} ({banned[top]})")
    return lines


TARGETS = [pytest.param(RUNTIME, "kit_runtime", True, BANNED_STANDALONE, id="deploy/runtime")]
if FIRMWARE_SIM.is_dir():
    TARGETS.append(pytest.param(FIRMWARE_SIM, "firmware_sim", False, BANNED, id="firmware_sim"))


@pytest.mark.parametrize("folder,name,standalone,banned", TARGETS)
def test_every_device_module_imports_with_numpy_only(folder: Path, name: str, standalone: bool, banned: dict) -> None:
    added = walk(folder, name, standalone)
    assert set(added) == set(module_names(folder)) and len(added) >= 2
    assert not offences(added, banned), "\n".join(offences(added, banned))
    assert "numpy" in {top for names in added.values() for top in names}  # the walk really imported code


def test_the_walk_catches_a_module_that_leaks(tmp_path: Path) -> None:
    """A copy of the runtime with three bad modules: each is reported by name, the rest are not."""
    copy = tmp_path / "runtime"
    shutil.copytree(RUNTIME, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "leak_kit.py").write_text("import kit\n")
    (copy / "leak_absolute.py").write_text("from deploy.runtime.errors import KitError\n")
    (copy / "leak_backend.py").write_text("import onnxruntime\n")
    lines = offences(walk(copy, "kit_runtime", True), BANNED_STANDALONE)
    assert any(line.startswith("leak_kit: imports kit") for line in lines), lines
    assert any(line.startswith("leak_absolute: imports deploy") for line in lines), lines
    assert any(line.startswith("leak_backend: imports onnxruntime") for line in lines), lines
    assert {line.split(":")[0] for line in lines} == {"leak_kit", "leak_absolute", "leak_backend"}, lines
