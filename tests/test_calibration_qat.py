"""Int8 that keeps the answer: calibration on real training clips (``kit.training.calibration``) and
quantisation-aware fine-tuning (``kit.training.qat``), on the real FSDD digit model of
``export_fixtures`` (300 test clips of the official split)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from export_fixtures import digits
from torch.nn.utils import parametrize

from deploy.export_tflite import export_tflite
from deploy.runtime.errors import KitError
from deploy.runtime.models import open_model
from kit.models import load_model
from kit.training.calibration import calibration_set
from kit.training.qat import qat_finetune


@pytest.fixture(scope="module")
def model(data_dir: Path, tmp_path_factory):
    return digits(data_dir, tmp_path_factory)


def _agreement(path: Path, x: np.ndarray, reference: np.ndarray) -> float:
    return float((open_model(path).run(x)["logits"].argmax(1) == reference.argmax(1)).mean())


def test_training_clip_calibration_agrees_with_fp32_at_least_as_well_as_the_coreset(
    model, data_dir: Path, tmp_path: Path
) -> None:
    _, meta = load_model(model.kit_path)
    clips = calibration_set(meta, data_dir, n=200, seed=0)
    assert clips.shape == (200, *model.fsdd.x_test.shape[1:]) and np.isfinite(clips).all()
    # half augmented: the calibration set reaches quieter / noisier inputs than the clean coreset does
    assert clips.std() > 0.5 * model.calibration.std()
    x = model.fsdd.x_test
    reference, _ = model.torch_outputs(x)
    with_coreset = _agreement(model.int8_tflite, x, reference)
    with_clips = _agreement(
        export_tflite(model.kit_path, tmp_path / "clips.int8.tflite", int8=True, calibration=clips), x, reference
    )
    assert with_clips >= with_coreset, (with_clips, with_coreset)
    assert with_clips >= 0.99


def test_calibration_data_needs_a_dataset(model, data_dir: Path) -> None:
    _, meta = load_model(model.kit_path)
    with pytest.raises(KitError, match="--calibration-data"):
        calibration_set({**meta, "source": {}}, data_dir, n=10)


def test_qat_leaves_a_plain_model_with_int8_grid_weights_that_still_works(model) -> None:
    torch.manual_seed(0)
    net = copy.deepcopy(model.model)
    fs = model.fsdd
    done = qat_finetune(net, fs.x_train, fs.y_train, epochs=1, lr=1e-4, batch_size=32, seed=0)
    assert done["steps"] == int(np.ceil(len(fs.x_train) / 32))
    convs = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert convs and not any(parametrize.is_parametrized(m) for m in convs) and not hasattr(net, "_qat_fakes")
    old = [m for m in model.model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert any(not torch.equal(a.weight, b.weight) for a, b in zip(convs, old, strict=True))  # it did fine-tune
    assert np.isfinite(done["final_loss"])
    with torch.no_grad():
        before = (model.model(torch.from_numpy(fs.x_test)).argmax(1).numpy() == fs.y_test).mean()
        after = (net(torch.from_numpy(fs.x_test)).argmax(1).numpy() == fs.y_test).mean()
    assert after >= before - 0.05, (before, after)
