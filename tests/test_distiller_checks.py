"""Common checks over every distiller in the registry, in the spirit of scikit-learn's ``check_estimator``.

Why one parametrised file: a new method added to ``distill.registry.METHODS`` is checked for the
whole contract (declared parameters, output shapes and dtypes, determinism, parameter round-trip,
exact resume, one-line errors) without anyone writing a test for it. Method-specific behaviour
(quality, objectives, expert buffers) stays in the per-method test files.

Kept tiny (a few steps, width-8 networks, 3 classes of 8 synthetic maps, plus FSDD limited to 8
clips per class for the real-data case) so the file runs in well under a minute on one core.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from deploy.runtime.errors import KitError
from distill import METHODS, make_distiller
from distill.iterative import IterativeDistiller
from distill.params import format_value

#: tiny settings per method; the iterative ones stop on steps alone and run on the CPU
TINY: dict[str, dict] = {
    "random": {},
    "herding": dict(width=8),
    "kcenter": dict(width=8, embedding="flat"),
    "rfad": dict(steps=4, n_models=1, width=8, batch_size=12, eval_every=2, eval_models=1, learn_labels=True),
    "dc": dict(steps=4, width=8, batch_size=4, outer_loop=2, inner_loop=1),
    "dsa": dict(steps=4, width=8, batch_size=4, outer_loop=2, inner_loop=1, augment_mode="all"),
    "dm": dict(steps=4, width=8, batch_size=4, lr=0.1),
    "mtt": dict(
        steps=4,
        width=8,
        n_experts=2,
        buffer_epochs=3,
        expert_epochs=1,
        max_start_epoch=1,
        syn_steps=2,
        expert_batch_size=8,
        learn_labels=True,
    ),
}
ITERATIVE = [m for m, cls in METHODS.items() if issubclass(cls, IterativeDistiller)]
IPC = 2


def test_every_registered_method_has_tiny_settings():
    """A method added to the registry must be added here too, so the common checks cover it."""
    assert set(TINY) == set(METHODS)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One intra-op thread: faster on shared cores, and the bit-identical comparisons need a fixed reduction order."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def synthetic():
    """3 classes x 8 maps (1, 8, 16), class-dependent means so the classes differ."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 8)
    x = (rng.standard_normal((len(y), 1, 8, 16)) + y[:, None, None, None] * 0.5).astype(np.float32)
    return x, y.astype(np.int64)


@pytest.fixture(scope="module")
def fsdd_small(data_dir):
    """Real FSDD MFCC maps, official split, 8 training clips per class."""
    from kit.features import load_feature_set

    fs = load_feature_set("fsdd", data_dir, limit_per_class=8, progress=False)
    return fs.x_train, fs.y_train


def tiny(method: str, tmp_path_factory, key: str = "synthetic", **extra) -> dict:
    """The method's tiny parameters; MTT gets an expert buffer folder per data set (built on first fit)."""
    params = {**TINY[method], **extra}
    if issubclass(METHODS[method], IterativeDistiller):
        params.setdefault("time_budget_s", None)
        params.setdefault("device", "cpu")
    if method == "mtt":
        params.setdefault("buffer", str(_buffer_root(tmp_path_factory) / key))
    return params


_BUFFERS: dict[str, object] = {}


def _buffer_root(tmp_path_factory):
    if "root" not in _BUFFERS:
        _BUFFERS["root"] = tmp_path_factory.mktemp("experts")
    return _BUFFERS["root"]


# Declarations -------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", list(METHODS))
def test_every_parameter_is_declared_and_its_default_is_valid(method):
    cls = METHODS[method]
    specs = cls.param_specs()  # raises for a constructor parameter without a declaration
    assert list(specs) == cls.param_names()
    for name, spec in specs.items():
        assert spec.help and "\n" not in spec.help, name
        if spec.default is None:
            assert spec.none, f"{method}.{name}: default None but the declaration does not accept none"
        spec.check(method, name, spec.default)
        # what the help table shows as the default reads back to the default
        assert spec.parse(method, name, format_value(spec.default)) == spec.default, name


