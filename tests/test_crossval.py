"""``--folds all`` end to end on a fixture in the official layout: one coreset per fold from the other
folds only, each scored on the fold it held out, mean ± std over folds; and the one-line refusals."""

from __future__ import annotations

import json
import shutil

import pytest
from dataset_fixtures import make_esc50
from typer.testing import CliRunner

from deploy.runtime.coreset import Coreset
from kit.cli import app, main
from kit.commands.crossval import fold_file, summarize_folds
from kit.errors import KitError


@pytest.fixture(scope="module")
def esc50_dir(tmp_path_factory):
    data = tmp_path_factory.mktemp("cv")
    make_esc50(data, classes=3, per_fold=2, seconds=0.3, missing=False)
    return data


def test_distill_and_train_every_fold(esc50_dir, tmp_path):
    runner = CliRunner()
    out = tmp_path / "h.kit"
    result = runner.invoke(
        app,
        [
            "distill",
            "esc50",
            "--data-dir",
            str(esc50_dir),
            "--method",
            "herding",
            "--ipc",
            "2",
            "--folds",
            "all",
            "--out",
            str(out),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    for fold in range(1, 6):
        coreset = Coreset.load(fold_file(out, fold))
        assert coreset.source["test_fold"] == fold and coreset.source["held_out_fold"] == fold
        assert coreset.source["n_train"] == 3 * 2 * 4  # the other four folds only
    result = runner.invoke(
        app,
        [
            "train",
            str(out),
            "--data-dir",
            str(esc50_dir),
            "--folds",
            "all",
            "--seeds",
            "0,1",
            "--epochs",
            "2",
            "--max-samples",
            "60",
            "--out",
            str(tmp_path / "run"),
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "over 5 folds" in result.output
    cv = json.loads((tmp_path / "run" / "cv.json").read_text())
    assert cv["folds"] == [1, 2, 3, 4, 5] and cv["n_runs"] == 10 and 0.0 <= cv["mean"] <= 1.0
    assert all((tmp_path / "run" / f"fold{k}" / "model.kit").is_file() for k in range(1, 6))

    shutil.copy(fold_file(out, 1), fold_file(out, 2))  # a coreset that held out fold 1, named as fold 2
    result = runner.invoke(
        app,
        [
            "train",
            str(out),
            "--data-dir",
            str(esc50_dir),
            "--folds",
            "1,2",
            "--seeds",
            "0",
            "--epochs",
            "1",
            "--out",
            str(tmp_path / "run2"),
            "-q",
        ],
    )
    assert isinstance(result.exception, KitError) and "held out fold 1, not fold 2" in str(result.exception)


def test_folds_errors_are_one_line(esc50_dir, tmp_path, capsys):
    for argv, message in [
        (
            ["distill", "fsdd", "--method", "random", "--ipc", "1", "--folds", "all", "--out", str(tmp_path / "a.kit")],
            "dataset 'fsdd' has no official folds",
        ),
        (
            [
                "distill",
                "esc50",
                "--data-dir",
                str(esc50_dir),
                "--method",
                "random",
                "--ipc",
                "1",
                "--folds",
                "6",
                "--out",
                str(tmp_path / "b.kit"),
            ],
            "fold 6 is out of range for esc50",
        ),
        (["train", str(tmp_path / "none.kit"), "--folds", "all"], "no per-fold coresets"),
    ]:
        with pytest.raises(SystemExit) as info:
            main(argv)
        err = capsys.readouterr().err
        assert info.value.code == 2 and message in err and "Traceback" not in err, err


def test_summary_is_mean_and_std_over_fold_means():
    summary = summarize_folds([{"fold": 1, "mean": 0.5, "accuracies": [0.4, 0.6]}, {"fold": 2, "mean": 0.7}])
    assert summary["mean"] == pytest.approx(0.6) and summary["std"] == pytest.approx(0.1)
    assert summary["n_runs"] == 3 and summary["mean_over_runs"] == pytest.approx((0.4 + 0.6 + 0.7) / 3)
