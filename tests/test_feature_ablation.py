"""``kit ablate``: the same distillation under four front-ends, on real FSDD recordings (quick setting)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from deploy.runtime.coreset import Coreset
from deploy.runtime.errors import KitError
from kit.cli import app
from kit.experiments import feature_ablation
from kit.experiments.feature_ablation import feature_kind
from kit.experiments.rundir import load_results

runner = CliRunner()
FEATURES = ("fd_mfcc", "mfcc", "lpcc", "log_mel")
IPCS = (1, 2)
SHAPES = {"fd_mfcc": [3, 13, 64], "mfcc": [1, 13, 64], "lpcc": [1, 13, 64], "log_mel": [1, 40, 64]}


def _args(data_dir: Path, out: Path, *extra: str) -> list[str]:
    return [
        "ablate",
        "fsdd",
        "--quick",
        "--ipcs",
        ",".join(map(str, IPCS)),
        "--data-dir",
        str(data_dir),
        "--out",
        str(out),
        "--no-progress",
        *extra,
    ]


@pytest.fixture(scope="module")
def quick_run(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ablate") / "run"
    result = runner.invoke(app, _args(data_dir, out))
    assert result.exit_code == 0, result.output
    assert "FD-MFCC" in result.output and "log-mel" in result.output
    return out


def test_feature_names_and_aliases() -> None:
    assert [feature_kind(n) for n in ("FD_MFCC", "mfcc", "lpcc", "logmel", "log-mel", "fd-mfcc")] == [
        "fd_mfcc",
        "mfcc",
        "lpcc",
        "log_mel",
        "log_mel",
        "fd_mfcc",
    ]
    with pytest.raises(KitError, match="--features"):
        feature_kind("mel_spectrogram")
    quick = feature_ablation.quick_settings()
    assert quick.ipcs == (1, 10) and quick.limit_per_class >= max(quick.ipcs)  # --quick works with its own defaults
    assert feature_ablation.quick_settings(method="random").method_params == {}  # selectors take no DM knobs


def test_each_row_uses_its_own_front_end(quick_run: Path) -> None:
    cells = json.loads((quick_run / "cells.json").read_text())
    assert len(cells) == len(FEATURES) * len(IPCS) * 2
    for feature in FEATURES:
        for ipc in IPCS:
            for method in ("dm", "random"):
                cell = cells[f"{feature}/ipc{ipc}/{method}"]
                assert cell["shape"] == SHAPES[feature] and cell["feature_config"]["kind"] == feature
                assert 0.0 <= cell["mean"] <= 1.0 and cell["n_train"] == ipc * 10
                coreset = Coreset.load(quick_run / cell["coreset"])
                assert coreset.feature_config.kind == feature and list(coreset.features.shape[1:]) == SHAPES[feature]
                assert coreset.method == method and coreset.ipc == ipc
    # MFCC and LPCC maps have the same shape: the random coresets pick the same clips (same seed and
    # data order), so only a different front-end can make their maps differ
    mfcc = Coreset.load(quick_run / cells["mfcc/ipc2/random"]["coreset"])
    lpcc = Coreset.load(quick_run / cells["lpcc/ipc2/random"]["coreset"])
    assert mfcc.extra["history"]["train_indices"] == lpcc.extra["history"]["train_indices"]
    assert not np.allclose(mfcc.features, lpcc.features, atol=0.1)
    assert mfcc.feature_config.fingerprint() != lpcc.feature_config.fingerprint()


def test_writes_table_figure_and_headline(quick_run: Path) -> None:
    results = load_results(quick_run)
    table = results["tables"][0]
    assert table["columns"] == ["feature", "input shape", "coreset", "1/class", "2/class"]
    assert [row[:3] for row in table["rows"]] == [
        [label, shape, method]
        for label, shape in (("FD-MFCC", "3x13x64"), ("MFCC", "1x13x64"), ("LPCC", "1x13x64"), ("log-mel", "1x40x64"))
        for method in ("dm", "random")
    ]
    assert all(float(v) >= 0 for row in table["rows"] for v in row[3:])
    png = quick_run / results["figures"][0]["file"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert set(results["headline"]) == {f"{f}_dm_ipc{i}" for f in FEATURES for i in IPCS}
    config = json.loads((quick_run / "config.json").read_text())["config"]
    assert config["settings"]["features"] == list(FEATURES) and config["settings"]["method_params"] == {
        "batch_size": 8,
        "width": 32,
    }


def test_resume_skips_done_cells(quick_run: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = feature_ablation.run_cell
    done: list[str] = []

    def counting(run, fs, loader, feature, ipc, method, settings):
        done.append(f"{feature}/ipc{ipc}/{method}")
        return real(run, fs, loader, feature, ipc, method, settings)

    monkeypatch.setattr(feature_ablation, "run_cell", counting)
    cells_file = quick_run / "cells.json"
    before = json.loads(cells_file.read_text())
    result = runner.invoke(app, _args(data_dir, quick_run))
    assert result.exit_code == 0, result.output
    assert done == []  # everything was done: nothing recomputed
    partial = dict(before)
    del partial["lpcc/ipc1/random"]
    cells_file.write_text(json.dumps(partial))
    result = runner.invoke(app, _args(data_dir, quick_run))
    assert result.exit_code == 0, result.output
    assert done == ["lpcc/ipc1/random"]
    after = json.loads(cells_file.read_text())
    assert after["lpcc/ipc1/random"]["mean"] == before["lpcc/ipc1/random"]["mean"]  # seeded: same figure again


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--features", "fd_mfcc,mel"], "--features"),
        (["--ipcs", "0"], "--ipcs"),
        (["--ipcs", "1,x"], "--ipcs"),
        (["--ipcs", "50"], "--limit-per-class"),
        (["--method", "nope"], "--method"),
        (["-p", "nope=1"], "nope"),
        (["--train-seeds", "x"], "--train-seeds"),
    ],
)
def test_bad_options_are_one_line_errors(extra: list[str], needle: str, data_dir: Path, tmp_path: Path) -> None:
    args = _args(data_dir, tmp_path / "r")
    for flag in ("--ipcs", "--features"):  # a later flag overrides the default given by _args
        if flag in extra and flag in args:
            i = args.index(flag)
            del args[i : i + 2]
    result = runner.invoke(app, [*args, *extra])
    assert result.exit_code != 0 and isinstance(result.exception, KitError), result.output
    assert needle in str(result.exception) and "\n" not in str(result.exception)


def test_a_different_setting_in_the_same_folder_is_refused(quick_run: Path, data_dir: Path) -> None:
    result = runner.invoke(app, _args(data_dir, quick_run, "--seed", "1"))
    assert isinstance(result.exception, KitError) and "different run" in str(result.exception)