# Contract on synthetic and real data --------------------------------------------------------------
def _fit(method, x, y, params):
    return make_distiller(method, IPC, seed=3, **params).fit(x, y)


def _check_contract(d, x, y):
    k = int(y.max()) + 1
    assert d.features_.shape == (IPC * k, *x.shape[1:]) and d.features_.dtype == np.float32
    assert np.isfinite(d.features_).all()
    if d.labels_.ndim == 1:
        assert d.labels_.dtype == np.int64
        np.testing.assert_array_equal(d.labels_, np.repeat(np.arange(k), IPC))  # class-major
    else:
        assert d.labels_.shape == (IPC * k, k) and d.labels_.dtype == np.float32
        np.testing.assert_array_equal(d.labels_.argmax(1), np.repeat(np.arange(k), IPC))
    assert isinstance(d.history_, list) and d.history_ and all("step" in h and "loss" in h for h in d.history_)


@pytest.mark.parametrize("method", list(METHODS))
def test_contract_and_determinism_on_synthetic_data(method, synthetic, tmp_path_factory):
    x, y = synthetic
    params = tiny(method, tmp_path_factory)
    first = _fit(method, x, y, params)
    _check_contract(first, x, y)
    if isinstance(first, IterativeDistiller):
        assert first.steps_done_ == TINY[method]["steps"] and first.stop_reason_ == "steps"
    second = _fit(method, x, y, params)
    np.testing.assert_array_equal(first.features_, second.features_)
    np.testing.assert_array_equal(first.labels_, second.labels_)
    losses = [h["loss"] for h in first.history_]
    assert losses == [h["loss"] for h in second.history_]


@pytest.mark.parametrize("method", list(METHODS))
def test_contract_on_real_fsdd_features(method, fsdd_small, tmp_path_factory):
    x, y = fsdd_small
    d = _fit(method, x, y, tiny(method, tmp_path_factory, key="fsdd", **({"steps": 2} if method in ITERATIVE else {})))
    _check_contract(d, x, y)
    assert len(np.unique(y)) == 10 and d.features_.shape[0] == 10 * IPC


# Parameters ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", list(METHODS))
def test_get_params_set_params_round_trip(method, tmp_path_factory):
    params = tiny(method, tmp_path_factory)
    d = make_distiller(method, IPC, seed=5, **params)
    got = d.get_params()
    assert got["ipc"] == IPC and got["seed"] == 5 and all(got[k] == v for k, v in params.items())
    assert set(got) == set(METHODS[method].param_names())
    # the record is enough to rebuild the same distiller, also through JSON (the coreset artifact)
    assert METHODS[method](**got).get_params() == got
    assert METHODS[method](**json.loads(json.dumps(got))).get_params() == got
    # set_params onto a default instance reproduces it; an unknown name changes nothing
    fresh = METHODS[method]()
    assert fresh.set_params(**got) is fresh and fresh.get_params() == got
    with pytest.raises(KitError, match=f"{method}: unknown parameter 'colour'"):
        fresh.set_params(seed=9, colour="red")
    assert fresh.get_params()["seed"] == 5
    with pytest.raises(KitError, match=f"method '{method}' has no parameter colour"):
        make_distiller(method, 1, colour="red")


def _bad_values(spec):
    """(value given to the constructor, or ``str`` text given to ``-p``) the declaration must refuse."""
    bad: list[object] = []
    if spec.none is None:
        bad.append(None)
    if spec.kind in ("int", "float"):
        bad += ["abc", "1e400", "nan", True, "inf"]
        if spec.kind == "int":
            bad += [2.5, "2.5"]
        if spec.low is not None:
            bad.append(spec.low if spec.low_open else spec.low - 1)
            bad.append(str(spec.low - 1))
        if spec.high is not None:
            bad.append(spec.high if spec.high_open else spec.high + 1)
    elif spec.kind == "bool":
        bad += ["maybe", 1]
    elif spec.kind == "str":
        bad.append(3)
        if spec.choices:
            bad.append("bogus")
    elif spec.kind == "json":
        bad += ["[1, 2]", 3, "{not json"]
    return bad


