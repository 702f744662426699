"""``kit distill speech_commands --extra-train DIR`` on real recordings: the extra training folder joins
the pool a coreset is distilled from, the record says so, and a speaker of the test split is refused."""

from __future__ import annotations

import json
import shutil

import pytest

from kit.data import load_dataset


def _distill(args: list[str]) -> None:
    from kit.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["distill", *args])
    assert exc.value.code in (0, None)


def test_distill_extra_train_uses_the_extra_clips(data_dir, tmp_path):
    extra = tmp_path / "extra"
    for word in ("yes", "no"):  # two real training clips per word, copied so the pool stays small
        (extra / word).mkdir(parents=True)
        for path in sorted((data_dir / "speech_commands_train" / word).glob("*.flac"))[:2]:
            shutil.copy(path, extra / word / path.name)
    common = [
        "speech_commands",
        "--task",
        "kws12",
        "--data-dir",
        str(data_dir),
        "--method",
        "herding",
        "--ipc",
        "2",
        "--limit-per-class",
        "3",
        "--no-progress",
    ]
    _distill([*common, "--out", str(tmp_path / "base.kit")])
    _distill([*common, "--extra-train", str(extra), "--out", str(tmp_path / "extra.kit")])
    base = json.loads((tmp_path / "base.kit.config.json").read_text())
    record = json.loads((tmp_path / "extra.kit.config.json").read_text())
    assert record["loader"]["extra_train"] == [str(extra.resolve())]
    assert "extra_train" not in base["loader"]
    # the extra clips changed the data the coreset was drawn from, not the test split
    assert record["loader"]["data_fingerprint"]["sha256"] != base["loader"]["data_fingerprint"]["sha256"]
    assert record["source"]["extra_train"] == [str(extra.resolve())]
    assert record["source"]["n_test"] == base["source"]["n_test"]


def test_distill_extra_train_refuses_a_test_speaker(data_dir, tmp_path, capsys):
    from kit.cli import main

    test_clip = next(c for c in load_dataset("speech_commands", data_dir).clips_in("test") if c.label == "yes")
    folder = tmp_path / "extra" / "yes"
    folder.mkdir(parents=True)
    source = sorted((data_dir / "speech_commands_train" / "yes").glob("*.flac"))[0]
    shutil.copy(source, folder / f"{test_clip.group}_nohash_7.flac")  # a training clip under a test speaker's id
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "distill",
                "speech_commands",
                "--task",
                "kws12",
                "--data-dir",
                str(data_dir),
                "--method",
                "random",
                "--ipc",
                "1",
                "--extra-train",
                str(tmp_path / "extra"),
                "--out",
                str(tmp_path / "c.kit"),
                "--no-progress",
            ]
        )
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"speaker '{test_clip.group}' is also in the test split" in err and "_nohash_7.flac" in err
    assert not (tmp_path / "c.kit").exists()
