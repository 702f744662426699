"""Knowledge distillation (``kit train DATASET --teacher A.kit --teacher B.kit``): the targets mix
labels with the teachers' averaged predictions, teachers from another input space are refused, and
a student trained on real recordings differs from the same run without teachers and records them.
The command's one-line errors are cases of ``test_kit_train_dataset_bad_options_are_one_line_errors``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kit.errors import KitError
from kit.training.teachers import distillation_targets


def _kit(args: list[str]) -> None:
    from kit.cli import main

    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 0


def _train_fsdd(data_dir: Path, out: Path, *extra: str, per_class: str = "20") -> None:
    _kit(
        [
            "train",
            "fsdd",
            "--data-dir",
            str(data_dir),
            "--max-per-class",
            per_class,
            "--epochs",
            "20",
            "--width",
            "16",
            "--copies",
            "1",
            "--seed",
            "2",
            "--out",
            str(out),
            "--quiet",
            *extra,
        ]
    )


def test_distillation_targets_mix_labels_with_the_teachers():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), size=50).astype(np.float32)
    y = rng.integers(0, 4, size=50)
    targets = distillation_targets(y, probs, 0.5)
    assert targets.shape == (50, 4) and np.allclose(targets.sum(axis=1), 1.0, atol=1e-6)
    assert np.array_equal(targets.argmax(axis=1), y)  # at weight <= 0.5 the label stays the argmax
    assert np.allclose(targets - 0.5 * probs, 0.5 * np.eye(4)[y])
    assert np.allclose(distillation_targets(y, probs, 1.0), probs)  # weight 1: the teachers alone
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(KitError, match="--teacher-weight"):
            distillation_targets(y, probs, bad)
    with pytest.raises(KitError, match="labels"):
        distillation_targets(y[:10], probs, 0.5)


def test_student_learns_from_teachers_on_real_recordings(data_dir, tmp_path):
    from kit.models import load_model
    from kit.training import load_for_training
    from kit.training.teachers import load_teachers, teacher_probabilities

    _train_fsdd(data_dir, tmp_path / "teacher")
    teacher = tmp_path / "teacher" / "model.kit"
    _train_fsdd(data_dir, tmp_path / "plain")
    _train_fsdd(data_dir, tmp_path / "student", "--teacher", str(teacher), "--teacher", str(teacher))

    student, meta = load_model(tmp_path / "student" / "model.kit")
    plain, _ = load_model(tmp_path / "plain" / "model.kit")
    assert any(not np.array_equal(a, b) for a, b in zip(student.state_dict().values(), plain.state_dict().values()))
    record = meta["distillation"]
    assert record["teacher_weight"] == 0.5 and len(record["teachers"]) == 2
    assert record["teachers"][0]["sha256"] == record["teachers"][1]["sha256"] and record["teachers"][0]["accuracy"]
    metrics = json.loads((tmp_path / "student" / "metrics.json").read_text())
    assert metrics["accuracy"] > 0.3  # chance is 0.1
    config = json.loads((tmp_path / "student" / "config.json").read_text())
    assert config["teachers"] == [str(teacher)] * 2 and config["teacher_weight"] == 0.5

    # the teachers' average is a probability table over the training clips that agrees with the labels well above chance
    _, fs = load_for_training("fsdd", data_dir, limit_per_class=20, progress=False)
    probs = teacher_probabilities(load_teachers([teacher, teacher], fs), fs.x_train)
    assert probs.shape == (len(fs.y_train), 10) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert (probs.argmax(axis=1) == fs.y_train).mean() > 0.3  # chance is 0.1

    # a model of another input space (other clips, so another normaliser) is refused by name
    _, other = load_for_training("fsdd", data_dir, limit_per_class=5, progress=False)
    with pytest.raises(KitError, match=r"--teacher .*model\.kit: teacher normaliser differs"):
        load_teachers([teacher], other)
