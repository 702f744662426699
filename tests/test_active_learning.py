"""Active-learning baselines: acquisition functions, MC dropout, the pool-based loop, and ``kit al``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from deploy.runtime.coreset import Coreset
from deploy.runtime.errors import KitError
from distill.active import (
    ActiveLearner,
    bald,
    max_entropy,
    mc_dropout_probs,
    random_scores,
    round_schedule,
    variation_ratios,
)
from kit.cli import app
from kit.models import build_model
from kit.training import TrainConfig

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


# acquisition functions ------------------------------------------------------------------------------------
def test_max_entropy_is_largest_for_a_uniform_prediction() -> None:
    probs = np.array([[0.25, 0.25, 0.25, 0.25], [0.7, 0.1, 0.1, 0.1], [1.0, 0.0, 0.0, 0.0]])
    scores = max_entropy(probs)
    assert scores[0] == pytest.approx(np.log(4)) and scores[2] == pytest.approx(0.0, abs=1e-9)
    assert scores[0] > scores[1] > scores[2]
    # MC samples are averaged first: two confident but opposite passes = an uncertain prediction
    mc = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])
    assert max_entropy(mc)[0] == pytest.approx(np.log(2))


def test_variation_ratios_for_probabilities_and_for_mc_votes() -> None:
    assert variation_ratios(np.array([[0.6, 0.3, 0.1], [1.0, 0.0, 0.0]])) == pytest.approx([0.4, 0.0])
    onehot = np.eye(3)
    # 4 passes voting 0, 0, 1, 2 for sample 0 and 2, 2, 2, 2 for sample 1
    mc = np.stack([np.stack([onehot[a], onehot[b]]) for a, b in ((0, 2), (0, 2), (1, 2), (2, 2))])
    assert mc.shape == (4, 2, 3)
    assert variation_ratios(mc) == pytest.approx([0.5, 0.0])


def test_bald_is_zero_when_passes_agree_and_positive_when_they_disagree() -> None:
    agree = np.tile(np.array([[0.2, 0.5, 0.3], [1 / 3, 1 / 3, 1 / 3]]), (20, 1, 1))
    assert bald(agree) == pytest.approx([0.0, 0.0], abs=1e-12)  # even the uniform (max-entropy) row scores 0
    disagree = np.array([[[1.0, 0.0]], [[0.0, 1.0]]] * 10)  # (20, 1, 2): confident passes, opposite classes
    assert bald(disagree)[0] == pytest.approx(np.log(2))
    mild = np.array([[[0.6, 0.4]], [[0.4, 0.6]]] * 10)
    assert 0 < bald(mild)[0] < bald(disagree)[0]
    with pytest.raises(ValueError):
        bald(np.ones((3, 2)) / 2)


def test_random_scores_are_reproducible_per_seed() -> None:
    assert np.array_equal(random_scores(50, 3), random_scores(50, 3))
    assert not np.array_equal(random_scores(50, 3), random_scores(50, 4))


# MC dropout --------------------------------------------------------------------------------------------------
def test_convnet_without_dropout_keeps_its_recorded_kwargs_and_weights() -> None:
    """default dropout 0.0 must leave model artifacts byte-identical: same kwargs, same state dict."""
    torch.manual_seed(0)
    plain = build_model("convnet", (3, 13, 64), 10, width=16)
    assert plain.arch_kwargs == {"width": 16, "depth": 3, "norm": "instance"}
    torch.manual_seed(0)
    dropped = build_model("convnet", (3, 13, 64), 10, width=16, dropout=0.5)
    assert dropped.arch_kwargs["dropout"] == 0.5
    assert list(plain.state_dict()) == list(dropped.state_dict())
    for key, value in plain.state_dict().items():
        assert torch.equal(value, dropped.state_dict()[key])  # dropout draws no random numbers at build time


def test_mc_dropout_passes_differ_only_with_dropout_and_leave_the_model_as_found() -> None:
    x = np.random.default_rng(0).standard_normal((6, 3, 13, 64)).astype(np.float32)
    torch.manual_seed(0)
    model = build_model("convnet", (3, 13, 64), 10, width=16, dropout=0.5).eval()
    probs = mc_dropout_probs(model, x, passes=20, seed=1)
    assert probs.shape == (20, 6, 10) and np.allclose(probs.sum(axis=2), 1.0, atol=1e-5)
    assert np.abs(probs - probs[0]).max() > 1e-3  # the passes really differ
    assert bald(probs).min() > 0
    assert not model.training and not model.dropout.training
    assert np.array_equal(probs, mc_dropout_probs(model, x, passes=20, seed=1))  # seeded masks
    # the embedding shortcut gives exactly what full stochastic forward passes give
    full = mc_dropout_probs(torch.nn.Sequential(model), x, passes=20, seed=1)
    assert np.allclose(full, probs, atol=1e-6)
    torch.manual_seed(0)
    plain = build_model("convnet", (3, 13, 64), 10, width=16).eval()
    same = mc_dropout_probs(plain, x, passes=5, seed=1)
    assert np.allclose(same, same[0]) and np.allclose(bald(same), 0.0, atol=1e-9)


def test_mc_dropout_keeps_batch_norm_in_eval_mode() -> None:
    model = build_model("cnn4", (3, 13, 64), 10, widths=(8, 8, 8, 8), dropout=0.5).eval()
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    before = bn.running_mean.clone()
    x = 3 + np.random.default_rng(1).standard_normal((8, 3, 13, 64)).astype(np.float32)
    probs = mc_dropout_probs(model, x, passes=4)
    assert torch.equal(bn.running_mean, before) and not bn.training
    assert np.abs(probs - probs[0]).max() > 0


# the loop ----------------------------------------------------------------------------------------------------
def _pool(n_per_class: int = 30, n_classes: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), n_per_class)
    x = rng.standard_normal((len(y), 1, 8, 8)).astype(np.float32)
    x[:, 0, :2, :] += y[:, None, None]  # a learnable class signal
    order = rng.permutation(len(y))
    return x[order], y[order]


TINY = TrainConfig(arch_kwargs={"width": 8}, batch_size=16, max_samples=160, augment=False)


def test_round_schedule_is_geometric_and_hits_every_budget() -> None:
    assert round_schedule(10, 1620, 2.0, [100, 540, 1080]) == [
        10,
        20,
        40,
        80,
        100,
        160,
        320,
        540,
        640,
        1080,
        1280,
        1620,
    ]
    assert round_schedule(5, 5) == [5]


@pytest.mark.parametrize("acquisition", ["random", "entropy", "variation-ratios", "bald"])
def test_loop_respects_the_budget_starts_balanced_and_never_repeats(acquisition: str) -> None:
    x, y = _pool()
    rounds = []
    al = ActiveLearner(acquisition, budget=40, milestones=[15], initial=2, mc_passes=5, train_config=TINY, seed=3)
    al.fit(x, y, 3, on_round=lambda row, idx: rounds.append((row["labelled"], len(idx))))
    assert len(al.indices_) == 40 and len(set(al.indices_.tolist())) == 40
    assert np.bincount(y[al.indices_[:6]], minlength=3).tolist() == [2, 2, 2]
    assert al.schedule_ == [6, 12, 15, 24, 40] and [r[0] for r in rounds] == al.schedule_
    assert all(a == b for a, b in rounds)
    assert [h["labelled"] for h in al.history_] == al.schedule_
    assert np.array_equal(al.features_, x[al.indices_]) and np.array_equal(al.labels_, y[al.indices_])
    assert np.array_equal(al.labelled_at(15), al.indices_[:15])


def test_loop_is_deterministic_for_a_seed_and_resumes_exactly() -> None:
    x, y = _pool()
    make = lambda seed: ActiveLearner("bald", budget=30, initial=1, mc_passes=5, train_config=TINY, seed=seed)
    first = make(0).fit(x, y, 3)
    assert np.array_equal(first.indices_, make(0).fit(x, y, 3).indices_)
    assert not np.array_equal(first.indices_, make(1).fit(x, y, 3).indices_)
    # stop after two rounds, then continue from the recorded state
    state: dict = {"history": []}

    def keep(row, idx):
        if len(state["history"]) < 2:
            state["history"].append(row)
            state["indices"] = idx.tolist()

    make(0).fit(x, y, 3, on_round=keep)
    resumed = make(0).fit(x, y, 3, resume=state)
    assert np.array_equal(resumed.indices_, first.indices_)


def test_loop_refuses_impossible_budgets_and_unknown_acquisitions() -> None:
    x, y = _pool()
    with pytest.raises(KitError, match="smaller than the initial"):
        ActiveLearner("random", budget=4, initial=2, train_config=TINY).fit(x, y, 3)
    with pytest.raises(KitError, match="exceeds the pool"):
        ActiveLearner("random", budget=500, train_config=TINY).fit(x, y, 3)
    with pytest.raises(KitError, match="unknown acquisition"):
        ActiveLearner("margin", budget=10, train_config=TINY).fit(x, y, 3)
    with pytest.raises(KitError, match="dropout"):
        ActiveLearner("bald", budget=10, dropout=0.0, train_config=TINY).fit(x, y, 3)
    assert len(ActiveLearner("random", budget=0.5, train_config=TINY).fit(x, y, 3).indices_) == 45


# kit al on real FSDD ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fsdd_coreset(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A herding coreset (5/class) of the quick run's feature set: the 'distilled' extra row."""
    from kit.experiments.active_learning import QUICK_LIMIT_PER_CLASS
    from kit.pipeline import distill_coreset, load_training_set

    fs, loader = load_training_set("fsdd", data_dir, limit_per_class=QUICK_LIMIT_PER_CLASS, progress=False)
    coreset, _, _ = distill_coreset(fs, loader, "herding", 5, seed=0)
    path = tmp_path_factory.mktemp("al") / "herding5.kit"
    coreset.save(path)
    return path


