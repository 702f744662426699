"""On-device fine-tuning: numpy head trainers, adding a keyword and personalising a real bundle
with coreset replay, the torch-free device path, and one-line errors (runtime and ``kit``).

Real recordings: a small ConvNet is trained on FSDD digits 0-7 (8 and 9 held out of training),
bundled with a random 10-per-class coreset; digits 8 and 9 are then added from 10 training-take
clips each and tested on 100 other recordings of the digit (no model or head has seen them).
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from deploy.bundle_builder import build_bundle
from deploy.runtime import finetune
from deploy.runtime.__main__ import main as runtime_main
from deploy.runtime.bundle import Bundle, BundleClassifier
from deploy.runtime.coreset import Coreset
from deploy.runtime.errors import KitError
from deploy.runtime.head import MLPHead, SoftmaxHead, balanced_weights, lbfgs
from deploy.runtime.wavio import read_wav
from distill import make_distiller
from kit.cli import main as kit_main
from kit.data import load_dataset
from kit.features import load_feature_set
from kit.models import save_model
from kit.training import TrainConfig, train_model

REPO = Path(__file__).resolve().parents[1]
HELD_OUT = ("8", "9")
#: Measured on this fixture: new digit 0.89 on 100 unseen clips, old classes 0.929 -> 0.929.
MIN_NEW_ACCURACY = 0.8
MAX_OLD_DROP = 0.05


# Synthetic problems for the head trainers --------------------------------------------------------
def blobs(k: int, d: int, n_per: int, seed: int, spread: float = 0.6, draw: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian classes around centres fixed by ``seed``; ``draw`` picks another sample of them."""
    centers = np.random.default_rng(seed).standard_normal((k, d)) * 2.0
    y = np.repeat(np.arange(k), n_per)
    noise = np.random.default_rng((seed, draw)).standard_normal((len(y), d))
    return (centers[y] + spread * noise).astype(np.float32), y


def test_lbfgs_minimises_a_quadratic_exactly() -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((20, 20))
    h, c = a @ a.T + 20 * np.eye(20), rng.standard_normal(20)
    result = lbfgs(lambda x: (0.5 * x @ h @ x - c @ x, h @ x - c), np.zeros(20), gtol=1e-9, ftol=0.0)
    assert result.converged
    np.testing.assert_allclose(result.x, np.linalg.solve(h, c), atol=1e-6)


def test_softmax_head_learns_separable_blobs_and_matches_sklearn() -> None:
    z, y = blobs(5, 16, 30, seed=0)
    zt, yt = blobs(5, 16, 30, seed=0, draw=1)  # unseen samples of the same classes
    head = SoftmaxHead(l2=1e-2, anchor="zero", class_weight="none").fit(z, y)
    assert head.coef_.shape == (5, 16) and head.intercept_.shape == (5,)
    assert head.score(z, y) == 1.0 and head.score(zt, yt) >= 0.98
    assert head.converged_
    probs = head.predict_proba(z)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    # same objective as scikit-learn's multinomial logistic regression with C = 1 / (l2 * n)
    from sklearn.linear_model import LogisticRegression

    reference = LogisticRegression(C=1 / (1e-2 * len(z)), tol=1e-10, max_iter=5000).fit(z, y)
    np.testing.assert_allclose(head.coef_, reference.coef_, atol=2e-3)
    # deterministic: the same data gives the same head
    again = SoftmaxHead(l2=1e-2, anchor="zero", class_weight="none").fit(z, y)
    np.testing.assert_array_equal(again.coef_, head.coef_)


