"""The training-only word head (``kit train DATASET --word-head W``): the recipe labels every
``_unknown_`` clip with its spoken word, the loop trains a second head on those labels beside the
model's own, and the saved model keeps only its own head."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from kit.data.types import Clip
from kit.errors import KitError
from kit.training import TrainConfig
from kit.training.loop import train_model
from kit.training.recipe import unknown_word, word_labels

CLASSES = ["_silence_", "_unknown_", "no", "yes"]


def _clip(path: str, label: str) -> Clip:
    return Clip(path=Path(path), label=label, split="train", group="s")


def test_unknown_words_are_read_from_both_speech_commands_layouts():
    clips = [
        _clip("sc/bed/0a1b_nohash_0.wav", "_unknown_"),  # release layout: the word is the folder
        _clip("sc/_unknown_/cat_0a1b_nohash_1.wav", "_unknown_"),  # test-set layout: the name's prefix
        _clip("sc/_unknown_/bed_0c2d_nohash_0.wav", "_unknown_"),
        _clip("sc/yes/0a1b_nohash_0.wav", "yes"),
        _clip("sc/_background_noise_/white_noise.wav", "_silence_"),
    ]
    assert [unknown_word(c) for c in clips[:3]] == ["bed", "cat", "bed"]
    labels, names = word_labels(clips, CLASSES)
    assert names == CLASSES + ["bed", "cat"]
    assert labels.tolist() == [4, 5, 4, 3, 0]


def test_recipe_set_labels_each_unknown_clip_with_its_word_on_real_recordings(data_dir):
    from kit.training import Recipe, load_for_training, recipe_training_set
    from kit.training.recipe import _training_clips

    audio, fs = load_for_training("speech_commands", data_dir, task="kws12", limit_per_class=12, progress=False)
    recipe = Recipe(copies=1, fsdd_negatives=3, esc_cuts_per_clip=0, quiet_silence=4, calibration_percent=0)
    built = recipe_training_set(audio, fs, recipe, data_dir)
    k, unknown = len(fs.classes), fs.classes.index("_unknown_")
    assert built.words is not None and built.words.shape == built.y.shape
    assert built.word_classes[:k] == list(fs.classes) and len(built.word_classes) > k + 1  # several real words
    # a row is a word of _unknown_ exactly when its class is _unknown_ and it is no hard negative
    assert np.all(built.y[built.words >= k] == unknown)
    assert np.array_equal(built.words[built.y != unknown], built.y[built.y != unknown])
    clips = _training_clips(audio, fs)
    n = len(clips)
    for clip, word in zip(clips, built.words[:n]):
        expected = unknown_word(clip) if clip.label == "_unknown_" else clip.label
        assert built.word_classes[word] == expected
    # --unknown-words-share 0.5: the spoken words draw half of _unknown_'s share, the hard negatives the rest
    from kit.training.recipe import unknown_sampling_weights

    weights = unknown_sampling_weights(built.y, built.words, list(fs.classes), 0.5)
    spoken = (built.y == unknown) & (built.words >= k)
    negatives = (built.y == unknown) & ~spoken
    assert spoken.sum() and negatives.sum()  # both parts present in the real recordings
    assert np.isclose(weights[spoken].sum(), weights[negatives].sum())
    copies = built.counts["augmented copies"]

    kept = [w for c, w in zip(clips, built.words[:n]) if c.label != "_silence_"]
    assert built.words[n : n + copies].tolist() == kept  # each copy keeps its clip's word
    assert np.all(built.words[n + copies : n + copies + 6] == unknown)  # FSDD hard negatives: plain _unknown_


def _words_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class 0 holds two sub-words (0 and 2 in ``words``) with opposite patterns; class 1 a third."""
    rng = np.random.default_rng(seed)
    pattern = rng.normal(size=(3, 1, 8, 8)).astype(np.float32)
    words = rng.integers(0, 3, size=96)
    x = pattern[words] + 0.3 * rng.normal(size=(96, 1, 8, 8)).astype(np.float32)
    y = (words == 1).astype(np.int64)
    return x, y, words


def test_word_head_shapes_the_backbone_and_is_not_saved():
    x, y, words = _words_data()
    config = TrainConfig(arch="convnet", arch_kwargs={"width": 8, "depth": 1}, epochs=3, batch_size=32, seed=3)
    plain = train_model(x, y, 2, config, progress=False)
    unused = train_model(x, y, 2, config, progress=False, words=words)  # weight 0: words are ignored
    with_head = train_model(x, y, 2, config.with_(word_head=1.0), progress=False, words=words)
    plain_state, head_state = plain.state_dict(), with_head.state_dict()
    assert plain_state.keys() == head_state.keys()  # the word head is gone from the model
    assert all(torch.equal(plain_state[k], v) for k, v in unused.state_dict().items())
    assert any(not torch.equal(plain_state[k], head_state[k]) for k in plain_state)
    assert with_head(torch.from_numpy(x)).shape == (96, 2)


def test_word_head_rejects_bad_word_labels():
    x, y, words = _words_data()
    config = TrainConfig(arch="convnet", arch_kwargs={"width": 8, "depth": 1}, epochs=1, word_head=1.0)
    with pytest.raises(KitError, match="word labels must be 96"):
        train_model(x, y, 2, config, progress=False, words=words[:10])
    with pytest.raises(KitError, match="--word-head"):
        TrainConfig(word_head=-1.0)


def test_recipe_cache_keeps_the_word_labels_and_serves_any_loop_option(data_dir, tmp_path):
    from kit.training import Recipe, load_for_training
    from kit.training.fulldata import cached_recipe_set

    audio, fs = load_for_training("speech_commands", data_dir, task="kws12", limit_per_class=4, progress=False)
    recipe = Recipe(copies=1, hard_negatives=False, quiet_silence=2, calibration_percent=0)
    cache = tmp_path / "recipe_set.npz"
    built, was_cached = cached_recipe_set(cache, audio, fs, recipe, data_dir)
    again, hit = cached_recipe_set(cache, audio, fs, recipe.with_(word_head=0.5), data_dir)
    assert not was_cached and hit  # the weight is a loop option: the same set serves it
    loop_only = recipe.with_(label_smoothing=0.0, specaugment=False, balance="loss", unknown_words_share=0.7)
    assert cached_recipe_set(cache, audio, fs, loop_only, data_dir)[1]
    assert np.array_equal(again.x, built.x) and np.array_equal(again.words, built.words)
    assert again.word_classes == built.word_classes and len(built.word_classes) > len(fs.classes)
    _, other = cached_recipe_set(cache, audio, fs, recipe.with_(copies=2), data_dir)
    assert not other  # a recipe that builds another set is rebuilt
