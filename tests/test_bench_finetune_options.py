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
    for extra in (["--arch-kwargs", '{"size": "small"}'], ["--lr", "0.002"], ["--epochs", "5"]):
        with pytest.raises(SystemExit) as err:
            finetune.main(["--base", "plain", *extra])
        assert err.value.code == 2
        assert "need --base production" in capsys.readouterr().err


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
    convnet = {"base": "production", "arch": "convnet-mcu", "width": 28, "extra_train": []}
    assert "convnet-mcu width 28" in finetune._base_words(convnet) and "30 epochs" in finetune._base_words(convnet)
