"""Models: shapes, embeddings, the registry, size/compute counts, and the no-pickle model artifact."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
import torch
from torch import nn

from deploy.runtime.coreset import Normalizer
from deploy.runtime.errors import KitError
from deploy.runtime.features import FeatureConfig
from kit.models import (
    KitModel,
    available_archs,
    build_model,
    count_macs,
    count_parameters,
    load_model,
    rebuild_model,
    register_arch,
    save_model,
)

SHAPES = [(3, 13, 64), (1, 40, 64)]


@pytest.mark.parametrize("arch", ["convnet", "cnn4"])
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_and_embed_shapes(arch: str, shape: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    model = build_model(arch, shape, 7).eval()
    x = torch.randn(5, *shape)
    logits, z = model(x), model.embed(x)
    assert logits.shape == (5, 7)
    assert z.shape == (5, model.embedding_dim) and model.embedding_dim > 0
    assert torch.allclose(model.head(z), logits, atol=1e-6), "forward must be head(embed(x))"
    # batch independence in eval mode: one clip alone gives the same logits as inside a batch
    assert torch.allclose(model(x[2:3]), logits[2:3], atol=1e-5)


def test_convnet_layout_follows_dc_convnet() -> None:
    model = build_model("convnet", (3, 13, 64), 10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in model.modules() if isinstance(m, nn.GroupNorm)]
    assert [c.out_channels for c in convs] == [128, 128, 128]
    assert all(c.kernel_size == (3, 3) for c in convs)
    assert all(n.num_groups == n.num_channels == 128 and n.affine for n in norms) and len(norms) == 3
    # 13 x 64 -> 6 x 32 -> 3 x 16 -> 1 x 8 after three 2x2 average pools
    assert model.embedding_dim == 128 * 1 * 8
    assert build_model("convnet", (3, 13, 64), 10, norm="batch").body[1].__class__ is nn.BatchNorm2d
    assert not any(
        isinstance(m, (nn.GroupNorm, nn.BatchNorm2d))
        for m in build_model("convnet", (3, 13, 64), 10, norm="none").modules()
    )


def test_pooling_guard_keeps_one_high_maps() -> None:
    """Depth 5 on 13 coefficients reaches height 1 after three pools; later pools must skip that axis."""
    model = build_model("convnet", (3, 13, 64), 4, width=8, depth=5)
    assert model(torch.randn(2, 3, 13, 64)).shape == (2, 4)
    assert model.embedding_dim == 8 * 1 * 2  # height stays 1, width 64 -> 2
    tiny = build_model("cnn4", (1, 1, 3), 3, widths=(4, 4, 4, 4))
    assert tiny(torch.randn(2, 1, 1, 3)).shape == (2, 3)


def test_registry_errors_and_plugins() -> None:
    assert {"convnet", "cnn4"} <= set(available_archs())
    with pytest.raises(KitError, match="unknown architecture 'resnet99'"):
        build_model("resnet99", (3, 13, 64), 10)
    with pytest.raises(KitError, match="convnet"):
        build_model("convnet", (3, 13, 64), 10, widht=3)
    with pytest.raises(KitError, match="norm"):
        build_model("convnet", (3, 13, 64), 10, norm="layer")

    @register_arch("test_linear_probe")
    class LinearProbe(KitModel):
        def __init__(self, in_shape, n_classes, *, hidden: int = 4) -> None:
            super().__init__(in_shape, n_classes, {"hidden": hidden})
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(in_shape)), hidden))
            self.embedding_dim = hidden
            self.head = nn.Linear(hidden, n_classes)

    model = build_model("test_linear_probe", (1, 2, 3), 3, hidden=5)
    assert isinstance(model, LinearProbe) and model.embed(torch.zeros(1, 1, 2, 3)).shape == (1, 5)
    clone = rebuild_model(json.loads(json.dumps(model.spec)))
    assert isinstance(clone, LinearProbe) and clone.arch_kwargs == {"hidden": 5}


def test_spec_records_resolved_constructor_arguments() -> None:
    model = build_model("convnet", (3, 13, 64), 10, width=32)
    assert model.spec == {
        "arch": "convnet",
        "in_shape": [3, 13, 64],
        "n_classes": 10,
        "arch_kwargs": {"width": 32, "depth": 3, "norm": "instance"},
    }
    clone = rebuild_model(model.spec)
    assert [p.shape for p in clone.parameters()] == [p.shape for p in model.parameters()]


def test_parameter_and_mac_counts_match_the_analytic_values() -> None:
    w, k = 32, 10
    model = build_model("convnet", (3, 13, 64), k, width=w)
    conv = lambda cin, cout: cin * 9 * cout + cout  # noqa: E731
    expected_params = conv(3, w) + 2 * conv(w, w) + 3 * 2 * w + (w * 8) * k + k
    assert count_parameters(model) == expected_params
    expected_macs = 13 * 64 * w * 3 * 9 + 6 * 32 * w * w * 9 + 3 * 16 * w * w * 9 + w * 8 * k
    assert count_macs(model) == expected_macs
    # consistent scaling: the two w x w convolutions dominate, so doubling the width ~quadruples MACs
    ratio = count_macs(build_model("convnet", (3, 13, 64), k, width=2 * w)) / expected_macs
    assert 3.5 < ratio < 4.0
    # cnn4 is global-average-pooled: its parameters do not depend on the number of frames, MACs do
    a, b = build_model("cnn4", (3, 13, 64), k), build_model("cnn4", (3, 13, 128), k)
    assert count_parameters(a) == count_parameters(b) > 0
    assert count_macs(b) > 1.9 * count_macs(a)
    # profiling leaves no hooks and keeps the training mode
    a.train()
    count_macs(a)
    assert a.training and not any(m._forward_hooks for m in a.modules())


def _meta() -> dict:
    rng = np.random.default_rng(0)
    return {
        "classes": [f"c{i}" for i in range(4)],
        "feature_config": FeatureConfig(sample_rate=8000),
        "normalizer": Normalizer(
            rng.standard_normal((3, 13)).astype(np.float32), rng.uniform(0.5, 2, (3, 13)).astype(np.float32)
        ),
        "train_config": {"epochs": 3, "lr": 0.001},
        "seed": 7,
        "metrics": {"accuracy": np.float64(0.75)},
        "source": {"dataset": "fsdd", "split": "official"},
    }


@pytest.mark.parametrize("arch", ["convnet", "cnn4"])
def test_model_artifact_round_trip_gives_identical_logits(tmp_path, arch: str) -> None:
    torch.manual_seed(0)
    model = build_model(arch, (3, 13, 64), 4, **({"width": 16} if arch == "convnet" else {}))
    # one optimiser step in train mode so BatchNorm running statistics are not their defaults
    x = torch.randn(8, 3, 13, 64)
    model.train()
    loss = model(x).logsumexp(1).mean()
    loss.backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    model.eval()
    path = save_model(tmp_path / "m.kit", model, _meta())
    loaded, meta = load_model(path)
    assert type(loaded) is type(model) and not loaded.training
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
        assert torch.equal(loaded.embed(x), model.embed(x))
    assert meta["arch"] == arch and meta["arch_kwargs"] == model.arch_kwargs and meta["in_shape"] == [3, 13, 64]
    assert meta["classes"] == ["c0", "c1", "c2", "c3"] and meta["seed"] == 7 and meta["metrics"]["accuracy"] == 0.75
    assert FeatureConfig.from_dict(meta["feature_config"]) == FeatureConfig(sample_rate=8000)
    assert np.array_equal(meta["normalizer"].mean, _meta()["normalizer"].mean)
    assert np.array_equal(meta["normalizer"].std, _meta()["normalizer"].std)
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    assert all(n == "manifest.json" or (n.startswith("arrays/") and n.endswith(".npy")) for n in names), names
    assert "arrays/norm_mean.npy" in names and any(n.startswith("arrays/param/") for n in names)


def _rewrite_member(path, member: str, mutate) -> None:
    with zipfile.ZipFile(path) as zf:
        items = {n: zf.read(n) for n in zf.namelist()}
    items[member] = mutate(items[member])
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in items.items():
            zf.writestr(name, data)


def test_tampered_or_wrong_model_files_are_refused(tmp_path) -> None:
    model = build_model("convnet", (3, 13, 64), 4, width=8)
    path = save_model(tmp_path / "m.kit", model, _meta())
    member = "arrays/param/head.weight.npy"

    def flip_weight(data: bytes) -> bytes:
        array = np.load(io.BytesIO(data))
        array[0, 0] += 1.0
        buf = io.BytesIO()
        np.save(buf, array)
        return buf.getvalue()

    _rewrite_member(path, member, flip_weight)
    with pytest.raises(KitError, match="checksum"):
        load_model(path)

    path2 = save_model(tmp_path / "m2.kit", model, _meta())
    _rewrite_member(path2, "manifest.json", lambda d: d.replace(b'"convnet"', b'"cnn4"'))
    with pytest.raises(KitError, match="checksum"):
        load_model(path2)

    truncated = tmp_path / "t.kit"
    truncated.write_bytes((tmp_path / "m.kit").read_bytes()[:200])
    with pytest.raises(KitError):
        load_model(truncated)
    with pytest.raises(KitError, match="no such file"):
        load_model(tmp_path / "missing.kit")


def test_save_model_checks_meta(tmp_path) -> None:
    model = build_model("convnet", (3, 13, 64), 4, width=8)
    with pytest.raises(ValueError, match="3 classes"):
        save_model(tmp_path / "m.kit", model, {"classes": ["a", "b", "c"]})
    with pytest.raises(ValueError, match="taken from the model"):
        save_model(tmp_path / "m.kit", model, {"arch": "cnn4"})
