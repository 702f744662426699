"""Quantisation-aware fine-tuning: a few epochs with torch's fake quantisation, for when post-training
int8 still changes answers.

Why: post-training int8 rounds every weight and activation once, after training; where a model's
decision sits close to a rounding step its answer flips (the kws10 int8 TFLite agreed with fp32 on
only 97.8 % of test clips). Fine-tuning with the rounding simulated in the forward pass
(``torch.ao.quantization.FakeQuantize``, straight-through gradients) moves the weights to where
int8 gives the same answers. How, without changing the architecture or the exporters:

* every convolution's and linear layer's weight is fake-quantised per output channel, symmetric
  int8 (what both exporters use for weights), through ``torch.nn.utils.parametrize``;
* the input of every such layer and the logits are fake-quantised per tensor (8-bit affine, as the
  activations are), through forward hooks;
* batch-norm statistics stay frozen (the exporters fold them into the convolutions) and the
  learning rate is small, so the fine-tuning corrects rounding, not the task.

Afterwards hooks and parametrisations are removed, keeping the float weights the fake-quant path
trained, and the model goes through the usual export, calibrated on real clips
(``calibration.py``). The result is a plain model of the same architecture and artifact format.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.ao.quantization import FakeQuantize, MovingAverageMinMaxObserver, MovingAveragePerChannelMinMaxObserver
from torch.nn.utils import parametrize

from deploy.runtime.compat import renormalize

from .source import load_model_feature_set, model_dataset_name


class _WeightFakeQuant(nn.Module):
    """A parametrisation: the weight as per-channel symmetric int8 would store it."""

    def __init__(self) -> None:
        super().__init__()
        self.fq = FakeQuantize(
            observer=MovingAveragePerChannelMinMaxObserver,
            quant_min=-127,
            quant_max=127,
            dtype=torch.qint8,
            qscheme=torch.per_channel_symmetric,
            ch_axis=0,
        )

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return self.fq(weight)


def _activation_fq() -> FakeQuantize:
    return FakeQuantize(
        observer=MovingAverageMinMaxObserver,
        quant_min=0,
        quant_max=255,
        dtype=torch.quint8,
        qscheme=torch.per_tensor_affine,
    )


def _layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def qat_finetune(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int = 3,
    lr: float = 1e-4,
    batch_size: int = 128,
    seed: int = 0,
    label_smoothing: float = 0.0,
) -> dict[str, Any]:
    """Fine-tune ``model`` in place with fake quantisation on (x, y); returns what it did.

    ``x``: normalised features (N, C, F, T); ``y``: hard labels (N,).
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    handles = []
    fakes: list[FakeQuantize] = []
    for layer in _layers(model):
        parametrize.register_parametrization(layer, "weight", _WeightFakeQuant())
        fq = _activation_fq()
        fakes.append(fq)
        handles.append(layer.register_forward_pre_hook(lambda _m, args, fq=fq: (fq(args[0]),) + tuple(args[1:])))
    out_fq = _activation_fq()
    handles.append(model.register_forward_hook(lambda _m, _a, out: out_fq(out)))
    model.add_module("_qat_fakes", nn.ModuleList([*fakes, out_fq]))  # moved and switched with the model
    optimiser = torch.optim.Adam([p for n, p in model.named_parameters() if "_qat_fakes" not in n], lr=lr)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    xt, yt = torch.from_numpy(np.ascontiguousarray(x, np.float32)), torch.from_numpy(np.asarray(y, np.int64))
    losses = []
    try:
        for _ in range(epochs):
            model.train()
            for m in model.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()  # frozen statistics: folded into the convolutions at export
            for start in range(0, len(xt), batch_size):
                idx = torch.from_numpy(rng.permutation(len(xt))[start : start + batch_size])
                optimiser.zero_grad()
                loss = loss_fn(model(xt[idx]), yt[idx])
                loss.backward()
                optimiser.step()
                losses.append(float(loss.detach()))
    finally:
        for handle in handles:
            handle.remove()
        for layer in _layers(model):
            if parametrize.is_parametrized(layer, "weight"):
                # keep the weights as the fake-quant path trained them (already on the int8 grid)
                parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
        del model._qat_fakes
        model.eval()
    return {
        "epochs": epochs,
        "lr": lr,
        "batch_size": batch_size,
        "steps": len(losses),
        "n": int(len(xt)),
        "final_loss": float(np.mean(losses[-20:])) if losses else None,
        "seed": seed,
    }


def qat_for_int8(
    model: nn.Module,
    meta: dict[str, Any],
    data_dir: Any = None,
    *,
    epochs: int = 2,
    clips: int = 8000,
    lr: float = 1e-4,
    seed: int = 0,
) -> dict[str, Any]:
    """Fine-tune ``model`` in place on up to ``clips`` clean training clips of its own dataset (its ``source``).

    The features come through the kit's feature cache in the model's input space; returns what
    ``qat_finetune`` did plus the dataset it used (for the model's ``train_config``).
    """

    fs, space = load_model_feature_set(meta, data_dir, "--qat-epochs")
    x = renormalize(fs.x_train, fs.normalizer, space.normalizer)
    pick = np.random.default_rng(seed).permutation(len(x))[:clips]
    done = qat_finetune(model, x[pick], fs.y_train[pick], epochs=epochs, lr=lr, seed=seed)
    return {**done, "dataset": model_dataset_name(meta, "--qat-epochs")}
