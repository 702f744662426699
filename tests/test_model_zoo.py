"""The model zoo: ResNet-18, VGG11 and DS-CNN beside the ConvNet and the 4-layer CNN.

Every architecture must take the kit's feature maps (13 MFCC coefficients are tiny for an image
network), keep the KitModel contract (embed/forward/spec) so training, the artifact and the
exports work unchanged, and learn on real recordings. Real data: FSDD, 30 clips per digit.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from kit.cli import app
from kit.errors import KitError
from kit.models import build_model, count_macs, count_parameters, load_model, save_model
from kit.models.zoo import zoo_variants

#: (arch, kwargs) of every network of the zoo, at widths a test can afford
ZOO = [
    ("convnet", {"width": 32}),
    ("cnn4", {"widths": [16, 16, 32, 32]}),
    ("resnet18", {"width": 8}),
    ("vgg11", {"width": 8}),
    ("dscnn", {"size": "small"}),
    ("dscnn", {"size": "medium"}),
]
SHAPES = [(3, 13, 64), (1, 40, 64), (3, 13, 160), (1, 13, 64)]


@pytest.fixture(scope="module")
def fsdd(data_dir: Path):
    from kit.pipeline import load_training_set

    torch.set_num_threads(1)
    fs, _ = load_training_set("fsdd", data_dir, limit_per_class=30, progress=False)
    return fs


@pytest.mark.parametrize("arch,kwargs", ZOO)
def test_every_arch_takes_every_feature_shape(arch: str, kwargs: dict) -> None:
    for shape in SHAPES:
        torch.manual_seed(0)
        model = build_model(arch, shape, 12, **kwargs).eval()
        x = torch.randn(3, *shape)
        logits, embedding = model.forward_with_embedding(x)
        assert logits.shape == (3, 12) and embedding.shape == (3, model.embedding_dim)
        assert torch.allclose(model(x), logits, atol=1e-5) and torch.isfinite(logits).all()
        assert count_parameters(model) > 0 and count_macs(model) > 0
    if arch != "convnet":  # global pooling: one network takes any length, and 160 frames cost more than 64
        short = build_model(arch, (3, 13, 64), 12, **kwargs)
        assert count_macs(short, (3, 13, 160)) > count_macs(short)


def test_resnet_vgg_keep_13_coefficients_alive_and_follow_width() -> None:
    # stride/pool only along axes that can take it: a (1, 1, 8) map still runs, no empty tensor
    for arch in ("resnet18", "vgg11"):
        tiny = build_model(arch, (1, 1, 8), 2, width=4)
        assert tiny(torch.randn(2, 1, 1, 8)).shape == (2, 2)
        narrow, wide = build_model(arch, (3, 13, 64), 10, width=8), build_model(arch, (3, 13, 64), 10, width=16)
        # parameters scale ~ width^2 (convolutions dominate)
        assert 3.0 < count_parameters(wide) / count_parameters(narrow) < 4.2
        assert wide.embedding_dim == 8 * 16 and narrow.arch_kwargs == {"width": 8, "norm": "batch"}
    blocks = [
        m for m in build_model("resnet18", (3, 13, 64), 10, width=8).modules() if type(m).__name__ == "BasicBlock"
    ]
    assert len(blocks) == 8
    convs = [m for m in build_model("vgg11", (3, 13, 64), 10, width=8).modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 8
    # the stem is a 3x3 stride-1 convolution, not the ImageNet 7x7 stride 2
    stem = next(m for m in build_model("resnet18", (3, 13, 64), 10).modules() if isinstance(m, nn.Conv2d))
    assert stem.kernel_size == (3, 3) and stem.stride == (1, 1)


def test_dscnn_matches_hello_edge_and_counts_depthwise_macs() -> None:
    # the paper's input: 49 frames x 10 MFCC, 1 channel, 12 classes
    small = build_model("dscnn", (1, 10, 49), 12, size="small")
    params, macs = count_parameters(small), count_macs(small)
    # Hello Edge reports 38.6 KB of memory (int8 weights + activations) and 5.4 M operations
    # (= ~2.7 M MACs) for DS-CNN-S; this layout (4 DS blocks of 64 channels) has ~23 K weights
    assert 20_000 < params < 40_000
    assert 2_000_000 < macs < 3_000_000
    depthwise = [m for m in small.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert len(depthwise) == 4 and all(m.groups == m.in_channels == 64 for m in depthwise)
    medium = build_model("dscnn", (1, 10, 49), 12, size="medium")
    assert medium.embedding_dim == 172 and 100_000 < count_parameters(medium) < 200_000
    # a depthwise conv costs H*W*C*9 MACs, not H*W*C*C*9: counted on one layer by hand
    conv = nn.Conv2d(8, 8, 3, padding=1, groups=8)
    holder = build_model("dscnn", (8, 5, 7), 2, channels=8, blocks=0)
    holder.body = nn.Sequential(conv, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    assert count_macs(holder, (8, 5, 7)) == 5 * 7 * 8 * 9 + 8 * 2
    with pytest.raises(KitError, match="unknown dscnn size 'huge'"):
        build_model("dscnn", (3, 13, 64), 10, size="huge")
    with pytest.raises(KitError, match="unknown norm"):
        build_model("resnet18", (3, 13, 64), 10, norm="layer")


@pytest.mark.parametrize("arch,kwargs", [z for z in ZOO if z[1].get("size") != "medium"])
def test_each_arch_learns_real_digits_and_round_trips_as_an_artifact(
    fsdd, tmp_path: Path, arch: str, kwargs: dict
) -> None:
    from kit.training import TrainConfig, evaluate, train_model
    from kit.training.targets import classification_loss

    config = TrainConfig(arch=arch, arch_kwargs=kwargs, max_samples=1500, batch_size=32, lr=3e-3, seed=0)
    x, y = torch.from_numpy(fsdd.x_train), torch.from_numpy(fsdd.y_train)
    torch.manual_seed(config.seed)  # the very initial weights train_model starts from
    untrained = build_model(arch, fsdd.x_train.shape[1:], 10, **kwargs)
    untrained.train()  # batch statistics: eval mode would use BatchNorm's untouched running stats
    with torch.no_grad():
        before = float(classification_loss(untrained(x), y))
    model = train_model(fsdd.x_train, fsdd.y_train, 10, config, progress=False)
    with torch.no_grad():
        after = float(classification_loss(model(x), y))
    accuracy = evaluate(model, fsdd.x_test, fsdd.y_test)["accuracy"]
    assert after < 0.8 * before, f"{arch}: training loss {before:.3f} -> {after:.3f}"
    assert accuracy > 0.3, f"{arch}: {accuracy:.2f} test accuracy on 10 digits"

    path = save_model(
        tmp_path / f"{arch}.kit",
        model,
        {"classes": fsdd.classes, "feature_config": fsdd.config, "normalizer": fsdd.normalizer},
    )
    loaded, meta = load_model(path)
    assert meta["arch"] == arch and type(loaded) is type(model) and loaded.arch_kwargs == model.arch_kwargs
    with torch.no_grad():
        assert torch.allclose(loaded(x[:20]), model(x[:20]), atol=1e-5)


def test_dscnn_exports_to_onnx_and_int8_tflite(fsdd, tmp_path: Path) -> None:
    from deploy.export_onnx import export_onnx
    from deploy.export_tflite import export_tflite
    from deploy.runtime.models import open_model
    from kit.training import TrainConfig, train_model

    config = TrainConfig(arch="dscnn", max_samples=1500, batch_size=32, lr=3e-3)
    model = train_model(fsdd.x_train, fsdd.y_train, 10, config, progress=False)
    kit = save_model(
        tmp_path / "dscnn.kit",
        model,
        {"classes": fsdd.classes, "feature_config": fsdd.config, "normalizer": fsdd.normalizer},
    )
    calibration = np.concatenate([fsdd.x_train[fsdd.y_train == c][:5] for c in range(10)])
    with torch.no_grad():
        reference = model(torch.from_numpy(fsdd.x_test)).numpy().argmax(1)
    onnx = open_model(export_onnx(kit, tmp_path / "dscnn.onnx"))
    assert (onnx.predict(fsdd.x_test).argmax(1) == reference).mean() > 0.99
    int8_path = export_tflite(kit, tmp_path / "dscnn.int8.tflite", int8=True, calibration=calibration)
    int8 = open_model(int8_path)
    assert (int8.predict(fsdd.x_test).argmax(1) == reference).mean() > 0.9
    # the product target: an int8 keyword model of at most 64 KB (~28 K weights + graph + metadata)
    assert int8_path.stat().st_size < 80_000


def test_kit_models_lists_the_zoo() -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["models", "--input-shape", "3,13,64", "--classes", "12", "--json", "--no-mcu"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    rows = {(r["arch"], r["variant"]): r for r in data["models"]}
    assert {"convnet", "cnn4", "resnet18", "vgg11", "dscnn"} <= {arch for arch, _ in rows}
    assert len(rows) == len(zoo_variants())
    small = rows[("dscnn", "small")]
    assert small["parameters"] == count_parameters(build_model("dscnn", (3, 13, 64), 12))
    assert small["macs"] == count_macs(build_model("dscnn", (3, 13, 64), 12))
    assert small["fp32_bytes"] == 4 * small["parameters"]
    assert rows[("resnet18", "width 64")]["parameters"] > 10_000_000 > rows[("resnet18", "width 16")]["parameters"]
    table = runner.invoke(app, ["models", "--input-shape", "1,40,64", "--no-mcu"])
    assert table.exit_code == 0 and "dscnn" in table.output and "MACs" in table.output and "1x40x64" in table.output
    bad = runner.invoke(app, ["models", "--input-shape", "3,13"])
    assert bad.exit_code != 0 and isinstance(bad.exception, KitError) and "--input-shape" in str(bad.exception)
