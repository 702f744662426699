"""Training: augmentation, seeded determinism, real accuracy on FSDD, soft labels, runs, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from deploy.runtime.coreset import Coreset
from deploy.runtime.errors import KitError
from kit.cli import app, main
from kit.features import load_feature_set
from kit.models import load_model
from kit.training import (
    TrainConfig,
    augment_batch,
    classification_loss,
    evaluate,
    prepare_targets,
    train_eval_seeds,
    train_model,
    write_run,
)

SMALL = TrainConfig(arch_kwargs={"width": 16}, max_samples=400)


@pytest.fixture(scope="module")
def fsdd(data_dir: Path):
    """10 train + 10 test clips per digit of the real FSDD recordings (official split)."""
    return load_feature_set("fsdd", data_dir, limit_per_class=10, progress=False)


def test_augmentation_is_vectorised_seeded_and_bounded() -> None:
    x = torch.randn(64, 3, 13, 64)
    a = augment_batch(x, torch.Generator().manual_seed(1))
    b = augment_batch(x, torch.Generator().manual_seed(1))
    c = augment_batch(x, torch.Generator().manual_seed(2))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(x, x.clone()), "input must not be modified"
    # masks: every clip has at most 10 zeroed frames and 3 zeroed coefficients beyond those
    zero_frames = (a == 0).all(dim=(1, 2)).sum(dim=1)
    zero_coeffs = (a == 0).all(dim=(1, 3)).sum(dim=1)
    assert zero_frames.max() <= 10 and zero_coeffs.max() <= 3
    assert zero_frames.float().mean() > 2 and zero_coeffs.float().mean() > 0.5
    # shift only: each clip is a circular roll of itself by at most 8 frames, and shifts vary
    shifted = augment_batch(x, torch.Generator().manual_seed(3), max_time_mask=0, max_freq_mask=0)
    shifts = []
    for i in range(len(x)):
        match = [s for s in range(-8, 9) if torch.equal(torch.roll(x[i], s, dims=-1), shifted[i])]
        assert match, f"clip {i} is not a circular shift within +-8 frames"
        shifts.append(match[0])
    assert len(set(shifts)) > 5


def test_config_step_budget() -> None:
    config = TrainConfig(epochs=300, max_samples=16_000)  # batch_size=None: chosen from the set's size
    assert config.effective_batch(10) == 10 and config.effective_batch(256) == 256
    assert config.effective_batch(257) == 64 and config.effective_batch(5000) == 64
    assert config.total_steps(10) == 300  # 1 clip/class: all 300 epochs (3 000 clips seen)
    assert config.total_steps(100) == 160  # 10/class: one batch of 100, capped by the sample budget
    assert config.total_steps(500) == 250  # 50/class: minibatches of 64, ceil(16000 / 64)
    assert TrainConfig(batch_size=256).total_steps(500) == 63  # an explicit batch is kept: ceil(16000 / 256)
    assert TrainConfig(max_samples=None, max_steps=7).total_steps(500) == 7
    assert TrainConfig(max_samples=None).total_steps(500) == 300 * 8  # 300 epochs of ceil(500 / 64) batches
    with pytest.raises(KitError):
        TrainConfig(batch_size=0)
    with pytest.raises(KitError):
        TrainConfig(epochs=0)


def test_learning_rate_schedules() -> None:
    step = TrainConfig(lr=0.01)
    assert [step.learning_rate(s, 100) for s in (0, 49, 50, 99)] == [0.01, 0.01, 0.001, 0.001]
    assert TrainConfig(lr=0.01, lr_decay_at=0.0).learning_rate(99, 100) == 0.01  # decay at step 0: never decays
    cosine = TrainConfig(lr=0.01, lr_schedule="cosine")
    rates = np.array([cosine.learning_rate(s, 1000) for s in range(1000)])
    warmup = int(1000 * 0.05)
    assert np.all(np.diff(rates[:warmup]) > 0) and rates[0] < 0.001  # warms up from near 0 ...
    assert np.isclose(rates[warmup], 0.01) and rates.max() <= 0.01  # ... to the peak ...
    assert np.all(np.diff(rates[warmup:]) <= 0) and rates[-1] < 1e-6  # ... then falls to about 0
    assert np.isclose(rates[warmup + (1000 - warmup) // 2], 0.005, rtol=0.01)  # half-way down: half the peak
    for bad in ({"lr_schedule": "linear"}, {"optimizer": "lamb"}, {"weight_decay": -1.0}):
        with pytest.raises(KitError, match="--" + next(iter(bad)).replace("_", "-")):
            TrainConfig(**bad)


def test_optimizers_and_schedule_change_training(fsdd) -> None:
    from kit.training import make_optimizer

    net = torch.nn.Linear(3, 2)
    assert type(make_optimizer(net, TrainConfig(optimizer="adamw", weight_decay=0.05))) is torch.optim.AdamW
    assert type(make_optimizer(net, TrainConfig(optimizer="adam"))) is torch.optim.Adam
    config = TrainConfig(arch_kwargs={"width": 32}, max_samples=3000)
    base = train_model(fsdd.x_train, fsdd.y_train, 10, config, progress=False).state_dict()
    for change in ({"lr_schedule": "cosine"}, {"optimizer": "adamw", "weight_decay": 0.05}):
        model = train_model(fsdd.x_train, fsdd.y_train, 10, config.with_(**change), progress=False)
        assert any(not torch.equal(base[k], v) for k, v in model.state_dict().items()), change
        assert evaluate(model, fsdd.x_test, fsdd.y_test)["accuracy"] >= 0.3, change  # still learns (chance: 0.1)


def test_targets_and_losses() -> None:
    logits = torch.randn(6, 4)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    one_hot = F.one_hot(y, 4).float()
    assert torch.allclose(
        classification_loss(logits, prepare_targets(one_hot, 6, 4)), F.cross_entropy(logits, y), atol=1e-6
    )
    raw = np.random.default_rng(0).standard_normal((6, 4))  # e.g. kernel-regression label scores
    targets = prepare_targets(raw, 6, 4)
    assert torch.allclose(targets.sum(1), torch.ones(6)) and (targets > 0).all()
    with pytest.raises(KitError, match="labels must lie"):
        prepare_targets(np.array([0, 5]), 2, 4)
    with pytest.raises(KitError, match="soft labels"):
        prepare_targets(np.zeros((2, 3)), 2, 4)


def test_training_is_deterministic_for_a_seed(fsdd) -> None:
    runs = [train_model(fsdd.x_train, fsdd.y_train, 10, SMALL.with_(seed=s), progress=False) for s in (5, 5, 6)]
    states = [r.state_dict() for r in runs]
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0]), "same seed must give identical weights"
    assert any(not torch.equal(states[0][k], states[2][k]) for k in states[0]), "another seed must differ"
    stats = runs[0].train_stats
    assert stats["steps"] == SMALL.total_steps(100) and stats["samples_seen"] == 400 and stats["samples_per_s"] > 0


def test_training_beats_chance_on_real_fsdd(fsdd) -> None:
    config = TrainConfig(arch_kwargs={"width": 32}, max_samples=2000)
    model = train_model(fsdd.x_train, fsdd.y_train, 10, config, progress=False)
    result = evaluate(model, fsdd.x_test, fsdd.y_test)
    assert result["accuracy"] >= 0.35, f"accuracy {result['accuracy']:.2f} is not clearly above chance (0.10)"
    confusion = result["confusion"]
    assert confusion.shape == (10, 10) and confusion.sum() == len(fsdd.y_test) == result["n"]
    assert np.isclose(np.trace(confusion) / confusion.sum(), result["accuracy"])
    assert np.array_equal(np.bincount(fsdd.y_test, minlength=10), confusion.sum(axis=1))


def test_soft_labels_train(fsdd) -> None:
    soft = np.full((len(fsdd.y_train), 10), 0.1 / 9, dtype=np.float32)
    soft[np.arange(len(soft)), fsdd.y_train] = 0.9
    config = TrainConfig(arch_kwargs={"width": 32}, max_samples=2000)
    model = train_model(fsdd.x_train, soft, 10, config, progress=False)
    assert evaluate(model, fsdd.x_test, fsdd.y_test)["accuracy"] >= 0.35
    # evaluate accepts soft test labels too (argmax)
    assert evaluate(model, fsdd.x_test[:5], np.eye(10)[fsdd.y_test[:5]])["n"] == 5


def test_train_eval_seeds_reports_mean_and_std(fsdd) -> None:
    config = TrainConfig(arch_kwargs={"width": 8}, max_samples=200)
    result = train_eval_seeds(
        fsdd.x_train, fsdd.y_train, fsdd.x_test, fsdd.y_test, 10, config, seeds=(0, 1, 2), progress=False
    )
    accs = [row["accuracy"] for row in result["per_seed"]]
    assert [row["seed"] for row in result["per_seed"]] == [0, 1, 2]
    assert np.isclose(result["mean"], np.mean(accs)) and np.isclose(result["std"], np.std(accs))
    assert result["n_test"] == len(fsdd.y_test) and "models" not in result


def test_write_run_is_atomic_json(tmp_path) -> None:
    run = write_run(
        tmp_path / "run", {"seeds": [0, 1], "path": Path("x")}, {"mean": np.float32(0.5), "acc": np.array([0.5, 0.5])}
    )
    assert json.loads((run / "config.json").read_text()) == {"seeds": [0, 1], "path": "x"}
    assert json.loads((run / "metrics.json").read_text()) == {"mean": 0.5, "acc": [0.5, 0.5]}
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "metrics.json"]


def test_kit_train_and_eval_cli(fsdd, data_dir: Path, tmp_path: Path) -> None:
    picks = np.concatenate([np.flatnonzero(fsdd.y_train == c)[:2] for c in range(10)])
    coreset_path = tmp_path / "random2.kit"
    Coreset(
        fsdd.x_train[picks],
        fsdd.y_train[picks],
        fsdd.classes,
        fsdd.config,
        fsdd.normalizer,
        method="random",
        source=fsdd.source,
    ).save(coreset_path)
    run_dir = tmp_path / "run"
    runner = CliRunner()
    args = [
        "train",
        str(coreset_path),
        "--width",
        "8",
        "--seeds",
        "0,1,2",
        "--max-samples",
        "200",
        "--data-dir",
        str(data_dir),
        "--test-limit",
        "10",
        "--out",
        str(run_dir),
        "--quiet",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "±" in result.output and "3 seed(s)" in result.output
    metrics = json.loads((run_dir / "metrics.json").read_text())
    config = json.loads((run_dir / "config.json").read_text())
    assert [row["seed"] for row in metrics["per_seed"]] == [0, 1, 2]
    assert metrics["test"]["n_test"] == 100 and metrics["test"]["dataset_matches"] is True
    assert np.isclose(metrics["mean"], np.mean(metrics["accuracies"])) and 0.0 <= metrics["std"] <= 0.5
    assert config["train"]["arch_kwargs"] == {"width": 8} and config["n_coreset"] == 20
    model, meta = load_model(run_dir / "model.kit")
    assert meta["seed"] == 0 and meta["classes"] == fsdd.classes and meta["source"]["split"] == "official"
    assert np.isclose(meta["metrics"]["accuracy"], metrics["per_seed"][0]["accuracy"])
    # kit eval on the same 100 test clips reproduces the seed-0 accuracy
    result = runner.invoke(
        app,
        ["eval", str(run_dir / "model.kit"), "--data-dir", str(data_dir), "--test-limit", "10", "--json", "--quiet"],
    )
    assert result.exit_code == 0, result.output
    assert np.isclose(json.loads(result.output)["accuracy"], metrics["per_seed"][0]["accuracy"])


def test_kit_train_user_errors_are_one_line(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["train", str(tmp_path / "missing.kit")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "missing.kit" in err and "\n" not in err and "Traceback" not in err
    with pytest.raises(SystemExit):
        main(["train", str(tmp_path / "missing.kit"), "--seeds", "a,b"])
    assert "--seeds" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", str(tmp_path / "missing.kit"), "--teacher", str(tmp_path / "t.kit")])
    assert "--teacher applies to kit train DATASET" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", str(tmp_path / "missing.kit"), "--feature", "log_mel"])
    assert "--feature applies to kit train DATASET" in capsys.readouterr().err


def test_dataset_reference_reads_every_source_form() -> None:
    from kit.training import dataset_reference

    assert dataset_reference({"dataset_name": "/data/my_words", "dataset": {"name": "my_words"}}) == "/data/my_words"
    assert dataset_reference({"dataset": {"name": "fsdd", "sha256": "ab"}}) == "fsdd"
    assert dataset_reference({"dataset": "speech_commands"}) == "speech_commands"
    with pytest.raises(KitError, match="--dataset"):
        dataset_reference({})
