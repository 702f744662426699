"""``bench.data_ladder``'s rungs on the real extra Speech Commands clips, and the fine-tune base with them.

Why test the view folder: a rung is only a fair measurement if it holds at most the asked number of
clips per word, whole speakers only, each rung holding every clip of the rungs below, and if the
loader accepts it exactly as it accepts a user's ``--extra-train`` folder (no test speaker).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.data_ladder import extra_view, markdown, speaker_of


def test_rungs_are_capped_nested_whole_speakers(data_dir: Path, tmp_path: Path) -> None:
    source = data_dir / "speech_commands_train"
    small, small_counts = extra_view(source, 40, seed=3, work=tmp_path)
    large, large_counts = extra_view(source, 120, seed=3, work=tmp_path)
    assert set(small_counts) == set(large_counts) == {p.name for p in source.iterdir() if p.is_dir()}
    for word, n in small_counts.items():
        small_files = {p.name for p in (small / word).iterdir()}
        large_files = {p.name for p in (large / word).iterdir()}
        assert 0 < n == len(small_files) <= 40 and len(large_files) <= 120
        assert small_files <= large_files
        all_files = {p.name for p in (source / word).iterdir()}
        for speaker in {speaker_of(Path(name)) for name in large_files}:
            assert {f for f in all_files if speaker_of(Path(f)) == speaker} <= large_files
    assert extra_view(source, 0, seed=3, work=tmp_path) == (None, {})
    # re-running a rung at a smaller size removes the links it no longer wants
    again, _ = extra_view(source, 10, seed=3, work=tmp_path / "re")
    extra_view(source, 5, seed=3, work=tmp_path / "re")
    assert all(len(list((again / w).iterdir())) <= 10 for w in small_counts)


def test_a_rung_loads_through_the_loader_with_its_checks(data_dir: Path, tmp_path: Path) -> None:
    from kit.data import load_dataset

    view, counts = extra_view(data_dir / "speech_commands_train", 15, seed=0, work=tmp_path)
    base = load_dataset("speech_commands", data_dir, task="kws12")
    ds = load_dataset("speech_commands", data_dir, task="kws12", extra_train=[view])
    assert len(ds.clips_in("train")) == len(base.clips_in("train")) + sum(counts.values())
    assert len(ds.clips_in("test")) == len(base.clips_in("test"))


def test_the_finetune_base_task_takes_extra_clips_and_still_excludes_the_new_words(data_dir: Path) -> None:
    from bench.finetune_data import base_dataset, word_of

    extra = data_dir / "speech_commands_train"
    plain = base_dataset(data_dir, ["eight", "six", "happy"])
    more = base_dataset(data_dir, ["eight", "six", "happy"], extra_train=[extra])
    added = len(more.clips_in("train")) - len(plain.clips_in("train"))
    assert added == sum(1 for _ in extra.glob("*/*.flac"))
    assert not any(word_of(c.path) in ("eight", "six", "happy") for c in more.clips if c.label == "_unknown_")


def test_markdown_names_every_rung_and_class() -> None:
    rung = {
        "per_word": 0,
        "clips_per_keyword": 260.0,
        "accuracy": 0.8,
        "per_class_accuracy": {"yes": 0.9, "on": 0.7},
        "n_train": 100,
        "wall_seconds": 12.0,
        "extra_counts": {},
    }
    results = {
        "rungs": [rung, {**rung, "per_word": 370, "clips_per_keyword": 630.0, "accuracy": 0.85}],
        "split_train_counts": {"yes": 260, "on": 250},
        "extra_words": ["yes"],
        "machine": {"cpu": "x", "cores": 2},
        "command": "python -m bench.data_ladder",
        "seed": 0,
        "finished": "now",
        "wall_s": 60,
        "arch": "convnet-mcu",
        "width": 28,
    }
    text = markdown(json.loads(json.dumps(results)))
    assert (
        "+370/keyword" in text
        and "| on (no extra clips) | 70.0 | 70.0 |" in text
        and "| all (test accuracy, %) | 80.0 | 85.0 |" in text
    )


@pytest.mark.parametrize("bad", [-1])
def test_a_missing_source_folder_is_a_clear_error(tmp_path: Path, bad: int) -> None:
    from deploy.runtime.errors import KitError

    with pytest.raises(KitError, match="no such folder"):
        extra_view(tmp_path / "nope", 10, seed=0, work=tmp_path)
    assert extra_view(tmp_path / "nope", bad, seed=0, work=tmp_path) == (None, {})