def test_softmax_head_warm_start_keeps_old_rows_and_adds_a_class() -> None:
    z, y = blobs(6, 24, 40, seed=1)
    old = y < 5
    base = SoftmaxHead(l2=1e-2, anchor="zero").fit(z[old], y[old])
    # a few old samples (replay) and a few of the new class 5
    rng = np.random.default_rng(0)
    pick = np.concatenate(
        [rng.choice(np.flatnonzero(y == c), 4, replace=False) for c in range(5)]
        + [rng.choice(np.flatnonzero(y == 5), 5, replace=False)]
    )
    warm = SoftmaxHead(l2=1.0, l2_new=1e-2, anchor="init", warm_start=(base.coef_, base.intercept_)).fit(
        z[pick], y[pick]
    )
    cold = SoftmaxHead(l2=1e-2, anchor="zero").fit(z[pick], y[pick])
    assert warm.coef_.shape == (6, 24)
    assert warm.score(z, y) >= 0.95
    drift_warm = np.linalg.norm(warm.coef_[:5] - base.coef_) / np.linalg.norm(base.coef_)
    drift_cold = np.linalg.norm(cold.coef_[:5] - base.coef_) / np.linalg.norm(base.coef_)
    assert drift_warm < 0.5 * drift_cold  # the anchor keeps what the full data taught the old rows
    # a warm start from an already optimal head needs (almost) no iterations
    again = SoftmaxHead(l2=1e-2, anchor="zero", warm_start=(base.coef_, base.intercept_)).fit(z[old], y[old])
    assert again.n_iter_ <= 3
    with pytest.raises(KitError, match="does not fit embeddings"):
        SoftmaxHead(warm_start=(base.coef_[:, :10], base.intercept_)).fit(z, y)


def test_balanced_weights_help_the_rare_class() -> None:
    z, y = blobs(3, 8, 200, seed=2, spread=2.5)
    keep = np.concatenate([np.flatnonzero(y != 2), np.flatnonzero(y == 2)[:6]])
    w = balanced_weights(y[keep], 3)
    assert np.allclose([w[y[keep] == c].sum() for c in range(3)], len(keep) / 3)
    recall = {}
    for cw in ("balanced", "none"):
        head = SoftmaxHead(l2=1e-2, anchor="zero", class_weight=cw).fit(z[keep], y[keep])
        recall[cw] = float(np.mean(head.predict(z[y == 2]) == 2))
    assert recall["balanced"] > recall["none"]


def test_mlp_head_learns_what_a_linear_head_cannot() -> None:
    rng = np.random.default_rng(3)
    z = rng.uniform(-1, 1, (400, 2)).astype(np.float32)
    y = ((z[:, 0] > 0) ^ (z[:, 1] > 0)).astype(np.int64)  # XOR
    mlp = MLPHead(hidden=16, l2=1e-4, seed=0, max_iter=500).fit(z, y)
    linear = SoftmaxHead(l2=1e-4, anchor="zero").fit(z, y)
    assert mlp.score(z, y) >= 0.95 and linear.score(z, y) <= 0.75
    np.testing.assert_array_equal(MLPHead(hidden=16, l2=1e-4, seed=0, max_iter=500).fit(z, y).coef_, mlp.coef_)


def test_head_input_errors_are_kit_errors() -> None:
    with pytest.raises(KitError, match="embeddings shaped"):
        SoftmaxHead().fit(np.zeros((0, 4)), np.zeros(0, np.int64))
    with pytest.raises(KitError, match="one integer label"):
        SoftmaxHead().fit(np.zeros((3, 4)), np.zeros(2, np.int64))
    with pytest.raises(KitError, match="NaN"):
        SoftmaxHead().fit(np.full((3, 4), np.nan), np.zeros(3, np.int64))
    with pytest.raises(KitError, match="not fitted"):
        SoftmaxHead().predict(np.zeros((1, 4)))


# A real bundle: FSDD digits 0-7 ----------------------------------------------------------------
@pytest.fixture(scope="module")
def fsdd_base(data_dir: Path):
    ds = load_dataset("fsdd", data_dir)
    base = dataclasses.replace(
        ds, classes=[c for c in ds.classes if c not in HELD_OUT], clips=[c for c in ds.clips if c.label not in HELD_OUT]
    )
    return ds, load_feature_set(base, data_dir, limit_per_class=30, progress=False)


