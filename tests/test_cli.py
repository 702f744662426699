"""The CLI's cross-cutting behaviour: --help everywhere, bad clips, and the demo job end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deploy.runtime.coreset import Coreset
from deploy.runtime.errors import KitError
from kit.cli import app

runner = CliRunner()


def test_every_command_has_help() -> None:
    top = runner.invoke(app, ["--help"])
    assert top.exit_code == 0
    commands = ["demo", "distill", "train", "eval", "inspect", "export", "classify", "data"]
    for name in commands:
        assert name in top.output
        result = runner.invoke(app, [name, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output, name
    for sub in ("info", "download"):
        assert runner.invoke(app, ["data", sub, "--help"]).exit_code == 0


def test_distill_names_a_corrupt_clip_and_skip_bad_skips_it(tone_tree: Path, tmp_path: Path) -> None:
    bad = tone_tree / "low" / "spk9_99.wav"
    bad.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk")
    out = tmp_path / "c.kit"
    result = runner.invoke(
        app, ["distill", str(tone_tree), "--method", "random", "--ipc", "1", "--out", str(out), "--no-progress"]
    )
    assert result.exit_code != 0 and isinstance(result.exception, KitError)
    assert "spk9_99.wav" in str(result.exception) and "\n" not in str(result.exception)
    assert not out.exists()

    result = runner.invoke(
        app,
        [
            "distill",
            str(tone_tree),
            "--method",
            "random",
            "--ipc",
            "1",
            "--out",
            str(out),
            "--skip-bad",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    coreset = Coreset.load(out)
    assert coreset.source["n_skipped"] == 1 and coreset.class_counts() == {"high": 1, "low": 1, "mid": 1}
    config = json.loads(out.with_name(out.name + ".config.json").read_text())
    assert config["method"] == "random" and config["seed"] == 0 and config["loader"]["skip_bad"] is True


def test_demo_runs_end_to_end_on_a_small_set(tone_tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = runner.invoke(
        app,
        ["demo", "--dataset", str(tone_tree), "--ipc", "1", "--time-budget", "3", "--seeds", "0,1", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert set(metrics) >= {"rfad", "random"} and config["ipc"] == 1 and config["seeds"] == [0, 1]
    for name in ("rfad", "random"):
        assert 0.0 <= metrics[name]["accuracy_mean"] <= 1.0 and len(metrics[name]["accuracies"]) == 2
        assert Coreset.load(out / f"{name}.kit").method == name
    assert "rfad" in result.output and "random" in result.output
    # the demo ends with the host firmware of a convnet-mcu streaming one held-out test clip
    firmware = metrics["firmware"]
    if "skipped" not in firmware:  # no C compiler on this machine
        assert (out / "firmware-host" / "kws").is_file() and (out / "mcu.bundle.kit").is_file()
        assert any(line.startswith("per inference:") for line in firmware["output"]), firmware
        assert "kit firmware run" in result.output


def test_unknown_dataset_and_missing_data_dir_are_one_line_errors(tmp_path: Path) -> None:
    for args, needle in (
        (["distill", "no_such_set", "--method", "random", "--out", str(tmp_path / "x.kit")], "no_such_set"),
        (
            [
                "distill",
                "fsdd",
                "--method",
                "random",
                "--out",
                str(tmp_path / "x.kit"),
                "--data-dir",
                str(tmp_path / "nowhere"),
            ],
            "nowhere",
        ),
    ):
        result = runner.invoke(app, args)
        assert result.exit_code != 0 and isinstance(result.exception, KitError), result.output
        assert needle in str(result.exception) and "\n" not in str(result.exception)


@pytest.mark.parametrize(
    "argv", [["inspect", "/nonexistent/file.kit"], ["distill", "fsdd", "--method", "nope", "--out", "x.kit"]]
)
def test_console_script_prints_one_line_and_exits_2(argv: list[str]) -> None:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "kit", *argv], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.strip().startswith("error:")
