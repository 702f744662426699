"""One briefly trained FSDD digit model and its exports, shared by the export/quantisation tests.

Why a cached helper and not two module fixtures: training plus each conversion costs seconds
(litert-torch and the torch ONNX exporter are slow to import), and tests/test_export_tflite.py
and tests/test_quantize.py need the same model; ``digits(data_dir)`` builds each artifact once
per test process, on first use.

The data are real: the official FSDD split, 30 clips per digit for training and the 300 clips of
the official test split (30 per digit), features normalised on the training clips. The model is
a ConvNet of width 32 (instance norm, the kit's default) trained for 4000 samples (batch 32, no
augmentation: about 125 steps, ~89 % test accuracy); the calibration coreset is a random
selection of 5 training clips per digit, a real coreset method of the kit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

TRAIN = {"arch_kwargs": {"width": 32}, "max_samples": 4000, "batch_size": 32, "augment": False, "seed": 0}
CORESET_IPC = 5


def with_realistic_batch_norm(arch: str, kwargs: dict, fs) -> torch.nn.Module:
    """An untrained ``arch`` on ``fs`` whose batch norms hold non-trivial statistics (from a pass
    over ``fs.x_train``) and affine terms, so folding them into the convolutions at export matters."""
    from kit.models import build_model  # lazy: as the rest of this module, only when a test asks

    torch.manual_seed(0)
    model = build_model(arch, fs.x_train.shape[1:], len(fs.classes), **kwargs)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # cumulative average over the pass below
            torch.nn.init.uniform_(module.weight, 0.5, 1.5)
            torch.nn.init.uniform_(module.bias, -0.2, 0.2)
    model.train()
    with torch.no_grad():
        model(torch.from_numpy(fs.x_train))
    return model.eval()


@dataclass
class Digits:
    root: Path
    fsdd: object  # kit.features.FeatureSet
    model: torch.nn.Module
    kit_path: Path
    coreset_path: Path
    calibration: np.ndarray  # the coreset features (normalised like the model's input)
    _cache: dict = field(default_factory=dict)

    def _once(self, key: str, build):
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    @property
    def fp32_tflite(self) -> Path:
        from deploy.export_tflite import export_tflite

        return self._once("fp32_tflite", lambda: export_tflite(self.kit_path, self.root / "digits.tflite"))

    @property
    def int8_tflite(self) -> Path:
        from deploy.export_tflite import export_tflite

        return self._once(
            "int8_tflite",
            lambda: export_tflite(
                self.kit_path, self.root / "digits.int8.tflite", int8=True, calibration=self.calibration
            ),
        )

    @property
    def fp32_onnx(self) -> Path:
        from deploy.export_onnx import export_onnx

        return self._once("fp32_onnx", lambda: export_onnx(self.kit_path, self.root / "digits.onnx"))

    @property
    def int8_onnx(self) -> Path:
        from deploy.quantize_onnx import quantize_onnx

        return self._once(
            "int8_onnx", lambda: quantize_onnx(self.fp32_onnx, self.root / "digits.int8.onnx", self.calibration)
        )

    def torch_outputs(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            logits, embedding = self.model.forward_with_embedding(torch.from_numpy(x))
        return logits.numpy(), embedding.numpy()


_BUILT: dict[Path, Digits] = {}


def digits(data_dir: Path, tmp_path_factory) -> Digits:
    """The shared model for ``data_dir`` (built on first call, under pytest's session temp dir)."""
    if data_dir not in _BUILT:
        _BUILT[data_dir] = _build(data_dir, tmp_path_factory.mktemp("digits"))
    return _BUILT[data_dir]


def _build(data_dir: Path, root: Path) -> Digits:
    from deploy.runtime.coreset import Coreset
    from distill import make_distiller
    from kit.features import load_feature_set
    from kit.models import save_model
    from kit.training import TrainConfig, train_model

    torch.set_num_threads(1)
    fsdd = load_feature_set("fsdd", data_dir, limit_per_class=30, progress=False)
    config = TrainConfig(**TRAIN)
    model = train_model(fsdd.x_train, fsdd.y_train, fsdd.n_classes, config, progress=False).eval()
    kit_path = save_model(
        root / "digits.kit",
        model,
        {
            "classes": fsdd.classes,
            "feature_config": fsdd.config,
            "normalizer": fsdd.normalizer,
            "train_config": config.to_dict(),
            "seed": 0,
            "metrics": {},
            "source": fsdd.source,
        },
    )
    selector = make_distiller("random", ipc=CORESET_IPC, seed=0).fit(
        fsdd.x_train, fsdd.y_train, n_classes=fsdd.n_classes
    )
    coreset = Coreset(
        selector.features_,
        selector.labels_,
        fsdd.classes,
        fsdd.config,
        fsdd.normalizer,
        "random",
        params={"ipc": CORESET_IPC},
        seed=0,
        source=fsdd.source,
    )
    coreset_path = coreset.save(root / "coreset.kit", dtype="float32")
    return Digits(root, fsdd, model, kit_path, coreset_path, np.ascontiguousarray(coreset.features))