@pytest.fixture(scope="module")
def bundle_path(fsdd_base, tmp_path_factory) -> Path:
    """A small ConvNet on digits 0-7 with a random 10-per-class coreset as replay memory."""
    _, fs = fsdd_base
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("finetune")
    config = TrainConfig(arch_kwargs={"width": 32}, max_samples=5000, batch_size=32)
    model = train_model(fs.x_train, fs.y_train, len(fs.classes), config, progress=False)
    model_path = save_model(
        out / "digits.kit",
        model,
        {"classes": fs.classes, "feature_config": fs.config, "normalizer": fs.normalizer, "source": fs.source},
    )
    selector = make_distiller("random", ipc=10, seed=0).fit(fs.x_train, fs.y_train, len(fs.classes))
    coreset = Coreset(
        selector.features_,
        selector.labels_,
        fs.classes,
        fs.config,
        fs.normalizer,
        method="random",
        params={"ipc": 10},
        seed=0,
        source=fs.source,
    ).save(out / "coreset.kit")
    return build_bundle(model_path, coreset, out / "digits.bundle.kit", formats=("onnx",))


def clips_of(ds, digit: str, split: str, n: int) -> list[Path]:
    """``n`` clips of ``digit`` in ``split``, spread over the speakers."""
    paths = sorted(c.path for c in ds.clips if c.label == digit and c.split == split)
    return [paths[i] for i in np.linspace(0, len(paths) - 1, min(n, len(paths))).astype(int)]


def held_out_clips(ds, digit: str, n: int = 100) -> list[Path]:
    """``n`` recordings of a held-out digit that the fine-tune was not given (neither split saw
    the digit in training), spread over speakers and takes."""
    given = set(clips_of(ds, digit, "train", 10))
    paths = sorted(c.path for c in ds.clips if c.label == digit and c.path not in given)
    return [paths[i] for i in np.linspace(0, len(paths) - 1, n).astype(int)]


def accuracy_on_files(bundle: Bundle, paths: list[Path], label: str) -> float:
    classifier = BundleClassifier(bundle)
    x = np.stack([classifier.features(*read_wav(p)) for p in paths])
    return float(np.mean(classifier.logits(x).argmax(axis=1) == bundle.classes.index(label)))


def old_accuracy(bundle: Bundle, fs) -> float:
    """Accuracy on the old classes' test clips (predictions over all of the bundle's classes)."""
    return float(np.mean(BundleClassifier(bundle).logits(fs.x_test).argmax(axis=1) == fs.y_test))


@pytest.fixture(scope="module")
def added(fsdd_base, bundle_path) -> dict:
    ds, fs = fsdd_base
    base = Bundle.load(bundle_path)
    clips = clips_of(ds, "8", "train", 10)
    return {
        "base": base,
        "replay": finetune.add_keyword(base, "8", clips, seed=0),
        "no_replay": finetune.add_keyword(base, "8", clips, seed=0, replay=False),
        "weighted": finetune.add_keyword(base, "8", clips, seed=0, new_weight=3.0),
        "test_clips": held_out_clips(ds, "8"),
    }


def test_add_keyword_learns_the_new_digit_and_keeps_old_classes_with_replay(fsdd_base, added) -> None:
    _, fs = fsdd_base
    base, new, blind = added["base"], added["replay"], added["no_replay"]
    assert new.classes == [*base.classes, "8"]
    assert new.head_weight.shape == (len(base.classes) + 1, base.embedding_dim)
    assert new.models == base.models  # only the head changes
    acc_new = accuracy_on_files(new, added["test_clips"], "8")
    before, after, without = old_accuracy(base, fs), old_accuracy(new, fs), old_accuracy(blind, fs)
    print(f"new digit {acc_new:.3f}; old classes {before:.3f} -> {after:.3f} with replay, {without:.3f} without")
    assert acc_new >= MIN_NEW_ACCURACY
    assert after >= before - MAX_OLD_DROP
    assert without < after - 0.2  # without replay the head forgets: why the coreset travels in the bundle
    entry = new.history[-1]
    assert entry["op"] == "add_keyword" and entry["keyword"] == "8" and entry["n_clips"] == 10
    assert entry["replay"] and entry["n_replay"] == len(base.replay_labels) and entry["seconds"] < 10
    # the 10 clips were remembered as replay for later fine-tunes
    assert len(new.replay_labels) == len(base.replay_labels) + 10 and (new.replay_labels == 8).sum() == 10


