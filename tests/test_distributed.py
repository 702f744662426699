"""Data-parallel distillation: N gloo processes must produce the coreset 1 process produces.

Why this is the test that matters: the sharding scheme (global batches drawn identically on every
rank, rank-local sums combined exactly) only earns its keep if adding processes changes speed,
not results. Runs through the real ``kit distill --nproc 2`` path on real FSDD clips.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from deploy.runtime.coreset import Coreset
from kit.cli import app

#: float32 sums over ranks differ from one process's sums in the last bits; after a few Adam
#: steps (which normalise gradients) that stays far below the features' scale (~1)
TOLERANCE = 1e-3

METHOD_OPTIONS = {
    "rfad": ["--steps", "6", "--batch-size", "48", "--n-models", "2", "--width", "8", "-p", "keep_best=false"],
    "dm": ["--steps", "6", "--batch-size", "8", "-p", "width=16"],
}


def _distill(data_dir: Path, out: Path, method: str, nproc: int, *extra: str) -> Coreset:
    args = [
        "distill",
        "fsdd",
        "--method",
        method,
        "--ipc",
        "2",
        "--out",
        str(out),
        "--data-dir",
        str(data_dir),
        "--limit-per-class",
        "12",
        "--seed",
        "3",
        "--threads",
        "1",
        "--no-progress",
        "--nproc",
        str(nproc),
        *METHOD_OPTIONS[method],
        *extra,
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, (result.output, result.exception)
    return Coreset.load(out)


@pytest.mark.parametrize("method", ["rfad", "dm"])
def test_two_gloo_processes_match_one(data_dir: Path, tmp_path: Path, method: str) -> None:
    from distill import METHODS

    if method not in METHODS:
        pytest.fail(f"method {method} is not registered")
    one = _distill(data_dir, tmp_path / "one.kit", method, 1)
    two = _distill(data_dir, tmp_path / "two.kit", method, 2)
    start = _distill(data_dir, tmp_path / "start.kit", method, 1, "--steps", "0")
    assert one.extra["history"]["steps"] == two.extra["history"]["steps"] == 6
    assert two.extra["history"]["world_size"] == 2 and one.extra["history"]["world_size"] == 1
    diff = float(np.abs(one.features.astype(np.float32) - two.features.astype(np.float32)).max())
    assert diff <= TOLERANCE, diff
    np.testing.assert_array_equal(one.labels, two.labels)
    # the runs really moved the samples, by far more than the tolerance
    moved = float(np.abs(one.features.astype(np.float32) - start.features.astype(np.float32)).max())
    assert moved > 20 * TOLERANCE, moved
    print(f"{method}: |1 proc - 2 procs| max {diff:.2e}, moved {moved:.2e}")


def test_nproc_refuses_selection_methods(data_dir: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["distill", "fsdd", "--method", "herding", "--out", str(tmp_path / "h.kit"), "--nproc", "2"]
    )
    assert "--nproc applies to iterative methods only" in str(result.exception)