def test_kit_al_quick_writes_the_table_and_plot_and_resumes(
    data_dir: Path, fsdd_coreset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "al"
    args = [
        "al",
        "fsdd",
        "--quick",
        "--data-dir",
        str(data_dir),
        "--out",
        str(out),
        "--coreset",
        str(fsdd_coreset),
        "--no-progress",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    table = results["tables"][0]
    assert table["columns"] == ["method", "% of training samples", "samples", "accuracy (mean ± std)"]
    rows = table["rows"]
    assert len(rows) == 4 * 3 + 2  # 4 acquisitions x (1/class, 20 %, 40 %), the coreset, the full data
    assert {r[0] for r in rows[:12]} == {"random", "max entropy", "variation ratios", "BALD"}
    assert [r[2] for r in rows[:3]] == [10, 60, 120] and [r[1] for r in rows[:3]] == ["3.3", "20.0", "40.0"]
    assert rows[12][0] == "distilled (herding, 5/class)" and rows[12][2] == 50
    assert rows[-1][:3] == ["full training data", "100", 300]
    for row in rows:
        mean = float(row[3].split(" ± ")[0])
        assert 0.0 <= mean <= 100.0
    assert float(rows[-1][3].split(" ± ")[0]) > 50  # the full data learns something real
    png = out / results["figures"][0]["file"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    cells = json.loads((out / "cells.json").read_text())
    assert all(cells[f"al/{m}/seed0"]["finished"] for m in ("random", "entropy", "variation-ratios", "bald"))
    bald_order = cells["al/bald/seed0"]["indices"]
    assert len(bald_order) == 120 == len(set(bald_order))
    config = json.loads((out / "config.json").read_text())
    assert config["experiment"] == "active_learning" and config["config"]["settings"]["seeds"] == [0]
    assert config["config"]["coresets"][0]["path"] == str(fsdd_coreset)

    # a second run finds every cell done: no acquisition, no training
    import kit.experiments.active_learning as experiment
    from distill import active

    def refuse(*_a, **_k):
        raise AssertionError("a finished cell was recomputed")

    monkeypatch.setattr(experiment, "_score", refuse)
    monkeypatch.setattr(active.ActiveLearner, "fit", refuse)
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert json.loads((out / "results.json").read_text())["tables"][0]["rows"] == rows


def test_kit_al_refuses_a_coreset_of_other_classes_in_one_line(
    data_dir: Path, fsdd_coreset: Path, tmp_path: Path
) -> None:
    coreset = Coreset.load(fsdd_coreset)
    coreset.classes = [f"word{i}" for i in range(len(coreset.classes))]
    bad = tmp_path / "other_classes.kit"
    coreset.save(bad)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kit.cli",
            "al",
            "fsdd",
            "--quick",
            "--data-dir",
            str(data_dir),
            "--out",
            str(tmp_path / "run"),
            "--coreset",
            str(bad),
            "--no-progress",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    message = proc.stderr.strip()
    assert "other_classes.kit" in message and "classes" in message and "\n" not in message
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "results.json").exists()


def test_kit_al_rejects_bad_options(tmp_path: Path) -> None:
    for args, needle in (
        (["--methods", "margin"], "--methods"),
        (["--budgets", "20,abc"], "--budgets"),
        (["--tiny", "0"], "--tiny"),
        (["--dropout", "0", "--methods", "bald"], "bald"),
    ):
        result = runner.invoke(app, ["al", "fsdd", "--quick", "--out", str(tmp_path / "r"), *args])
        assert result.exit_code != 0 and isinstance(result.exception, KitError), result.output
        assert needle in str(result.exception) and "\n" not in str(result.exception)
