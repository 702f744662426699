"""``kit train DATASET`` and its parts on real recordings: the extra-folder loader, the official
v0.02 lists, the recipe's noise (training part only) and a trained, exportable model."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from kit.data import load_dataset
from kit.data.speech_commands import KEYWORDS, NOISE_TRAIN_FRACTION
from kit.errors import KitError


def _tiny_speech_commands(data_dir: Path, root: Path, per_word: int = 3, lists: bool = False) -> Path:
    """A copy of a few real Speech Commands clips per keyword (optionally with official lists)."""
    sc = root / "speech_commands"
    testing, validation = [], []
    for word in KEYWORDS:
        (sc / word).mkdir(parents=True)
        for i, path in enumerate(sorted((data_dir / "speech_commands" / word).glob("*.wav"))[:per_word]):
            shutil.copy(path, sc / word / path.name)
            key = f"{word}/{path.name}"
            (testing if i == 0 else validation if i == 1 else []).append(key)
    if lists:
        (sc / "testing_list.txt").write_text("\n".join(testing) + "\n")
        (sc / "validation_list.txt").write_text("\n".join(validation) + "\n")
    return sc


def test_extra_folder_adds_training_clips_only(data_dir, tmp_path):
    extra = data_dir / "speech_commands_train"
    base = load_dataset("speech_commands", data_dir)
    ds = load_dataset("speech_commands", data_dir, extra_train=[extra])
    added = [c for c in ds.clips if extra in c.path.parents]
    assert len(added) == len(list(extra.glob("*/*.flac"))) and {c.split for c in added} == {"train"}
    assert {c.label for c in added} == {"yes", "no", "up", "down", "left", "right", "stop", "go"}
    assert ds.clips_in("test") == base.clips_in("test")
    assert ds.fingerprint()["sha256"] != base.fingerprint()["sha256"] and str(extra) in ds.split_rule


def test_extra_folder_refuses_a_test_speaker(data_dir, tmp_path):
    test_clip = next(c for c in load_dataset("speech_commands", data_dir).clips_in("test") if c.label == "yes")
    folder = tmp_path / "extra" / "yes"
    folder.mkdir(parents=True)
    # a real training clip renamed to a test speaker's id
    source = sorted((data_dir / "speech_commands_train" / "yes").glob("*.flac"))[0]
    shutil.copy(source, folder / f"{test_clip.group}_nohash_7.flac")
    shutil.copy(sorted((data_dir / "speech_commands_train" / "no").glob("*.flac"))[0], folder / "x.flac")
    speaker = test_clip.group
    with pytest.raises(KitError, match=rf"{speaker}_nohash_7.flac: speaker '{speaker}' is also in the test"):
        load_dataset("speech_commands", data_dir, extra_train=[tmp_path / "extra"])
    with pytest.raises(KitError, match="no such folder"):
        load_dataset("speech_commands", data_dir, extra_train=[tmp_path / "missing"])
    with pytest.raises(KitError, match="speech_commands only"):
        load_dataset("fsdd", data_dir, extra_train=[tmp_path / "extra"])


def test_official_v002_lists_still_load_with_an_extra_folder(data_dir, tmp_path):
    _tiny_speech_commands(data_dir, tmp_path, per_word=3, lists=True)
    extra = tmp_path / "extra" / "yes"
    extra.mkdir(parents=True)
    for path in sorted((data_dir / "speech_commands_train" / "yes").glob("*.flac"))[:2]:
        shutil.copy(path, extra / path.name)
    ds = load_dataset("speech_commands", tmp_path, extra_train=[tmp_path / "extra"])
    assert "validation_list" in ds.split_rule
    by_split = {s: [c for c in ds.clips if c.split == s] for s in ("train", "val", "test")}
    assert len(by_split["test"]) == len(by_split["val"]) == len(KEYWORDS)
    assert len(by_split["train"]) == len(KEYWORDS) + 2
    assert all(c.split == "train" for c in ds.clips if "extra" in c.path.parts)


def test_recipe_noise_never_comes_from_the_test_part(data_dir, tmp_path):
    """The test part of a real noise file is overwritten with a marker far above any recording;
    every recipe window (silence at 0 dB gain and copies) must stay below it."""
    from kit.data.noise import background_noise
    from kit.training.waveaug import noise_window

    root = tmp_path / "speech_commands" / "_background_noise_"
    root.mkdir(parents=True)
    y, rate = sf.read(data_dir / "speech_commands" / "_background_noise_" / "white_noise.wav", dtype="float32")
    y = 0.05 * y / np.max(np.abs(y))
    boundary = int(np.ceil(NOISE_TRAIN_FRACTION * len(y)))
    y[boundary:] = 0.9  # the marker
    sf.write(root / "white_noise.wav", y, rate)
    train = background_noise(tmp_path, rate, "train")
    test = background_noise(tmp_path, rate, "test")
    assert len(train) == len(test) == 1 and train[0].end_s == test[0].start_s
    assert np.max(np.abs(train[0].audio)) <= 0.05 + 1e-6 and np.min(test[0].audio[10:]) > 0.89
    rng = np.random.default_rng(0)
    windows = [noise_window([rec.audio for rec in train], rate, rng) for _ in range(500)]
    assert max(float(np.max(np.abs(w))) for w in windows) <= 0.05 + 1e-6


def test_recipe_set_uses_training_noise_and_records_its_parts(data_dir, tmp_path):
    from kit.training import Recipe, load_for_training, recipe_training_set

    audio, fs = load_for_training(
        "speech_commands",
        data_dir,
        task="kws12",
        limit_per_class=3,
        progress=False,
        extra_train=[data_dir / "speech_commands_train"],
    )
    recipe = Recipe(copies=1, fsdd_negatives=4, esc_cuts_per_clip=0, quiet_silence=5, calibration_percent=0)
    built = recipe_training_set(audio, fs, recipe, data_dir)
    n = len(fs.y_train)
    silence = fs.classes.index("_silence_")
    assert built.counts["augmented copies"] == n - int(np.sum(fs.y_train == silence))
    assert built.counts["hard negatives (_unknown_)"] == 8 and built.counts["quiet silence (_silence_)"] == 5
    assert len(built.x) == len(built.y) == n + built.counts["augmented copies"] + 8 + 5
    assert np.isfinite(built.x).all() and not np.array_equal(built.x[n], built.x[0])
    unknown = fs.classes.index("_unknown_")
    assert np.sum(built.y == unknown) == np.sum(fs.y_train == unknown) * 2 + 8


def _kit(args: list[str]) -> None:
    from kit.cli import main

    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code in (0, None)


def _small_fsdd_run(data_dir, out) -> list[str]:
    """``kit train fsdd`` on 20 clips per class, a width-16 ConvNet, 40 epochs: about 10 s."""
    small = "train fsdd --max-per-class 20 --epochs 40 --width 16 --copies 1 --quiet".split()
    return [*small, "--data-dir", str(data_dir), "--out", str(out)]


def test_kit_train_dataset_writes_an_exportable_model_above_chance(data_dir, tmp_path):
    import json

    from kit.models import load_model

    out = tmp_path / "run"
    args = [*_small_fsdd_run(data_dir, out), "--seed", "3"]
    _kit(args)
    metrics = json.loads((out / "metrics.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert metrics["n_test"] == 200 and metrics["accuracy"] > 0.3  # chance is 0.1
    assert config["recipe"]["copies"] == 1 and config["train"]["balance"] == "sampling"
    model, meta = load_model(out / "model.kit")
    assert meta["train_config"]["recipe"]["noise"] is True and meta["train_config"]["label_smoothing"] == 0.1
    held = meta["training_set"]["clips held out for threshold calibration"]
    assert meta["seed"] == 3 and meta["training_set"]["augmented copies"] == 200 - held
    assert 0 < held < 60 and meta["train_config"]["recipe"]["calibration_percent"] == 10
    # a rerun (other training settings) reuses the cached recipe set
    _kit([*args, "--epochs", "1"])
    assert json.loads((out / "metrics.json").read_text())["recipe_set_reused"] is True
    _kit(["export", str(out / "model.kit"), "--format", "onnx", "--out", str(tmp_path / "m.onnx")])
    assert (tmp_path / "m.onnx").stat().st_size > 1000
    # kit bundle accepts it with a replay coreset from the same input space (same clips, same normaliser)
    from deploy.runtime.coreset import Coreset
    from kit.training import load_for_training

    _, fs = load_for_training("fsdd", data_dir, limit_per_class=20, progress=False)
    picks = np.concatenate([np.flatnonzero(fs.y_train == c)[:2] for c in range(10)])
    Coreset(
        fs.x_train[picks], fs.y_train[picks], fs.classes, fs.config, fs.normalizer, method="random", source=fs.source
    ).save(tmp_path / "replay.kit")
    _kit(
        ["bundle", str(out / "model.kit"), "--coreset", str(tmp_path / "replay.kit"), "--out", str(tmp_path / "b.kit")]
    )
    assert (tmp_path / "b.kit").stat().st_size > 1000


def test_kit_train_dataset_on_another_front_end(data_dir, tmp_path):
    """``--feature log_mel`` trains on 40 log-mel bands (the input BC-ResNet was designed for) and
    the artifact carries that front-end, so export and the device compute the same features."""
    import json

    from kit.models import load_model

    out = tmp_path / "mel"
    _kit([*_small_fsdd_run(data_dir, out), "--feature", "log_mel"])
    metrics = json.loads((out / "metrics.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert metrics["accuracy"] > 0.3, metrics["accuracy"]  # chance is 0.1
    model, meta = load_model(out / "model.kit")
    assert model.arch == "convnet" and model.in_shape == (1, 40, 64)
    assert config["feature_config"]["kind"] == "log_mel" and meta["feature_config"]["kind"] == "log_mel"


def test_kit_train_dataset_bad_options_are_one_line_errors(data_dir, tmp_path, capsys):
    from kit.cli import main

    junk = tmp_path / "junk.kit"
    junk.write_bytes(b"not a model")
    for extra, message in (
        (["--teacher", str(tmp_path / "missing.kit")], "no such model file"),
        (["--teacher", str(junk), "--teacher-weight", "0"], "--teacher-weight"),
        (["--teacher", str(junk)], "junk.kit: not a readable kit artifact"),
        (["--snr", "30,5"], "--snr"),
        (["--balance", "odd"], "--balance"),
        (["--unknown-words-share", "1"], "--unknown-words-share"),
        (["--unknown-words-share", "0.5", "--no-recipe"], "--unknown-words-share needs the recipe"),
        (["--unknown-words-share", "0.5"], "fsdd has no _unknown_ class"),
        (["--teacher", str(junk), "--folds", "all"], "--teacher cannot be combined with --folds"),
        (["--lr-schedule", "linear"], "--lr-schedule"),
        (["--feature", "cqt"], "unknown feature kind 'cqt'"),
        (["--optimizer", "lamb"], "--optimizer"),
        (["--weight-decay", "-1"], "--weight-decay"),
        (["--extra-train", str(tmp_path)], "--extra-train"),
        (["--word-head", "1", "--no-recipe"], "--word-head"),
        (["--word-head", "20"], "--word-head"),
        (["--word-head", "1"], "no _unknown_ class"),  # FSDD: no words for a word head to tell apart
    ):
        with pytest.raises(SystemExit) as exc:
            main(
                [
                    "train",
                    "fsdd",
                    "--data-dir",
                    str(data_dir),
                    "--max-per-class",
                    "2",
                    "--out",
                    str(tmp_path / "r"),
                    "--quiet",
                    *extra,
                ]
            )
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1


def test_class_balance_by_sampling_and_by_loss_weights():
    import torch

    from kit.training.loop import _batches
    from kit.training.targets import classification_loss

    labels = np.array([0] * 900 + [1] * 90 + [2] * 10)
    counts = np.bincount(labels)
    stream = _batches(len(labels), 300, np.random.default_rng(0), 1.0 / counts[labels])
    drawn = np.bincount(labels[np.concatenate([next(stream) for _ in range(20)])], minlength=3) / 6000
    assert np.all(np.abs(drawn - 1 / 3) < 0.03)  # each class about a third, though 90 % of clips are class 0
    logits = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    targets = torch.tensor([0, 0, 0, 0, 1, 2])
    weight = torch.tensor([0.5, 2.0, 4.0])
    per_clip = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
    expected = (weight[targets] * per_clip).sum() / weight[targets].sum()
    assert torch.isclose(classification_loss(logits, targets, 0.0, weight), expected)
    soft = torch.nn.functional.one_hot(targets, 3).float()
    assert torch.isclose(classification_loss(logits, soft, 0.0, weight), expected, atol=1e-6)


def test_unknown_words_share_reweights_only_the_unknown_class():
    from kit.training.loop import draw_weights
    from kit.training.recipe import Recipe, unknown_sampling_weights

    classes = ["_silence_", "_unknown_", "no", "yes"]
    # _unknown_ rows: 10 spoken words (word labels 4, 5) and 90 hard negatives (word label = the class)
    y = np.array([0] * 50 + [1] * 100 + [2] * 30 + [3] * 20)
    words = y.copy()
    words[50:60] = [4, 5] * 5
    weights = unknown_sampling_weights(y, words, classes, 0.5)
    spoken, negatives = weights[50:60], weights[60:150]
    assert np.isclose(spoken.sum(), negatives.sum()) and np.isclose(weights[50:150].sum(), 100)  # half each
    assert np.all(weights[y != 1] == 1.0)  # nothing else moves
    assert np.isclose(unknown_sampling_weights(y, words, classes, 0.8)[50:60].sum(), 80)
    assert np.all(unknown_sampling_weights(y, y, classes, 0.5) == 1.0)  # no spoken words: as they fall
    assert np.all(unknown_sampling_weights(y, words, ["a", "b", "c", "d"], 0.5) == 1.0)  # no _unknown_ class
    # class balance by sampling: each class a quarter of the draws, the spoken words half of _unknown_'s
    p = draw_weights(y, 4, "sampling", weights)
    p = p / p.sum()
    assert np.allclose(np.bincount(y, weights=p), 0.25) and np.isclose(p[50:60].sum(), 0.125)
    plain = draw_weights(y, 4, "sampling")
    assert np.allclose(plain, 1.0 / np.bincount(y)[y])  # without weights: 1 / class count, as before
    assert draw_weights(y, 4, "none") is None and np.array_equal(draw_weights(y, 4, "none", weights), weights)
    with pytest.raises(KitError, match="sample weights"):
        draw_weights(y, 4, "sampling", -weights)
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(KitError, match="--unknown-words-share"):
            Recipe(unknown_words_share=bad)


def test_recipe_keeps_a_calibration_hold_out_of_whole_speakers_out_of_training(data_dir):
    """The speakers ``kit bundle --max-fa-per-hour`` calibrates on are never trained on, nor are the
    hard-negative files kept for calibration; the validation stream draws from exactly those."""
    from kit.training import Recipe, load_for_training, recipe_training_set
    from kit.training.holdout import calibration_mask
    from kit.training.negatives import hard_negative_clips
    from kit.training.recipe import _training_clips
    from kit.training.valstream import stream_clips

    audio, fs = load_for_training(
        "speech_commands",
        data_dir,
        task="kws12",
        limit_per_class=40,
        progress=False,
        extra_train=[data_dir / "speech_commands_train"],
    )
    recipe = Recipe(copies=0, hard_negatives=False, quiet_silence=0, calibration_percent=10)
    built = recipe_training_set(audio, fs, recipe, data_dir)
    clips = _training_clips(audio, fs)
    held = calibration_mask(clips, 10, audio.clips_in("train"))
    assert 0 < held.sum() < len(clips) and built.counts["clips held out for threshold calibration"] == held.sum()
    assert len(built.y) == len(fs.y_train) - held.sum()
    trained_speakers = {c.group for c, h in zip(clips, held) if not h}
    held_speakers = {c.group for c, h in zip(clips, held) if h}
    assert held_speakers and not held_speakers & trained_speakers  # whole speakers, never split
    assert not any(c.label == "_silence_" for c, h in zip(clips, held) if h)

    meta = {"source": fs.source, "train_config": {"recipe": recipe.to_dict()}}
    _, stream = stream_clips(meta, data_dir)
    assert stream and not {c.group for c in stream} & trained_speakers
    assert {c.label for c in stream} >= {"yes", "no", "_unknown_"}
    no_hold_out = {**meta, "train_config": {"recipe": Recipe(calibration_percent=0).to_dict()}}
    _, everything = stream_clips(no_hold_out, data_dir)
    assert len(everything) > len(stream) and {c.group for c in everything} & trained_speakers

    rng = np.random.default_rng
    train_digits, train_sounds, _ = hard_negative_clips(data_dir, 10_000, True, rng(0), "", 10, "train")
    cal_digits, cal_sounds, _ = hard_negative_clips(data_dir, 10_000, True, rng(0), "", 10, "calibration")
    all_digits, all_sounds, _ = hard_negative_clips(data_dir, 10_000, True, rng(0))
    assert cal_digits and cal_sounds
    assert not {c.path for c in train_digits} & {c.path for c in cal_digits}
    assert {c.path for c in train_digits} | {c.path for c in cal_digits} == {c.path for c in all_digits}
    assert len(train_sounds) + len(cal_sounds) == len(all_sounds)


def test_small_datasets_hold_out_single_clips_and_old_recipes_held_out_nothing(data_dir):
    from kit.data import load_dataset
    from kit.training import Recipe
    from kit.training.holdout import MIN_GROUPS, calibration_mask

    fsdd = load_dataset("fsdd", data_dir).clips_in("train")
    assert len({c.group for c in fsdd}) < MIN_GROUPS
    held = calibration_mask(fsdd, 10)
    assert 0.05 < held.mean() < 0.15  # about 10 % of the takes, not all-or-nothing speakers
    assert not calibration_mask(fsdd, 0).any()
    assert Recipe.from_dict({"copies": 2}).calibration_percent == 0  # a model recorded before the hold-out
    with pytest.raises(KitError, match="calibration_percent"):
        Recipe(calibration_percent=80)


def test_reversed_keywords_are_added_as_unknown_and_are_the_clips_played_backwards(data_dir):
    from deploy.runtime.features import extract_features
    from kit.audio import load_audio
    from kit.training import Recipe, load_for_training, recipe_training_set
    from kit.training.recipe import _training_clips
    from kit.training.waveaug import place_in_window

    audio, fs = load_for_training("speech_commands", data_dir, task="kws12", limit_per_class=3, progress=False)
    plain = dict(copies=0, hard_negatives=False, quiet_silence=0, noise=False, shift=False, gain_db=(0.0, 0.0))
    base = recipe_training_set(audio, fs, Recipe(**plain, calibration_percent=0), data_dir)
    built = recipe_training_set(audio, fs, Recipe(**plain, reversed_negatives=1.0, calibration_percent=0), data_dir)
    unknown, silence = fs.classes.index("_unknown_"), fs.classes.index("_silence_")
    keyword_rows = np.flatnonzero(~np.isin(fs.y_train, [unknown, silence]))
    assert built.counts["reversed keywords (_unknown_)"] == len(keyword_rows) > 0
    added_x, added_y = built.x[len(base.x) :], built.y[len(base.y) :]
    assert len(added_x) == len(keyword_rows) and np.all(added_y == unknown)
    clips = _training_clips(audio, fs)
    rate, n = fs.config.sample_rate, int(round(fs.config.sample_rate * fs.config.duration_s))
    for row, i in zip(added_x[:3], keyword_rows[:3]):
        y = load_audio(clips[i].path, rate, clips[i].offset_s, clips[i].duration_s)
        backwards = fs.normalizer.transform(extract_features(place_in_window(y[::-1].copy(), n, 0), fs.config)[None])[0]
        assert np.allclose(row, backwards, atol=1e-5)
        assert not np.allclose(row, fs.x_train[i], atol=1e-2)  # not the keyword itself
    half = recipe_training_set(audio, fs, Recipe(**plain, reversed_negatives=0.5, calibration_percent=0), data_dir)
    assert half.counts["reversed keywords (_unknown_)"] == round(0.5 * len(keyword_rows))
    with pytest.raises(KitError, match="reversed_negatives"):
        Recipe(reversed_negatives=1.5)
