"""DC, DSA and DM distillers and the Siamese augmentation they share.

Augmentation: crafted inputs check that each op does what it says, that one draw transforms
several tensors identically, and that everything is differentiable, shape-preserving and
reproducible from the generator. Distillers: short runs on real FSDD recordings (60 training
clips per class, one torch thread, small networks) must lower their own objective (measured on
fixed networks, so the comparison is not at the mercy of the per-step random draws) and give a
ConvNet clearly better test accuracy than random real clips; bad options are one-line KitErrors.
Exact resume after an interruption is checked for every iterative method in test_distiller_checks.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deploy.runtime.errors import KitError
from distill import METHODS, make_distiller
from distill.augment import OPS, AugmentParams, SiameseAugment
from distill.dm import DM
from distill.gradient_matching import DC, DSA, fresh_network, gradient_distance


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _params(name: str, **values) -> AugmentParams:
    return AugmentParams(((name, values),))


def _ramp(n: int = 2, c: int = 3, f: int = 13, t: int = 64) -> torch.Tensor:
    """x[..., t] = t + 1 (never 0, so zeroed frames are visible) plus a per-sample offset."""
    base = torch.arange(1, t + 1, dtype=torch.float32).expand(n, c, f, t)
    return base + 100 * torch.arange(n, dtype=torch.float32)[:, None, None, None]


# Augmentation ----------------------------------------------------------------------------------
def test_shift_is_a_circular_or_zero_padded_time_roll():
    x = _ramp()
    circ = SiameseAugment(("shift",), shift_mode="circular")
    torch.testing.assert_close(circ.apply(x, _params("shift", shift=3)), torch.roll(x, 3, dims=-1))
    zero = SiameseAugment(("shift",), shift_mode="zero")
    out = zero.apply(x, _params("shift", shift=-5))
    torch.testing.assert_close(out[..., :-5], x[..., 5:])
    assert torch.all(out[..., -5:] == 0)
    # every sampled shift is a roll by at most max_shift frames, and they vary
    gen = torch.Generator().manual_seed(0)
    shifts = []
    for _ in range(40):
        (out,) = SiameseAugment(("shift",), max_shift=4)(x, generator=gen)
        shifts.append([s for s in range(-4, 5) if torch.equal(out, torch.roll(x, s, dims=-1))])
    assert all(len(s) == 1 for s in shifts) and len({s[0] for s in shifts}) > 3


@pytest.mark.parametrize("name,dim,limit", [("time_mask", -1, 10), ("freq_mask", -2, 3)])
def test_masks_zero_one_contiguous_band(name, dim, limit):
    aug = SiameseAugment((name,))
    gen = torch.Generator().manual_seed(1)
    widths = set()
    for _ in range(30):
        (out,) = aug(torch.ones(2, 3, 13, 64), generator=gen)
        zeroed = (out == 0).all(dim=tuple(d for d in range(4) if d != dim % 4))  # along the masked axis
        band = torch.nonzero(zeroed).flatten()
        assert 1 <= len(band) <= limit and torch.all(band.diff() == 1)  # one contiguous band
        assert int((out == 0).sum()) == len(band) * out.numel() // out.shape[dim]  # nothing else touched
        widths.add(len(band))
    assert len(widths) > 1


def test_gain_scales_and_noise_adds_one_shared_map():
    x = torch.randn(4, 3, 13, 64, generator=torch.Generator().manual_seed(2))
    gen = torch.Generator().manual_seed(3)
    for _ in range(10):
        (out,) = SiameseAugment(("gain",), max_gain=1.5)(x, generator=gen)
        ratio = out / x
        assert torch.allclose(ratio, ratio.flatten()[0].expand_as(ratio))
        assert 1 / 1.5 - 1e-6 <= float(ratio.flatten()[0]) <= 1.5 + 1e-6
    a, b = SiameseAugment(("noise",), noise_std=0.2)(x, torch.zeros(1, 3, 13, 64), generator=gen)
    noise = a - x
    torch.testing.assert_close(noise, b.expand_as(noise), atol=1e-6, rtol=0)  # the same map for every sample
    assert 0.18 < float(b.std()) < 0.22


def test_stretch_interpolates_along_time_about_the_centre():
    x = _ramp(t=64)
    centre = 31.5
    aug = SiameseAugment(("stretch",))
    slow = aug.apply(x, _params("stretch", rate=1.25))  # content stretched: out[t] = x[c + (t - c) / 1.25]
    expected = centre + (torch.arange(64.0) - centre) / 1.25 + 1
    torch.testing.assert_close(slow[0, 0, 0], expected)
    fast = aug.apply(x, _params("stretch", rate=0.8))  # compressed: the edges fall outside the clip -> 0
    source = centre + (torch.arange(64.0) - centre) / 0.8
    inside = (source >= 0) & (source <= 63)
    torch.testing.assert_close(fast[0, 0, 0][inside], source[inside] + 1)
    assert torch.all(fast[0, 0, 0][(source < -1) | (source > 64)] == 0) and not inside.all()
    torch.testing.assert_close(aug.apply(x, _params("stretch", rate=1.0)), x)


def test_one_draw_transforms_every_tensor_identically_and_reproducibly():
    x = torch.randn(5, 3, 13, 64, generator=torch.Generator().manual_seed(4))
    aug = SiameseAugment(mode="all")
    for seed in range(5):
        real, syn = aug(x, x[1:3].clone(), generator=torch.Generator().manual_seed(seed))
        assert real.shape == x.shape and syn.shape == (2, 3, 13, 64) and real.dtype == x.dtype
        torch.testing.assert_close(real[1:3], syn)  # Siamese: same parameters whatever the batch size
        assert not torch.allclose(real, x)
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    first = aug(x, generator=g1)[0]
    torch.testing.assert_close(first, aug(x, generator=g2)[0])  # same generator state -> same output
    assert not torch.allclose(aug(x, generator=g1)[0], first)  # the state advanced
    single = SiameseAugment(mode="single")
    picked = {single.sample(x.shape, torch.Generator().manual_seed(s)).names for s in range(60)}
    assert picked == {(op,) for op in OPS}


def test_augmentation_is_differentiable():
    x = torch.randn(2, 2, 5, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(5), requires_grad=True)
    aug = SiameseAugment(mode="all", max_shift=3, max_time_mask=4, max_freq_mask=2)
    for seed in range(3):
        params = aug.sample(x.shape, torch.Generator().manual_seed(seed))
        assert torch.autograd.gradcheck(lambda t: aug.apply(t, params), (x,))  # noqa: B023 (called here)
    for op in OPS:
        out = SiameseAugment((op,)).apply(x, SiameseAugment((op,)).sample(x.shape, torch.Generator().manual_seed(0)))
        (grad,) = torch.autograd.grad(out.pow(2).sum(), x)
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0, op


def test_bad_augmentation_options_are_one_line_errors():
    for kwargs, pattern in [
        ({"ops": "shift,flip"}, "unknown augmentation 'flip'"),
        ({"mode": "many"}, "unknown mode"),
        ({"max_stretch": 1.5}, "max_stretch"),
        ({"shift_mode": "reflect"}, "unknown shift mode"),
    ]:
        with pytest.raises(KitError, match=pattern) as info:
            SiameseAugment(**kwargs)
        assert "\n" not in str(info.value)


# Distillers on real recordings -----------------------------------------------------------------
@pytest.fixture(scope="module")
def fsdd(data_dir):
    """FSDD official split, 60 training clips per class (spread over speakers), 30 test clips per class."""
    from kit.features import load_feature_set

    return load_feature_set("fsdd", data_dir, limit_per_class=60, progress=False)


#: short runs at 1 sample per class, shared by the objective and the quality tests
RUNS = {
    "dc": dict(steps=30, width=16, batch_size=16, lr=1.0),
    "dsa": dict(steps=30, width=16, batch_size=16, lr=1.0),
    "dm": dict(steps=60, width=32, batch_size=16, lr=1.0),
}


@pytest.fixture(scope="module")
def runs(fsdd):
    k = len(fsdd.classes)
    return {
        m: make_distiller(m, 1, seed=0, time_budget_s=None, device="cpu", **kw).fit(fsdd.x_train, fsdd.y_train, k)
        for m, kw in RUNS.items()
    }


def _dm_objective(features: np.ndarray, fsdd, width: int, n_nets: int = 4) -> float:
    """Sum over classes of the squared distance of mean embeddings, under fixed random networks."""
    k = len(fsdd.classes)
    xs = torch.from_numpy(features).reshape(k, -1, *features.shape[1:])
    xr, yr = torch.from_numpy(fsdd.x_train), torch.from_numpy(fsdd.y_train)
    total = 0.0
    with torch.no_grad():
        for s in range(n_nets):
            net = fresh_network(xr.shape[1:], k, width, 3, torch.Generator().manual_seed(1000 + s), torch.device("cpu"))
            er = net.embed(xr)
            for c in range(k):
                total += float((er[yr == c].mean(0) - net.embed(xs[c]).mean(0)).pow(2).sum())
    return total / n_nets


def _dc_objective(features: np.ndarray, fsdd, width: int, n_nets: int = 3) -> float:
    """DC's per-class gradient distance (real class vs its synthetic samples), under fixed networks."""
    k = len(fsdd.classes)
    xs = torch.from_numpy(features).reshape(k, -1, *features.shape[1:])
    xr, yr = torch.from_numpy(fsdd.x_train), torch.from_numpy(fsdd.y_train)
    total = 0.0
    for s in range(n_nets):
        net = fresh_network(xr.shape[1:], k, width, 3, torch.Generator().manual_seed(2000 + s), torch.device("cpu"))
        weights = [p for p in net.parameters() if p.dim() > 1]
        for c in range(k):
            g_real = torch.autograd.grad(F.cross_entropy(net(xr[yr == c]), yr[yr == c]), weights)
            g_syn = torch.autograd.grad(F.cross_entropy(net(xs[c]), torch.full((len(xs[c]),), c)), weights)
            total += float(gradient_distance(g_real, g_syn))
    return total / (n_nets * k)