def test_few_shot_weight_rule() -> None:
    """25 / clips, capped by what the replay memory can hold (replay per class / 10), never below 1."""
    assert finetune.few_shot_weight(5, 50) == 5.0 and finetune.few_shot_weight(10, 50) == 2.5
    assert finetune.few_shot_weight(5, 30) == 3.0 and finetune.few_shot_weight(5, 10) == 1.0
    assert finetune.few_shot_weight(50, 100) == 1.0 and finetune.few_shot_weight(0, 50) == 1.0


def test_few_clip_keyword_weight_is_recorded_and_moves_the_head(added) -> None:
    """The fixture's 10-per-class replay keeps plain balance (1x, recorded in the history); an
    explicit weight makes the head surer of the new word on held-out clips."""
    new, weighted = added["replay"], added["weighted"]
    k = str(len(added["base"].classes))
    assert new.history[-1]["new_weight"] == {k: 1.0} and weighted.history[-1]["new_weight"] == {k: 3.0}
    classifier = BundleClassifier(new)
    x = np.stack([classifier.features(*read_wav(p)) for p in added["test_clips"]])

    def mean_probability(bundle: Bundle) -> float:
        logits = BundleClassifier(bundle).logits(x)
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        return float(np.mean(p[:, -1] / p.sum(axis=1)))

    assert mean_probability(weighted) > mean_probability(new) + 0.01
    with pytest.raises(KitError, match="--new-weight must be positive"):
        finetune.add_keyword(added["base"], "9", added["test_clips"][:3], new_weight=0.0)


def test_second_keyword_still_remembers_the_first(fsdd_base, added, tmp_path) -> None:
    ds, fs = fsdd_base
    path = added["replay"].save(tmp_path / "plus8.kit")
    twice = finetune.add_keyword(Bundle.load(path), "9", clips_of(ds, "9", "train", 10), seed=0)
    assert twice.classes[-2:] == ["8", "9"] and len(twice.history) == 2
    acc9 = accuracy_on_files(twice, held_out_clips(ds, "9"), "9")
    acc8 = accuracy_on_files(twice, added["test_clips"], "8")
    print(f"after adding 9: digit 9 {acc9:.3f}, digit 8 {acc8:.3f}, old classes {old_accuracy(twice, fs):.3f}")
    assert acc8 >= MIN_NEW_ACCURACY  # the first keyword survives the second fine-tune (remembered clips)
    assert acc9 >= MIN_NEW_ACCURACY - 0.05  # "nine" is the harder digit here (measured 0.82)
    assert old_accuracy(twice, fs) >= old_accuracy(added["base"], fs) - MAX_OLD_DROP


def test_personalize_adapts_the_head_to_one_speaker(fsdd_base, bundle_path) -> None:
    ds, fs = fsdd_base
    base = Bundle.load(bundle_path)
    speaker = "yweweler"
    mine = [c.path for c in ds.clips if c.group == speaker and c.label not in HELD_OUT]
    adapt = [p for p in mine if p.stem.endswith(("_5", "_6"))]  # two takes per digit; labels from the "3_" prefix
    held = [p for p in mine if p.stem.endswith(("_0", "_1", "_2", "_3", "_4"))]
    tuned = finetune.personalize(base, adapt, seed=0)
    assert tuned.classes == base.classes
    assert not np.allclose(tuned.head_weight, base.head_weight)
    assert len(tuned.replay_labels) == len(base.replay_labels)  # personal clips are not remembered by default
    entry = tuned.history[-1]
    assert entry["op"] == "personalize" and entry["n_clips"] == len(adapt) == 16
    assert entry["train_accuracy_clips"] == 1.0

    def speaker_accuracy(bundle: Bundle) -> float:
        classifier = BundleClassifier(bundle)
        x = np.stack([classifier.features(*read_wav(p)) for p in held])
        y = np.array([bundle.classes.index(p.name.split("_")[0]) for p in held])
        return float(np.mean(classifier.logits(x).argmax(axis=1) == y))

    before, after = speaker_accuracy(base), speaker_accuracy(tuned)
    print(
        f"speaker {speaker}: {before:.3f} -> {after:.3f}; "
        f"all speakers {old_accuracy(base, fs):.3f} -> {old_accuracy(tuned, fs):.3f}"
    )
    assert after >= before - 0.02
    assert old_accuracy(tuned, fs) >= old_accuracy(base, fs) - MAX_OLD_DROP


