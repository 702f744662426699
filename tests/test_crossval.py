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


def test_kit_al_every_fold_on_real_esc10(data_dir, tmp_path):
    """``kit al esc10 --folds all`` on the real recordings, tiny budgets: five runs, each with a per-fold
    coreset that held out the same fold, and mean ± std over folds in cv.json."""
    runner = CliRunner()
    common = ["--data-dir", str(data_dir), "--limit-per-class", "4", "--no-progress"]
    coreset = tmp_path / "r.kit"
    result = runner.invoke(
        app, ["distill", "esc10", "--method", "random", "--ipc", "1", "--folds", "all", "--out", str(coreset), *common]
    )
    assert result.exit_code == 0, result.output
    out = tmp_path / "al"
    result = runner.invoke(
        app,
        [
            "al",
            "esc10",
            "--folds",
            "all",
            "--quick",
            "--methods",
            "random,bald",
            "--budgets",
            "40,60",
            "--tiny",
            "none",
            "--seeds",
            "0",
            "--max-samples",
            "200",
            "--acquisition-max-samples",
            "100",
            "--full-max-samples",
            "200",
            "--mc-passes",
            "2",
            "--coreset",
            str(coreset),
            "--out",
            str(out),
            *common,
        ],
    )
    assert result.exit_code == 0, result.output
    cv = json.loads((out / "cv.json").read_text())
    assert cv["command"] == "al" and cv["folds"] == [1, 2, 3, 4, 5] and "5 official folds" in cv["protocol"]
    assert [(r["label"], r["budget"]) for r in cv["rows"]] == [
        ("random", "40 %"),
        ("random", "60 %"),
        ("BALD", "40 %"),
        ("BALD", "60 %"),
        ("r.fold1.kit", "coreset"),
        ("full training data", "100 %"),
    ]
    for row in cv["rows"]:
        assert [f["fold"] for f in row["per_fold"]] == [1, 2, 3, 4, 5] and row["n_runs"] == 5
        means = [f["mean"] for f in row["per_fold"]]
        assert row["mean"] == pytest.approx(sum(means) / 5) and 0.0 <= row["mean"] <= 1.0
    assert [f["n"] for f in cv["rows"][0]["per_fold"]] == [16] * 5  # 40 % of a 40-clip pool (4 folds x 10 classes)
    for fold in range(1, 6):
        config = json.loads((out / f"fold{fold}" / "config.json").read_text())["config"]
        assert config["dataset"]["test_fold"] == fold and config["dataset"]["held_out_fold"] == fold
        assert config["coresets"][0]["path"].endswith(f"r.fold{fold}.kit")
    assert "5-fold cross-validation" in result.output and "BALD" in result.output