@pytest.mark.parametrize("method", ["dc", "dsa", "dm"])
def test_distiller_contract_and_lowers_its_objective(runs, fsdd, method):
    run = runs[method]
    k = len(fsdd.classes)
    assert run.features_.shape == (k, *fsdd.x_train.shape[1:]) and run.features_.dtype == np.float32
    np.testing.assert_array_equal(run.labels_, np.arange(k))
    assert run.steps_done_ == RUNS[method]["steps"] and len(run.history_) == run.steps_done_
    assert all({"step", "loss", "elapsed"} <= set(h) for h in run.history_)
    # initialised from real samples of the right class, then moved away from them
    init = fsdd.x_train[run.init_indices_]
    np.testing.assert_array_equal(fsdd.y_train[run.init_indices_], np.arange(k))
    assert np.abs(run.features_ - init).mean() > 1e-3
    objective = _dm_objective if method == "dm" else _dc_objective
    width = RUNS[method]["width"]
    before, after = objective(init, fsdd, width), objective(run.features_, fsdd, width)
    assert after < 0.9 * before, (before, after)
    losses = [h["loss"] for h in run.history_]
    assert np.mean(losses[-10:]) < np.mean(losses[:10]), (losses[:10], losses[-10:])


def test_distillers_beat_random_real_samples(runs, fsdd):
    """Trained on 1 clip per class, a ConvNet scores clearly higher on each distilled coreset."""
    from distill.selection import RandomSelector
    from kit.training import TrainConfig, train_eval_seeds

    config = TrainConfig(arch_kwargs={"width": 32}, epochs=150, device="cpu")
    k = len(fsdd.classes)

    def score(x, y, seeds):
        return train_eval_seeds(x, y, fsdd.x_test, fsdd.y_test, k, config, seeds=seeds, progress=False)["mean"]

    randoms = [
        score(
            *(lambda s: (s.features_, s.labels_))(RandomSelector(ipc=1, seed=seed).fit(fsdd.x_train, fsdd.y_train)),
            (seed,),
        )
        for seed in (0, 1, 2)
    ]
    distilled = {m: score(run.features_, run.labels_, (0,)) for m, run in runs.items()}
    for method, acc in distilled.items():
        assert acc > np.mean(randoms) + 0.10, (method, distilled, randoms)


