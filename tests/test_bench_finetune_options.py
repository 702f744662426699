"""``bench.finetune``'s production-base options: another architecture (DS-CNN) for the base model.

Why: the on-device learning targets depend on the backbone's embedding, so the benchmark must be
able to rerun on the production DS-CNN as well as the MCU ConvNet, refuse options that its plain
base would silently ignore, and say in its report which base it measured.
"""

from __future__ import annotations

import pytest

from bench import finetune


def test_arch_kwargs_must_be_a_json_object(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as err:
        finetune.main(["--arch-kwargs", "[1, 2]"])
    assert err.value.code == 2
    assert "must be a JSON object" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        finetune.main(["--arch-kwargs", "{size: small}"])
    assert "not JSON" in capsys.readouterr().err


def test_base_options_need_the_production_base(capsys: pytest.CaptureFixture[str]) -> None:
    for extra in (
        ["--arch-kwargs", '{"size": "small"}'],
        ["--lr", "0.002"],
        ["--epochs", "5"],
        ["--unknown-words-share", "0.7"],
    ):
        with pytest.raises(SystemExit) as err:
            finetune.main(["--base", "plain", *extra])
        assert err.value.code == 2
        assert "need --base production" in capsys.readouterr().err


def test_unknown_words_share_must_lie_in_the_open_unit_interval(capsys: pytest.CaptureFixture[str]) -> None:
    for value in ("0", "1", "1.5"):
        with pytest.raises(SystemExit) as err:
            finetune.main(["--unknown-words-share", value])
        assert err.value.code == 2
        assert "--unknown-words-share must lie in (0, 1)" in capsys.readouterr().err


def entry(drop: float, acc: float) -> dict:
    """A summary entry with only what ``new_weight_frontier`` reads."""
    return {"old_drop_points": {"mean": drop}, "new_accuracy": {"mean": acc}}


def test_new_weight_frontier_orders_the_weight_variants() -> None:
    summary = {
        "10/new_weight=2.5": entry(3.1, 90.6),
        "10/new_weight=1": entry(1.0, 64.2),
        "10/replay": entry(3.1, 90.6),
        "5/new_weight=1": entry(0.9, 50.9),
        "10/new_weight=1.5": entry(1.9, 78.4),
        "10/synthetic=20": entry(3.2, 89.8),
        "10/synthetic=20,new_weight=2": entry(2.5, 89.8),
        "10/synthetic=20,new_weight=1.5": entry(1.6, 87.4),
    }
    assert finetune.new_weight_frontier(summary, 10) == [(1.0, 1.0, 64.2), (1.5, 1.9, 78.4), (2.5, 3.1, 90.6)]
    assert finetune.new_weight_frontier(summary, 5) == [(1.0, 0.9, 50.9)]
    # the family with synthetic clips (the plot's second curve) is apart from the plain one
    assert finetune.new_weight_frontier(summary, 10, "synthetic=20,") == [(1.5, 1.6, 87.4), (2.0, 2.5, 89.8)]


def test_the_report_names_the_base_it_measured() -> None:
    dscnn = {
        "base": "production",
        "arch": "dscnn-mcu",
        "width": 28,
        "arch_kwargs": {"size": "small"},
        "lr": 0.002,
        "epochs": 40,
        "extra_train": ["/data/speech_commands_train"],
    }
    words = finetune._base_words(dscnn)
    assert "dscnn-mcu size small" in words and "40 epochs" in words and "lr 0.002" in words
    assert "width" not in words
    assert "unknown-words share" not in words
    assert "unknown-words share 0.7" in finetune._base_words({**dscnn, "word_head": 0.5, "unknown_words_share": 0.7})
    convnet = {"base": "production", "arch": "convnet-mcu", "width": 28, "extra_train": []}
    assert "convnet-mcu width 28" in finetune._base_words(convnet) and "30 epochs" in finetune._base_words(convnet)


def test_synthetic_variants_run_end_to_end_and_only_where_an_engine_is(tmp_path, monkeypatch) -> None:
    """The ``--synthetic`` variants go through ``add_keyword`` (they need the WAV-to-bundle path), and a
    machine without espeak-ng or flite runs the other variants instead of failing."""
    synthetic = [name for name, options in finetune.VARIANTS.items() if "synthetic" in options]
    assert synthetic and all(finetune.runs_end_to_end(name) for name in synthetic)
    assert finetune.runs_end_to_end("replay") and not finetune.runs_end_to_end("new_weight=1.5")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert set(finetune.runnable_variants()) == set(finetune.VARIANTS) - set(synthetic)
