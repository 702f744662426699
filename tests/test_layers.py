"""The architecture is checked, not only drawn: import-linter contracts (.importlinter) run in the test command,
and every function-level import must say (``# lazy: why``) which heavy back-end it keeps out of its module."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _tool(name: str) -> str:
    path = Path(sys.executable).parent / name
    found = str(path) if path.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed; it is part of the [test] extra (./run.sh test installs it)")
    return found


def test_every_import_contract_is_kept() -> None:
    proc = subprocess.run([_tool("lint-imports"), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "broken" in proc.stdout and " 0 broken" in proc.stdout


PACKAGES = ("kit", "distill", "deploy", "firmware_sim", "bench")


def _function_level_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Import statements anywhere inside a function (nested blocks and nested functions included)."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if in_function and isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append(child)
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(tree, False)
    return found


def unmarked_lazy_imports(root: Path) -> list[str]:
    """``file:line`` of every function-level import without a ``# lazy:`` comment saying why.

    Why a marker and not a ban: a function-level import is right for a heavy back-end (torch, onnxruntime, ...)
    that a light module (``kit --help``, the numpy-only device runtime) must not load, and wrong as a way round an
    import cycle (the layers above rule cycles out). The comment makes each one a decision a reviewer can check.
    """
    bad = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            lines = path.read_text(encoding="utf-8").splitlines()
            for node in _function_level_imports(ast.parse("\n".join(lines), filename=str(path))):
                if not any("# lazy:" in lines[n - 1] for n in {node.lineno, node.end_lineno or node.lineno}):
                    bad.append(f"{path.relative_to(root)}:{node.lineno}: {ast.unparse(node)}")
    return bad


def test_every_function_level_import_says_why_it_is_lazy() -> None:
    bad = unmarked_lazy_imports(REPO)
    assert not bad, (
        "function-level imports without a '# lazy: why' comment (hoist them to the module top, or say "
        "which heavy back-end they keep out):\n" + "\n".join(bad)
    )


def test_the_lazy_import_check_finds_an_unmarked_import(tmp_path: Path) -> None:
    (tmp_path / "kit").mkdir()
    (tmp_path / "kit" / "m.py").write_text(
        "import os\n\n\ndef f():\n    import json\n    from pathlib import (\n        Path,\n    )  # lazy: test\n"
        "    def g():\n        import torch  # lazy: heavy\n        import re\n    return json, Path, g\n"
    )
    assert unmarked_lazy_imports(tmp_path) == ["kit/m.py:5: import json", "kit/m.py:11: import re"]


#: what `kit --help` must not load: each costs from 0.2 s (soundfile) to seconds (torch, litert_torch)
HELP_MUST_NOT_LOAD = (
    "torch",
    "librosa",
    "scipy",
    "soundfile",
    "matplotlib",
    "onnx",
    "onnxruntime",
    "litert_torch",
    "ai_edge_litert",
    "ai_edge_quantizer",
    "sklearn",
)

_HELP_CHILD = """
import runpy, sys
sys.argv = ["kit", "--help"]
try:
    runpy.run_module("kit", run_name="__main__")
except SystemExit as exc:
    assert exc.code in (0, None), exc.code
print("\\nMODULES " + " ".join(sorted({m.split(".")[0] for m in sys.modules})))
"""


def test_kit_help_loads_no_heavy_back_end() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _HELP_CHILD],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Usage" in proc.stdout
    loaded = set(proc.stdout.rsplit("MODULES ", 1)[1].split())
    assert "kit" in loaded and not loaded & set(HELP_MUST_NOT_LOAD), sorted(loaded & set(HELP_MUST_NOT_LOAD))


def test_the_tree_passes_ruff() -> None:
    """``ruff check`` (pycodestyle, pyflakes, import order, bugbear; 120 columns) and ``ruff format --check``:
    the configuration is in pyproject.toml, and a change that breaks either fails here, not in review."""
    ruff = _tool("ruff")
    check = subprocess.run([ruff, "check", "--no-cache", "."], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stdout[-4000:] + check.stderr[-2000:]
    fmt = subprocess.run(
        [ruff, "format", "--check", "--no-cache", "."], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert fmt.returncode == 0, "run `ruff format .`:\n" + fmt.stdout[-4000:] + fmt.stderr[-2000:]
