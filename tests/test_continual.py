"""``kit cl``: class-incremental learning with a rehearsal memory, on real FSDD recordings (quick setting)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from deploy.runtime.coreset import Coreset
from deploy.runtime.errors import KitError
from kit.cli import app
from kit.experiments import continual
from kit.experiments.continual import FILLS, quick_settings, run_continual, split_tasks
from kit.experiments.rundir import load_results

runner = CliRunner()
N_TASKS = 5  # FSDD: 10 digits in tasks of 2


def _row_hashes(x: np.ndarray) -> set[str]:
    return {hashlib.sha1(np.ascontiguousarray(row, dtype=np.float32).tobytes()).hexdigest() for row in x}


@pytest.fixture(scope="module")
def quick_run(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One quick run of every strategy (distill, herding, random, joint, finetune), shared by the tests."""
    out = tmp_path_factory.mktemp("cl") / "run"
    result = runner.invoke(
        app, ["cl", "fsdd", "--quick", "--data-dir", str(data_dir), "--out", str(out), "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert "average" in result.output and "finetune" in result.output
    return out


@pytest.fixture(scope="module")
def quick_data(data_dir: Path):
    from kit.pipeline import load_training_set

    fs, _ = load_training_set("fsdd", data_dir, limit_per_class=quick_settings().limit_per_class, progress=False)
    return fs


def _cells(run: Path) -> dict:
    return json.loads((run / "cells.json").read_text())


def test_task_split_covers_every_class_once() -> None:
    for n_classes, seed in ((10, 0), (10, 3), (12, 1), (7, 2)):
        tasks = split_tasks(n_classes, 2, seed)
        flat = [c for task in tasks for c in task]
        assert sorted(flat) == list(range(n_classes)) and len(flat) == len(set(flat))
        assert all(len(task) == 2 for task in tasks[:-1]) and len(tasks[-1]) in (2, 3)
        assert split_tasks(n_classes, 2, seed) == tasks  # seeded
    assert split_tasks(10, 2, 0) != split_tasks(10, 2, 1)
    assert [len(t) for t in split_tasks(10, 3, 0)] == [3, 3, 4]  # a lone last class joins the task before
    with pytest.raises(KitError, match="task-size"):
        split_tasks(10, 1, 0)


def test_memory_holds_exactly_memory_per_old_class_and_no_test_clip(quick_run: Path, quick_data) -> None:
    memory = quick_settings().memory
    cells = _cells(quick_run)
    test_rows = _row_hashes(quick_data.x_test)
    for strategy in FILLS:
        for t in range(1, N_TASKS + 1):
            cell = cells[f"{strategy}/seed0/task{t}"]
            counts = np.asarray(cell["memory_per_class"])
            seen = cell["seen_classes"]
            assert (counts[seen] == memory).all() and counts.sum() == memory * len(seen), (strategy, t)
            if t < N_TASKS:  # the next task trains on exactly this memory for its old classes
                assert cells[f"{strategy}/seed0/task{t + 1}"]["train"]["n_train"] == (
                    int(np.isin(quick_data.y_train, cells[f"{strategy}/seed0/task{t + 1}"]["task_classes"]).sum())
                    + counts.sum()
                )
        saved = Coreset.load(quick_run / "checkpoints" / f"{strategy}_seed0_task{N_TASKS}.memory.kit")
        assert len(saved.features) == memory * 10 and set(saved.class_counts().values()) == {memory}
        assert not (_row_hashes(saved.features) & test_rows), f"{strategy} memory holds a test clip"
        rows = np.asarray(saved.extra["train_rows"])
        if strategy == "distill":
            assert (rows == -1).all()  # synthetic maps
            assert not (_row_hashes(saved.features) & _row_hashes(quick_data.x_train))
        else:  # real clips of the training split, copied exactly, with the right labels
            assert (rows >= 0).all() and np.array_equal(saved.features, quick_data.x_train[rows])
            assert np.array_equal(saved.hard_labels, quick_data.y_train[rows])


def test_accuracy_after_each_task_is_on_the_classes_seen_so_far(quick_run: Path, quick_data) -> None:
    from kit.models import load_model

    cells = _cells(quick_run)
    for strategy in (*FILLS, "joint", "finetune"):
        seen: list[int] = []
        for t in range(1, N_TASKS + 1):
            cell = cells[f"{strategy}/seed0/task{t}"]
            assert cell["seen_classes"][: len(seen)] == seen
            seen = cell["seen_classes"]
            assert len(seen) == 2 * t
            assert cell["n_test"] == int(np.isin(quick_data.y_test, seen).sum())
            assert (cell["n_test"] < len(quick_data.y_test)) == (t < N_TASKS)
            assert set(cell["predicted_classes"]) <= set(seen)
            assert (cell["old_accuracy"] is None) == (t == 1)
    # the checkpoint is the model that was scored: re-evaluating it gives the recorded accuracy
    model, meta = load_model(quick_run / "checkpoints" / f"random_seed0_task{N_TASKS}.model.kit")
    last = cells[f"random/seed0/task{N_TASKS}"]
    again = continual.evaluate_seen(
        model,
        quick_data.x_test,
        quick_data.y_test,
        last["seen_classes"],
        cells[f"random/seed0/task{N_TASKS - 1}"]["seen_classes"],
    )
    assert again["accuracy"] == pytest.approx(last["accuracy"], abs=1e-9)
    assert meta["continual"]["task"] == N_TASKS and meta["classes"] == quick_data.classes
    # only the latest checkpoint pair is kept per stream
    assert sorted(p.name for p in (quick_run / "checkpoints").glob("random_*")) == [
        f"random_seed0_task{N_TASKS}.memory.kit",
        f"random_seed0_task{N_TASKS}.model.kit",
    ]


def test_without_memory_old_classes_are_forgotten(quick_run: Path) -> None:
    cells = _cells(quick_run)
    last = {s: cells[f"{s}/seed0/task{N_TASKS}"] for s in (*FILLS, "finetune")}
    for strategy in FILLS:
        assert last[strategy]["old_accuracy"] > last["finetune"]["old_accuracy"] + 0.2, strategy
    assert last["finetune"]["old_accuracy"] < 0.2
    results = load_results(quick_run)
    headline = results["headline"]
    assert all(headline[f"average_{s}"] > headline["average_finetune"] + 10 for s in FILLS)


def test_results_table_and_figure(quick_run: Path) -> None:
    results = load_results(quick_run)
    table = results["tables"][0]
    assert (
        table["columns"][0] == "strategy" and table["columns"][-1] == "average" and len(table["columns"]) == N_TASKS + 2
    )
    assert [row[0] for row in table["rows"]] == [*FILLS, "joint", "finetune"]
    assert table["rows"][0][1] and float(table["rows"][-1][-1]) < float(table["rows"][0][-1])
    png = quick_run / results["figures"][0]["file"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    config = json.loads((quick_run / "config.json").read_text())
    assert config["experiment"] == "continual" and config["config"]["settings"]["memory"] == quick_settings().memory
    assert sorted(c for t in config["config"]["tasks"] for c in t) == [str(d) for d in range(10)]


def test_an_interrupted_run_resumes_where_it_stopped(
    quick_run: Path, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = quick_settings(fills=("random",), bounds=False)
    out = tmp_path / "resumed"
    real_evaluate, real_train = continual.evaluate_seen, continual.train_task
    calls = {"evaluate": 0, "train": 0}

    def crash_on_third_task(*args, **kwargs):
        calls["evaluate"] += 1
        if calls["evaluate"] == 3:
            raise KeyboardInterrupt("simulated crash in task 3")
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(continual, "evaluate_seen", crash_on_third_task)
    with pytest.raises(KeyboardInterrupt):
        run_continual("fsdd", out, settings, data_dir=data_dir, progress=False)
    assert sorted(_cells(out)) == ["random/seed0/task1", "random/seed0/task2"]

    def counting_train(*args, **kwargs):
        calls["train"] += 1
        return real_train(*args, **kwargs)

    monkeypatch.setattr(continual, "evaluate_seen", real_evaluate)
    monkeypatch.setattr(continual, "train_task", counting_train)
    run_continual("fsdd", out, settings, data_dir=data_dir, progress=False)
    assert calls["train"] == N_TASKS - 2  # tasks 3..5 only
    resumed = [_cells(out)[f"random/seed0/task{t}"]["accuracy"] for t in range(1, N_TASKS + 1)]
    uninterrupted = [_cells(quick_run)[f"random/seed0/task{t}"]["accuracy"] for t in range(1, N_TASKS + 1)]
    assert resumed == uninterrupted  # the checkpoints carry the exact state across the interruption
    calls["train"] = 0
    run_continual("fsdd", out, settings, data_dir=data_dir, progress=False)
    assert calls["train"] == 0  # a finished run only re-renders its results


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--fill", "distill,bogus"], "--fill"),
        (["--memory", "0"], "--memory"),
        (["--task-size", "1"], "--task-size"),
        (["--memory", "40"], "--limit-per-class"),
        (["--distill-method", "nope"], "--distill-method"),
        (["-p", "nope=1"], "nope"),
        (["--seeds", "a,b"], "--seeds"),
    ],
)
def test_bad_options_are_one_line_errors(args: list[str], needle: str, data_dir: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["cl", "fsdd", "--quick", "--data-dir", str(data_dir), "--out", str(tmp_path / "r"), "--no-progress", *args],
    )
    assert result.exit_code != 0 and isinstance(result.exception, KitError), result.output
    assert needle in str(result.exception) and "\n" not in str(result.exception)


def test_console_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "kit", "cl", "fsdd", "--fill", "bogus", "--out", str(tmp_path / "r")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.strip().startswith("error:") and "--fill" in proc.stderr
