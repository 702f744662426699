"""Per-keyword detection thresholds: the recogniser applies them, they round-trip through a bundle,
``kit bundle --max-fa-per-hour`` chooses them on a validation stream of training audio (real FSDD
digits over real training noise), and a rate no threshold can meet is a one-line error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from export_fixtures import digits
from typer.testing import CliRunner

from deploy.runtime.bundle import Bundle
from deploy.runtime.errors import KitError
from deploy.runtime.recognizer import DetectorSettings, RecognizeCommands
from deploy.thresholds import GRID
from firmware_sim.c_frontend import detector_source
from kit.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def model(data_dir: Path, tmp_path_factory):
    return digits(data_dir, tmp_path_factory)


def _feed(settings: DetectorSettings, scores: list[float], label: int) -> list[str]:
    """Feed ``label`` at each score (the rest spread over the other two classes); the reported labels."""
    recognizer = RecognizeCommands(["yes", "no", "_silence_"], settings)
    found = []
    for i, score in enumerate(scores):
        p = np.full(3, (1.0 - score) / 2)
        p[label] = score
        hit = recognizer.process(p, 0.1 * i)
        if hit is not None:
            found.append(hit.label)
    return found


def test_each_keyword_needs_its_own_threshold() -> None:
    settings = DetectorSettings(
        threshold=0.5, thresholds={"no": 0.9}, suppression_s=0.0, minimum_count=1, average_window_s=0.0
    )
    assert settings.threshold_for("no") == 0.9 and settings.threshold_for("yes") == 0.5
    assert _feed(settings, [0.8], label=0) == ["yes"]  # 0.8 clears yes's 0.5 ...
    assert _feed(settings, [0.8], label=1) == []  # ... but not no's 0.9
    assert _feed(settings, [0.95], label=1) == ["no"]
    with pytest.raises(KitError, match="threshold of 'no'"):
        DetectorSettings(thresholds={"no": 1.5})


def test_settings_without_thresholds_keep_the_old_format() -> None:
    old = DetectorSettings().to_dict()
    assert "thresholds" not in old  # what a bundle without per-keyword thresholds stores, as before
    assert DetectorSettings.from_dict(old).thresholds == {}
    new = DetectorSettings(thresholds={"yes": 0.7})
    assert DetectorSettings.from_dict(new.to_dict()) == new


def test_the_c_detector_gets_one_threshold_per_class() -> None:
    source = detector_source(["yes", "no", "_silence_"], DetectorSettings(threshold=0.5, thresholds={"no": 0.9}))
    assert "thresholds[3] = {0.5, 0.9, 0.5}" in source and ".thresholds = thresholds" in source


def test_max_fa_per_hour_thresholds_round_trip_through_a_bundle(model, data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "digits.bundle.kit"
    result = runner.invoke(
        app,
        [
            "bundle",
            str(model.kit_path),
            "--coreset",
            str(model.coreset_path),
            "--out",
            str(out),
            "--max-fa-per-hour",
            "20",
            "--validation-minutes",
            "3",
            "--data-dir",
            str(data_dir),
        ],
    )
    assert result.exit_code == 0, result.output
    bundle = Bundle.load(out)
    thresholds = bundle.detector.thresholds
    assert set(thresholds) == set(bundle.classes) and set(thresholds.values()) <= set(GRID)
    chosen = bundle.provenance["thresholds"]
    assert chosen["fa_per_hour"] <= 20 and chosen["false_accepts"] <= 1  # 20 per hour of a 3-min stream: one
    per_keyword = chosen["per_keyword"]
    assert {k: v["threshold"] for k, v in per_keyword.items()} == thresholds
    assert sum(v["false_accepts"] for v in per_keyword.values()) == chosen["false_accepts"]
    assert sum(v["words"] for v in per_keyword.values()) >= 20  # the stream holds real training digits
    assert DetectorSettings.from_dict(bundle.detector.to_dict()).thresholds == thresholds
    again = Bundle.load(bundle.save(tmp_path / "copy.kit"))
    assert again.detector == bundle.detector
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_rate_no_threshold_can_meet_is_a_one_line_error(model, data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "never.kit"
    result = runner.invoke(
        app,
        [
            "bundle",
            str(model.kit_path),
            "--coreset",
            str(model.coreset_path),
            "--out",
            str(out),
            "--max-fa-per-hour",
            "0.5",
            "--validation-minutes",
            "3",
            "--data-dir",
            str(data_dir),
        ],
    )
    assert isinstance(result.exception, KitError), result.output
    message = str(result.exception)
    assert "\n" not in message and "--max-fa-per-hour 0.5" in message and "--validation-minutes 120" in message
    assert not out.exists()
    zero = runner.invoke(
        app,
        [
            "bundle",
            str(model.kit_path),
            "--coreset",
            str(model.coreset_path),
            "--out",
            str(out),
            "--max-fa-per-hour",
            "0",
        ],
    )
    assert isinstance(zero.exception, KitError) and "--max-fa-per-hour" in str(zero.exception)
