"""Int8 calibration data: a few hundred real training clips, clean and with the recipe's augmentation.

Why not the coreset alone: static int8 quantisation fixes every activation range from the
calibration inputs. A coreset is small (often 5-10 clips per class) and, once distilled, not even
real audio, so its ranges miss what a device hears: shifted words, words over background noise,
quiet and loud input. The int8 TFLite export calibrated on a 100-clip random coreset agreed with
fp32 on only 97.8 % of kws10 test clips (``bench/results/quantization_speech_commands_kws10.md``).
These clips come from the *training* split of the model's own dataset (recorded in its
``source``), half as they are and half as the stream-robust recipe would augment them (time shift,
training-part background noise at a random SNR, random gain), through the model's own front-end
and normaliser. Nothing from the test split is used, so the accuracy reported after quantisation
stays an honest held-out figure.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from deploy.runtime.compat import FeatureSpace
from deploy.runtime.errors import KitError
from deploy.runtime.features import extract_features

from ..audio import load_audio
from ..data.noise import background_noise
from .recipe import Recipe
from .source import load_model_dataset, model_dataset_name
from .waveaug import db_to_gain, mix_at_snr, noise_window, place_in_window

#: clips per calibration set by default: enough for stable ranges, a few seconds of front-end work
DEFAULT_CLIPS = 400


def model_recipe(meta: dict[str, Any]) -> Recipe:
    """The recipe the model was trained with (its ``train_config``), else the default recipe."""
    recorded = (meta.get("train_config") or {}).get("recipe")
    return Recipe.from_dict(recorded) if isinstance(recorded, dict) else Recipe()


def _pick(labels: list[str], n: int, rng: np.random.Generator) -> list[int]:
    """``n`` indices spread evenly over the classes (round robin over shuffled per-class lists)."""
    by_class: dict[str, list[int]] = {}
    for i in rng.permutation(len(labels)):
        by_class.setdefault(labels[int(i)], []).append(int(i))
    queues = [by_class[c] for c in sorted(by_class)]
    picked: list[int] = []
    while len(picked) < n and any(queues):
        for queue in queues:
            if queue and len(picked) < n:
                picked.append(queue.pop())
    return picked


def calibration_set(
    meta: dict[str, Any],
    data_dir: str | os.PathLike | None = None,
    *,
    dataset: str | None = None,
    n: int = DEFAULT_CLIPS,
    augmented: float = 0.5,
    seed: int = 0,
    recipe: Recipe | None = None,
) -> np.ndarray:
    """(n, C, F, T) float32 calibration features in the model's input space (see the module docstring).

    ``meta``: the model's metadata (``kit.models.load_model``); its ``source`` names the dataset
    unless ``dataset`` does. ``augmented``: the share of clips passed through the recipe's
    augmentation (noise only when the recipe uses noise and training noise is available).
    """
    space = FeatureSpace.of(meta)
    if space.feature_config is None or space.normalizer is None:
        raise KitError("calibration data: the model records no feature config or normaliser; train it with `kit train`")
    if n < 1:
        raise KitError(f"--calibration-clips must be >= 1, got {n}")
    name = model_dataset_name(meta, "calibration data (name one with --calibration-data DATASET)", dataset)
    audio = load_model_dataset(meta, data_dir, "calibration data", name)
    clips = audio.clips_in("train")
    if not clips:
        raise KitError(f"calibration data: dataset '{name}' has no training clips")
    config = space.feature_config
    rate, length = config.sample_rate, int(round(config.sample_rate * config.duration_s))
    recipe = recipe or model_recipe(meta)
    rng = np.random.default_rng(seed)
    noise: list[np.ndarray] = []
    if recipe.noise:
        try:
            noise = [rec.audio for rec in background_noise(data_dir, rate, "train")]
        except KitError:
            noise = []  # no Speech Commands noise next to this dataset: shift and gain only
    picked = _pick([c.label for c in clips], n, rng)
    n_aug = int(round(augmented * len(picked)))
    rows = []
    for k, i in enumerate(picked):
        clip = clips[i]
        y = load_audio(clip.path, rate, clip.offset_s, clip.duration_s)
        if k < n_aug:
            shift = int(rng.uniform(-recipe.max_shift_s, recipe.max_shift_s) * rate) if recipe.shift else 0
            y = place_in_window(y, length, shift)
            if noise:
                y = mix_at_snr(y, noise_window(noise, length, rng), float(rng.uniform(*recipe.snr_db)), rate)
            y = np.clip(y * db_to_gain(float(rng.uniform(*recipe.gain_db))), -1.0, 1.0)
        rows.append(extract_features(np.asarray(y, np.float32), config))
    return space.normalizer.transform(np.stack(rows)).astype(np.float32)