def test_personalize_labels_from_folder_or_prefix(tmp_path: Path) -> None:
    classes = ["_silence_", "on", "one", "yes"]
    assert finetune.label_of(tmp_path / "yes" / "take1.wav", classes) == "yes"
    assert finetune.label_of(tmp_path / "mine" / "one_3.wav", classes) == "one"
    assert finetune.label_of(tmp_path / "mine" / "_silence__2.wav", classes) == "_silence_"
    with pytest.raises(
        KitError, match=r"take1.wav: cannot tell its class .*folder 'mine'.*classes: _silence_, on, one, yes"
    ):
        finetune.label_of(tmp_path / "mine" / "take1.wav", classes)


# Command lines, files and errors ---------------------------------------------------------------
def test_device_command_updates_in_place_with_backup_or_writes_out(fsdd_base, bundle_path, tmp_path, capsys) -> None:
    ds, _ = fsdd_base
    target = tmp_path / "b.kit"
    target.write_bytes(bundle_path.read_bytes())
    original = target.read_bytes()
    clips = [str(p) for p in clips_of(ds, "9", "train", 6)]
    out = tmp_path / "other.kit"
    assert (
        runtime_main(["finetune", str(target), "--add-keyword", "nine", *clips, "--out", str(out), "--seed", "1"]) == 0
    )
    assert target.read_bytes() == original and not (tmp_path / "b.kit.bak").exists()
    assert Bundle.load(out).classes[-1] == "nine"
    assert runtime_main(["finetune", str(target), "--add-keyword", "nine", *clips]) == 0
    printed = capsys.readouterr().out
    assert "added 'nine' from 6 clips" in printed and "b.kit.bak" in printed
    assert (tmp_path / "b.kit.bak").read_bytes() == original
    updated = Bundle.load(target)
    assert updated.classes[-1] == "nine" and updated.history[-1]["seed"] == 0
    assert Bundle.load(out).history[-1]["seed"] == 1


