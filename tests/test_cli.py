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
        [
            "demo",
            "--dataset",
            str(tone_tree),
            "--ipc",
            "1,2",
            "--time-budget",
            "3",
            "--seeds",
            "0,1",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert config["ipcs"] == [1, 2] and config["seeds"] == [0, 1]
    cells = {(r["coreset"], r["ipc"]) for r in metrics["comparison"]}
    assert cells == {("rfad", 1), ("random", 1), ("rfad", 2), ("random", 2)}
    for row in metrics["comparison"]:
        assert 0.0 <= row["accuracy_mean"] <= 1.0 and len(row["accuracies"]) == 2
        assert Coreset.load(row["path"]).method == row["coreset"]
        assert Coreset.load(row["path"]).class_counts() == {"high": row["ipc"], "low": row["ipc"], "mid": row["ipc"]}
    # the device half: an int8 bundle of the largest rfad coreset, a held-out stream on the device runtime
    assert (out / "mcu.bundle.kit").is_file() and (out / "heldout-stream.wav").is_file()
    stream = metrics["stream"]
    assert stream["words"] == 3 and stream["correct"] + stream["wrong_label"] + stream["missed"] == 3
    assert "kit live" in result.output and "words heard right" in result.output
    firmware = metrics["firmware"]
    if "skipped" not in firmware:  # no C compiler on this machine
        assert (out / "firmware-host" / "kws").is_file()
        assert any(line.startswith("per inference:") for line in firmware["output"]), firmware
        assert "kit firmware run" in result.output
    assert f"Outputs in {out}" in result.output.replace("\n", "")


def test_demo_stream_pairs_each_word_with_what_the_device_heard(tmp_path: Path) -> None:
    from kit.commands.demo_steps import Word, match_detections

    words = [Word("yes", "a.wav", 1.0, 1.6), Word("no", "b.wav", 3.0, 3.5), Word("up", "c.wav", 5.0, 5.4)]
    detections = [
        {"label": "yes", "time_s": 2.2, "score": 0.9},  # late but within end + 1 s
        {"label": "go", "time_s": 3.3, "score": 0.7},  # the right place, the wrong word
        {"label": "up", "time_s": 8.0, "score": 0.8},  # nothing was said there
    ]
    result = match_detections(words, detections)
    assert (result["correct"], result["wrong_label"], result["missed"], result["false_accepts"]) == (1, 1, 1, 1)


def test_demo_refuses_a_bad_ipc(tmp_path: Path) -> None:
    for args in (["--ipc", "0"], ["--ipc", "abc"], ["--seeds", "x"]):
        result = runner.invoke(app, ["demo", *args, "--out", str(tmp_path / "d")])
        assert result.exit_code != 0 and isinstance(result.exception, KitError), result.output
        assert args[0] in str(result.exception) and "\n" not in str(result.exception)


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