def test_registered_and_bad_options_are_one_line_errors():
    assert METHODS["dc"] is DC and METHODS["dsa"] is DSA and METHODS["dm"] is DM
    x = np.random.default_rng(0).standard_normal((4, 1, 4, 8)).astype(np.float32)
    y = np.array([0, 0, 1, 1])
    cases = [
        ("dsa", dict(augment="shift,rotate"), "dsa: unknown augmentation 'rotate'"),
        ("dm", dict(augment="flip"), "dm: unknown augmentation 'flip'"),
        ("dm", dict(augment_mode="many"), "dm: unknown augment_mode 'many' \\(choose from single, all\\)"),
        ("dm", dict(lr=-1.0), "dm: lr must be a positive number"),
        ("dc", dict(outer_loop=0), "dc: outer_loop must be a positive integer"),
        ("dc", dict(momentum=1.5), r"dc: momentum must be a number in \[0, 1\)"),
        ("dsa", dict(width=0), "dsa: width must be a positive integer"),
        ("dm", dict(steps=-1), "dm: steps must be a non-negative integer"),
    ]
    for method, params, pattern in cases:
        with pytest.raises(KitError, match=pattern) as info:
            make_distiller(method, 1, **{"steps": 1, **params}).fit(x, y)
        assert "\n" not in str(info.value)
    with pytest.raises(KitError, match="method 'dm' has no parameter outer_loop"):
        make_distiller("dm", 1, outer_loop=3)