def test_fine_tune_path_runs_without_torch(fsdd_base, bundle_path, tmp_path) -> None:
    ds, _ = fsdd_base
    clips = [str(p) for p in clips_of(ds, "9", "train", 5)]
    mine = [str(p) for p in clips_of(ds, "3", "train", 2)]  # labelled by their "3_" prefix
    out = tmp_path / "no-torch.kit"
    via_kit = tmp_path / "via-kit.kit"
    code = (
        "import sys; sys.modules['torch'] = None\n"  # any `import torch` now raises ImportError
        "from deploy.runtime.__main__ import main\n"
        f"rc = main(['finetune', {str(bundle_path)!r}, '--add-keyword', 'nine', *{clips!r}, '--out', {str(out)!r}])\n"
        "bad = [m for m in ('torch', 'scipy', 'librosa', 'kit') if sys.modules.get(m) is not None]\n"
        "assert rc == 0 and not bad, (rc, bad)\n"
        "from kit.cli import main as kit_main\n"  # the `kit finetune` path, too
        "try:\n"
        f"    kit_main(['finetune', {str(bundle_path)!r}, '--personalize', *{mine!r}, '--out', {str(via_kit)!r}])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code in (0, None), exc.code\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert Bundle.load(out).classes[-1] == "nine"
    assert Bundle.load(via_kit).history[-1]["op"] == "personalize"


def _one_line_error(argv: list[str], capsys) -> str:
    assert runtime_main(["finetune", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_device_command_errors_are_one_line(fsdd_base, bundle_path, tmp_path, capsys) -> None:
    ds, _ = fsdd_base
    good = [str(p) for p in clips_of(ds, "9", "train", 3)]
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt " + b"\x00" * 6)
    short = tmp_path / "short.wav"
    sf.write(short, np.zeros(100, np.float32) + 0.1, 8000)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(8000, np.float32), 8000)
    empty_dir = tmp_path / "nothing"
    empty_dir.mkdir()
    stranger = tmp_path / "mine" / "hello_1.wav"
    stranger.parent.mkdir()
    sf.write(stranger, 0.1 * np.sin(np.arange(8000) / 5).astype(np.float32), 8000)
    b = str(bundle_path)
    assert "corrupt.wav" in _one_line_error([b, "--add-keyword", "nine", *good, str(corrupt)], capsys)
    assert "short.wav: clip is too short" in _one_line_error([b, "--add-keyword", "nine", str(short)], capsys)
    assert "silent.wav: clip is silent" in _one_line_error([b, "--add-keyword", "nine", str(silent)], capsys)
    assert "'3' is already a class" in _one_line_error([b, "--add-keyword", "3", *good], capsys)
    assert "needs the keyword name followed by at least one clip" in _one_line_error(
        [b, "--add-keyword", "nine"], capsys
    )
    assert "nothing: folder holds no .wav clips" in _one_line_error([b, "--personalize", str(empty_dir)], capsys)
    err = _one_line_error([b, "--personalize", str(stranger)], capsys)
    assert "hello_1.wav: cannot tell its class" in err and "classes: 0, 1" in err
    assert "no-such.wav: no such audio file" in _one_line_error(
        [b, "--add-keyword", "nine", str(tmp_path / "no-such.wav")], capsys
    )
    assert "--head mlp" in _one_line_error([b, "--add-keyword", "nine", *good, "--head", "mlp"], capsys)
    assert "no such file" in _one_line_error([str(tmp_path / "missing.kit"), "--add-keyword", "nine", *good], capsys)
    empty = Bundle.load(bundle_path)
    empty = dataclasses.replace(
        empty,
        replay_features=np.zeros((0, *empty.feature_config.shape), np.float32),
        replay_labels=np.zeros(0, np.int64),
    )
    no_memory = empty.save(tmp_path / "no-memory.kit")
    assert "no replay memory" in _one_line_error([str(no_memory), "--add-keyword", "nine", *good], capsys)
    assert not list(tmp_path.glob("*.bak"))  # nothing was written by a failed fine-tune


def _kit(argv: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        kit_main(argv)
    captured = capsys.readouterr()
    return exc.value.code, captured.out, captured.err.strip()


def test_kit_finetune_command(fsdd_base, bundle_path, tmp_path, capsys) -> None:
    ds, _ = fsdd_base
    clips = [str(p) for p in clips_of(ds, "9", "train", 5)]
    out = tmp_path / "kit.kit"
    code, printed, _ = _kit(["finetune", str(bundle_path), "--add-keyword", "nine", *clips, "--out", str(out)], capsys)
    assert code == 0 and "added 'nine' from 5 clips" in printed and Bundle.load(out).classes[-1] == "nine"
    for argv, message in [
        ([str(bundle_path), "--add-keyword", "3", *clips], "'3' is already a class"),
        ([str(bundle_path), "--personalize"], "no clips given"),
        ([str(bundle_path), *clips], "choose exactly one of --add-keyword NAME or --personalize"),
        ([str(bundle_path), "--personalize", clips[0], "--head", "mlp"], "--head mlp"),
    ]:
        code, _, err = _kit(["finetune", *argv, "--out", str(tmp_path / "never.kit")], capsys)
        assert code == 2 and err.startswith("error:") and message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "never.kit").exists()