def _as_text(value) -> str | None:
    return value if isinstance(value, str) else None


@pytest.mark.parametrize("method", list(METHODS))
def test_every_kind_of_bad_parameter_is_a_one_line_error_naming_method_and_parameter(method):
    """Generated from the declarations: wrong type, out of range, overflow, NaN, unknown choice,
    a refused none; as a Python value (``validate_params``) and as ``-p`` text (``Param.parse``)."""
    from kit.commands.distill import parse_params

    cls = METHODS[method]
    valid = set(cls.param_names())
    checked = 0
    for name, spec in cls.param_specs().items():
        for bad in _bad_values(spec):
            text = _as_text(bad)
            with pytest.raises(KitError) as info:
                if text is not None and spec.kind != "str":
                    parse_params([f"{name}={text}"], method, valid)
                else:
                    cls(**{name: bad}).validate_params()
            message = str(info.value)
            assert "\n" not in message and message.startswith(f"{method}: ") and name in message, (name, bad, message)
            checked += 1
    assert checked >= len(valid)


def test_cross_parameter_and_method_specific_checks(synthetic, tmp_path_factory):
    """What one declaration cannot say is still checked before any work, in one line."""
    x, y = synthetic
    cases = [
        ("mtt", dict(max_start_epoch=3, expert_epochs=2, buffer_epochs=4), "max_start_epoch 3 \\+ expert_epochs 2"),
        ("dm", dict(augment="flip"), "dm: unknown augmentation 'flip'"),
        ("dsa", dict(arch="transformer"), "dsa: "),
        ("dc", dict(device="tpu"), "dc: unknown device 'tpu'"),
    ]
    for method, params, pattern in cases:
        with pytest.raises(KitError, match=pattern) as info:
            make_distiller(method, 1, **{**tiny(method, tmp_path_factory), **params}).fit(x, y)
        assert "\n" not in str(info.value)


def test_fit_checks_values_changed_by_set_params(synthetic):
    x, y = synthetic
    d = make_distiller("herding", 1)
    d.set_params(embedding="pixels")
    with pytest.raises(KitError, match="herding: unknown embedding 'pixels' \\(choose from convnet, flat\\)"):
        d.fit(x, y)


def test_cli_parses_p_values_to_the_declared_type_and_refuses_bad_ones(tmp_path):
    """``-p`` text is typed by the declaration; bad values fail before any data is loaded."""
    from kit.cli import app
    from kit.commands.distill import parse_params

    parsed = parse_params(
        ["steps=1e3", "lr=3e-2", "keep_best=no", "loss=mse", "threads=none"], "rfad", set(METHODS["rfad"].param_names())
    )
    assert parsed == {"steps": 1000, "lr": 0.03, "keep_best": False, "loss": "mse", "threads": None}
    assert isinstance(parsed["steps"], int)
    assert parse_params(['arch_kwargs={"width": 4}'], "dm", {"arch_kwargs"}) == {"arch_kwargs": {"width": 4}}
    out = tmp_path / "x.kit"
    cases = [
        (["--method", "rfad", "-p", "lr=abc"], "rfad: lr must be a positive number, got 'abc'"),
        (["--method", "dm", "-p", "steps=abc"], "dm: steps must be a non-negative integer, got 'abc'"),
        (["--method", "mtt", "-p", "steps=1e400"], "mtt: steps must be a non-negative integer, got '1e400'"),
        (["--method", "dc", "-p", "lr=0"], "dc: lr must be a positive number, got 0"),
        (["--method", "rfad", "--n-models", "0"], "rfad: n_models must be a positive integer, got 0"),
        (["--method", "herding", "--embedding", "pixels"], "herding: unknown embedding 'pixels'"),
        (["--method", "random", "--seed", "-1"], "random: seed must be an integer in [0, 4294967295], got -1"),
    ]
    for argv, message in cases:
        # a dataset that does not exist: the parameters are refused before it is looked for
        result = CliRunner().invoke(app, ["distill", "no_such_dataset", "--out", str(out), *argv])
        assert isinstance(result.exception, KitError), (argv, result.output)
        assert str(result.exception) == message or str(result.exception).startswith(message), str(result.exception)
    assert not out.exists()


