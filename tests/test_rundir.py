"""The experiment run folder contract (``kit/experiments/rundir.py``) that every comparison and ``kit report`` share."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from deploy.runtime.errors import KitError
from kit.experiments import RunDir, load_results


def test_cells_survive_a_restart_and_other_settings_are_refused(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run", "demo", {"seed": 0, "ipc": 10})
    run.record("cell-a", {"accuracy": 0.5})
    again = RunDir(tmp_path / "run", "demo", {"seed": 0, "ipc": 10})
    assert again.has("cell-a") and again.get("cell-a") == {"accuracy": 0.5} and not again.has("cell-b")
    with pytest.raises(KitError, match="different run"):
        RunDir(tmp_path / "run", "demo", {"seed": 1, "ipc": 10})
    fresh = RunDir(tmp_path / "run", "demo", {"seed": 1, "ipc": 10}, overwrite=True)
    assert fresh.cells == {}
    assert json.loads((tmp_path / "run" / "config.json").read_text())["config"] == {"seed": 1, "ipc": 10}


def test_results_name_members_relative_to_the_folder_and_round_trip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    run = RunDir("runs/exp", "demo", {"seed": 0}, title="Demo")
    (tmp_path / "runs" / "exp" / "plot.png").write_bytes(b"\x89PNG")
    run.add_figure("runs/exp/plot.png", "relative to the working directory")
    run.add_figure("plot.png", "relative to the run folder")
    run.add_figure(tmp_path / "runs" / "exp" / "plot.png", "absolute")
    with pytest.raises(ValueError, match="not inside"):
        run.add_audio(Path(os.devnull), "outside")
    with pytest.raises(FileNotFoundError):
        run.add_audio("missing.wav", "missing")
    with pytest.raises(ValueError, match="rows must have 2 cells"):
        run.add_table("bad", ["a", "b"], [[1, 2, 3]])
    run.add_table("accuracy", ["method", "acc"], [["dm", 0.9]])
    run.headline = {"best": "dm"}
    data = load_results(run.save().parent)
    assert [f["file"] for f in data["figures"]] == ["plot.png"] * 3
    assert data["tables"][0]["rows"] == [["dm", 0.9]] and data["headline"] == {"best": "dm"} and data["title"] == "Demo"


def test_load_results_refuses_what_is_not_a_finished_run(tmp_path: Path) -> None:
    with pytest.raises(KitError, match="no results.json"):
        load_results(tmp_path)
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(KitError, match="unreadable"):
        load_results(tmp_path)
    (tmp_path / "results.json").write_text(json.dumps({"format": 99}))
    with pytest.raises(KitError, match="format 99"):
        load_results(tmp_path)
