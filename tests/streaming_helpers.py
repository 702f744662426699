"""Shared by tests/test_stream.py and tests/test_live.py: a small keyword bundle trained on real
Speech Commands clips, and streams of real keywords pasted into real background noise.

The task is two keywords ("stop", "yes") plus ``_silence_`` (the dataset's silence clips and
noise cuts) and ``_unknown_`` (other words): small enough to train in about 15 s on one free
core, with silence/unknown classes so that noise between keywords is not reported. lr 3e-3 gave
79 % test accuracy and more confident scores than 1e-3 (70 %) at the same 16 000-clip budget.
The bundle is built once per test session (and per xdist worker) under pytest's base temp folder.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

KEYWORDS = ("stop", "yes")
SAMPLE_RATE = 16000
#: What the stream tests paste: (start time in s, keyword); the clip occupies [t, t + 1).
PLACEMENTS = ((2.0, "yes"), (5.5, "stop"), (9.0, "yes"))
STREAM_S = 12.0
NOISE_RMS = 0.01  # background level; keywords are scaled to a 0.5 peak (about 20 dB SNR)
NOISE_TEST_FRACTION = 0.8  # the dataset trains _silence_ on the first 80 % of each noise file


def keyword_dataset(data_dir: Path):
    """Speech Commands kws12 reduced to stop / yes / _silence_ / _unknown_ (other keywords -> unknown)."""
    from kit.data import load_dataset

    dataset = load_dataset("speech_commands", data_dir, task="kws12")
    keep = set(KEYWORDS) | {"_silence_", "_unknown_"}
    clips = [c if c.label in keep else dataclasses.replace(c, label="_unknown_") for c in dataset.clips]
    return dataclasses.replace(
        dataset,
        name="speech_commands_stop_yes",
        classes=sorted(keep),
        clips=clips,
        description=dataset.description + "; reduced to stop/yes/_silence_/_unknown_",
    )


def kws_bundle(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> dict:
    """{"bundle", "model", "coreset", "info"}: paths of a keyword bundle, built on first use."""
    root = tmp_path_factory.getbasetemp() / "kws-stop-yes"
    done = root / "info.json"
    if done.is_file():
        return {
            "bundle": root / "bundle.kit",
            "model": root / "model.kit",
            "coreset": root / "coreset.kit",
            "info": json.loads(done.read_text()),
        }
    import torch

    from deploy.bundle_builder import build_bundle
    from deploy.runtime.coreset import Coreset
    from distill import make_distiller
    from kit.features import load_feature_set
    from kit.models import save_model
    from kit.training import TrainConfig, evaluate, train_model

    torch.set_num_threads(1)
    root.mkdir(parents=True, exist_ok=True)
    # jobs=1: no forked workers (a TFLite export earlier in the session leaves JAX threads running)
    features = load_feature_set(keyword_dataset(data_dir), limit_per_class=250, progress=False, jobs=1)
    config = TrainConfig(arch_kwargs={"width": 32}, max_samples=16_000, lr=3e-3, seed=0)
    model = train_model(features.x_train, features.y_train, len(features.classes), config, progress=False)
    accuracy = evaluate(model, features.x_test, features.y_test)["accuracy"]
    save_model(
        root / "model.kit",
        model,
        {
            "classes": features.classes,
            "feature_config": features.config,
            "normalizer": features.normalizer,
            "source": features.source,
            "train_config": config.to_dict(),
            "seed": 0,
            "metrics": {"accuracy": accuracy},
        },
    )
    selector = make_distiller("random", ipc=10, seed=0).fit(features.x_train, features.y_train, len(features.classes))
    Coreset(
        selector.features_,
        selector.labels_,
        features.classes,
        features.config,
        features.normalizer,
        method="random",
        params={"ipc": 10},
        seed=0,
        source=features.source,
    ).save(root / "coreset.kit")
    build_bundle(root / "model.kit", root / "coreset.kit", root / "bundle.kit")
    info = {"test_accuracy": accuracy, "n_train": int(len(features.x_train)), "n_test": int(len(features.x_test))}
    done.write_text(json.dumps(info))
    return {"bundle": root / "bundle.kit", "model": root / "model.kit", "coreset": root / "coreset.kit", "info": info}


def held_out_clips(data_dir: Path, word: str) -> list[Path]:
    """Whole 1-s clips of ``word`` from the test split (speakers the model never heard)."""
    dataset = keyword_dataset(data_dir)
    return [c.path for c in dataset.clips if c.label == word and c.split == "test" and c.offset_s == 0]


def recognised_clips(classifier, data_dir: Path, word: str, n: int, min_probability: float = 0.7) -> list[Path]:
    """The first ``n`` test-split clips of ``word`` that the bundle alone classifies as ``word``.

    The stream tests check the streaming machinery (windows, smoothing, timing), not the small
    model's accuracy, so they paste keywords the model recognises as isolated clips.
    """
    from deploy.runtime.wavio import read_wav

    index = classifier.classes.index(word)
    found = []
    for path in held_out_clips(data_dir, word):
        y, rate = read_wav(path)
        if len(y) == rate and classifier.probabilities(y, rate)[index] >= min_probability:
            found.append(path)
            if len(found) == n:
                break
    assert len(found) == n, f"only {len(found)} test clips of '{word}' recognised alone (model too weak?)"
    return found


def background(data_dir: Path, name: str, seconds: float, rms: float = NOISE_RMS) -> np.ndarray:
    """``seconds`` of a real background recording from its held-out last 20 %, scaled to ``rms``."""
    from deploy.runtime.wavio import read_wav

    noise, rate = read_wav(data_dir / "speech_commands" / "_background_noise_" / f"{name}.wav")
    assert rate == SAMPLE_RATE
    tail = noise[int(NOISE_TEST_FRACTION * len(noise)) :]
    n = int(seconds * rate)
    out = np.tile(tail, -(-n // len(tail)))[:n].astype(np.float64)
    return (out * rms / (np.sqrt(np.mean(out**2)) + 1e-12)).astype(np.float32)


def paste(stream: np.ndarray, clip: Path, start_s: float, peak: float = 0.5) -> None:
    """Add a real clip (scaled to ``peak``) into ``stream`` at ``start_s`` seconds."""
    from deploy.runtime.wavio import read_wav

    y, rate = read_wav(clip)
    assert rate == SAMPLE_RATE
    y = y * (peak / (np.abs(y).max() + 1e-12))
    start = int(round(start_s * rate))
    stream[start : start + len(y)] += y[: len(stream) - start]


def keyword_stream(
    classifier, data_dir: Path, noise: str = "doing_the_dishes", placements=PLACEMENTS, seconds: float = STREAM_S
) -> tuple[np.ndarray, list[tuple[float, str]]]:
    """Real noise with recognised real keywords pasted at ``placements``; returns (stream, truth)."""
    stream = background(data_dir, noise, seconds)
    per_word: dict[str, list[Path]] = {}
    for _, word in placements:
        per_word.setdefault(word, [])
    for word in per_word:
        per_word[word] = recognised_clips(classifier, data_dir, word, sum(w == word for _, w in placements))
    used = {word: 0 for word in per_word}
    for start, word in placements:
        paste(stream, per_word[word][used[word]], start)
        used[word] += 1
    return np.clip(stream, -1.0, 1.0), list(placements)


def pcm16(y: np.ndarray) -> bytes:
    """float [-1, 1] -> raw signed 16-bit little-endian bytes."""
    return np.round(np.clip(y, -1.0, 32767 / 32768) * 32768).astype("<i2").tobytes()