def test_cli_bad_seed_exits_2_with_one_line():
    """The console path: ``kit distill --seed -1`` prints one ``error:`` line and exits 2 (no traceback)."""
    proc = subprocess.run(
        [sys.executable, "-m", "kit", "distill", "fsdd", "--method", "random", "--seed", "-1", "--out", "x.kit"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "random: seed must be an integer" in lines[0], proc.stderr


def test_help_lists_every_method_parameter_from_the_declarations():
    from kit.cli import app

    result = CliRunner().invoke(app, ["distill", "--help"], terminal_width=400)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    for cls in METHODS.values():
        for name, spec in cls.param_specs().items():
            if name in ("ipc", "seed"):
                continue
            row = f"{name} ({spec.describe()}; default {spec.default_text()}): {spec.help}"
            assert " ".join(row.split()) in text, row
    assert "rfad, dc, dsa, dm, mtt:" in text and "steps (int >= 0 or none;" in text


# Exact resume -------------------------------------------------------------------------------------
class _Interrupting:
    """Mixin: Ctrl-C arrives at the start of step ``interrupt_at`` (the loop saves a checkpoint, then re-raises)."""

    interrupt_at = 2

    def _step(self, step):
        if step == self.interrupt_at:
            raise KeyboardInterrupt
        return super()._step(step)


@pytest.mark.parametrize("method", ITERATIVE)
def test_resume_after_interruption_is_bit_identical(method, synthetic, tmp_path, tmp_path_factory):
    x, y = synthetic
    cls = METHODS[method]
    common = dict(ipc=IPC, seed=3, checkpoint_every=100, **tiny(method, tmp_path_factory))
    straight = cls(**common).fit(x, y)
    ckpt = tmp_path / f"{method}.ckpt"
    interrupted = type(f"Interrupted{cls.__name__}", (_Interrupting, cls), {})
    with pytest.raises(KeyboardInterrupt):
        interrupted(checkpoint_path=str(ckpt), **common).fit(x, y)
    assert ckpt.exists()
    resumed = cls(checkpoint_path=str(ckpt), resume=True, **common).fit(x, y)
    assert resumed.resumed_from_ == _Interrupting.interrupt_at and resumed.steps_done_ == common["steps"]
    assert [h["step"] for h in resumed.history_] == list(range(1, common["steps"] + 1))
    strip = [{k: v for k, v in h.items() if k != "elapsed"} for h in straight.history_]
    assert [{k: v for k, v in h.items() if k != "elapsed"} for h in resumed.history_] == strip
    np.testing.assert_array_equal(resumed.features_, straight.features_)
    np.testing.assert_array_equal(resumed.labels_, straight.labels_)
    # the run moved the coreset, so the comparison is not between two untouched initialisations
    # (RFAD returns its best validated coreset, which after 4 steps may still be the initial one)
    if method != "rfad":
        assert not np.array_equal(resumed.features_, x[resumed.init_indices_])
    # a checkpoint made with other settings is refused, naming the setting
    with pytest.raises(KitError, match="checkpoint was made with seed=3"):
        cls(checkpoint_path=str(ckpt), resume=True, **{**common, "seed": 4}).fit(x, y)
