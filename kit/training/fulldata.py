"""Train the production model on a whole dataset's training split: the library side of ``kit train DATASET``.

Why here and not in a command or a benchmark: ``kit train DATASET``, ``bench.streaming`` and
``bench.finetune`` must train the same way, so the loading (with extra training folders), the
recipe (``recipe.py``), the loop and the one artifact writer (``production.train_and_save``)
are joined once. The recipe's feature set is the slow part (tens of thousands of waveforms
through the front-end); it is cached beside the model under a key of everything it depends on
and written atomically, so an interrupted run resumes at training instead of starting over.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deploy.runtime.errors import KitError

from ..data import AudioDataset, load_dataset
from ..features import FeatureSet, load_feature_set
from .config import TrainConfig
from .evaluate import evaluate
from .production import TrainedModel, train_and_save
from .recipe import UNKNOWN, Recipe, RecipeSet, recipe_training_set, unknown_sampling_weights
from .teachers import check_teacher_weight, distillation_targets, load_teachers, teacher_probabilities

RECIPE_CACHE = "recipe_set.npz"


@dataclass
class DatasetRun:
    """What ``train_on_dataset`` produced: the saved model plus the figures a run folder records."""

    trained: TrainedModel
    config: TrainConfig
    feature_set: FeatureSet
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    per_class: dict[str, float] = field(default_factory=dict)
    recipe_cached: bool = False


def load_for_training(
    dataset: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    *,
    task: str = "kws10",
    split: str = "official",
    test_fold: int = 5,
    extra_train: Sequence[str | os.PathLike] = (),
    limit_per_class: int | None = None,
    progress: bool = True,
    feature: str | None = None,
) -> tuple[AudioDataset, FeatureSet]:
    """The dataset (extra training folders included) and its normalised feature set; ``feature``
    picks another front-end kind (``log_mel`` ...) with the dataset's rate, window and hop."""
    audio = load_dataset(dataset, data_dir, split=split, task=task, test_fold=test_fold, extra_train=extra_train)
    fs = load_feature_set(
        audio,
        data_dir,
        config=audio.feature_config.with_(kind=feature) if feature is not None else None,
        split=split,
        task=task,
        test_fold=test_fold,
        extra_train=extra_train,
        limit_per_class=limit_per_class,
        progress=progress,
    )
    return audio, fs


#: bump when the cached arrays change (2: the word labels of the word head)
RECIPE_CACHE_FORMAT = 2


def _recipe_key(fs: FeatureSet, recipe: Recipe) -> str:
    # the loop options (word head, unknown words' share) leave the set, and so the cache, the same
    payload = {
        "format": RECIPE_CACHE_FORMAT,
        "recipe": {k: v for k, v in recipe.to_dict().items() if k not in Recipe.LOOP_OPTIONS},
        "dataset": fs.source.get("dataset", {}).get("sha256"),
        "limit_per_class": fs.source.get("limit_per_class"),
        "features": fs.config.to_dict(),
        "mean": hashlib.sha256(np.ascontiguousarray(fs.normalizer.mean).tobytes()).hexdigest(),
        "n_train": int(len(fs.y_train)),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def cached_recipe_set(
    cache: Path | None,
    audio: AudioDataset,
    fs: FeatureSet,
    recipe: Recipe,
    data_dir: str | os.PathLike | None,
    progress: Callable[[int], None] | None = None,
) -> tuple[RecipeSet, bool]:
    """The recipe set from ``cache`` when its key matches, else built (and written atomically there)."""
    key = _recipe_key(fs, recipe)
    if cache is not None and cache.is_file():
        with np.load(cache, allow_pickle=False) as data:
            if str(data["key"]) == key:
                meta = json.loads(str(data["meta"]))
                words = data["words"]
                return RecipeSet(data["x"], data["y"], meta["counts"], meta["notes"], words, meta["word_classes"]), True
    built = recipe_training_set(audio, fs, recipe, data_dir, progress)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp.npz")
        np.savez(
            tmp,
            x=built.x,
            y=built.y,
            words=built.words,
            key=np.array(key),
            meta=np.array(
                json.dumps({"counts": built.counts, "notes": built.notes, "word_classes": built.word_classes})
            ),
        )
        os.replace(tmp, cache)
    return built, False


def per_class_accuracy(model: Any, fs: FeatureSet) -> dict[str, float]:
    """Recall of each class on the test split (where the balance of the classes shows)."""
    confusion = np.asarray(evaluate(model, fs.x_test, fs.y_test)["confusion"])
    totals = confusion.sum(axis=1)
    return {name: round(float(confusion[i, i] / totals[i]), 4) for i, name in enumerate(fs.classes) if totals[i] > 0}


def train_on_dataset(
    model_path: str | os.PathLike,
    audio: AudioDataset | None,
    fs: FeatureSet,
    config: TrainConfig,
    *,
    recipe: Recipe | None = None,
    data_dir: str | os.PathLike | None = None,
    cache: Path | None = None,
    progress: bool = True,
    on_recipe: Callable[[int], None] | None = None,
    teachers: Sequence[str | os.PathLike] = (),
    teacher_weight: float = 0.5,
    **extra: Any,
) -> DatasetRun:
    """Train ``config`` on ``fs``'s training split (through ``recipe`` when given), score it on the
    test split, and write ``model_path`` via ``train_and_save`` (recipe options in its train config).
    ``audio`` (the dataset behind ``fs``) is needed only with a recipe, which reads the waveforms.
    ``teachers`` (model files in ``fs``'s input space) turn the labels into distillation targets:
    ``1 - teacher_weight`` of the label plus ``teacher_weight`` of the teachers' averaged prediction
    (``teachers.py``); they are checked before the recipe's slow augmentation starts."""
    counts: dict[str, int] = {"training clips": int(len(fs.y_train))}
    notes: list[str] = []
    x, y, was_cached = fs.x_train, fs.y_train, False
    words, sample_weight = None, None
    if recipe is not None and UNKNOWN not in fs.classes:
        name = audio.name if audio else "this dataset"
        if recipe.word_head > 0:
            raise KitError(
                f"--word-head: {name} has no _unknown_ class whose words a word head could tell apart "
                "(Speech Commands --task kws12 has one)"
            )
        if recipe.unknown_words_share is not None:
            raise KitError(
                f"--unknown-words-share: {name} has no _unknown_ class (Speech Commands --task kws12 has one)"
            )
    if teachers:
        check_teacher_weight(teacher_weight)
    loaded = load_teachers(teachers, fs) if teachers else None
    if recipe is not None:
        if audio is None:
            raise ValueError("a recipe needs the AudioDataset behind the feature set")
        built, was_cached = cached_recipe_set(cache, audio, fs, recipe, data_dir, on_recipe)
        x, y, counts, notes = built.x, built.y, built.counts, built.notes
        config = recipe.train_config(config)
        if config.word_head > 0:
            words = (built.words, built.word_classes)
        if recipe.unknown_words_share is not None and built.words is not None:
            sample_weight = unknown_sampling_weights(y, built.words, list(fs.classes), recipe.unknown_words_share)
    if loaded is not None:
        y = distillation_targets(y, teacher_probabilities(loaded, x, progress), teacher_weight)
        extra["distillation"] = {"teacher_weight": teacher_weight, "teachers": loaded.records}
    trained = train_and_save(
        model_path,
        x,
        y,
        fs,
        config,
        x_test=fs.x_test,
        y_test=fs.y_test,
        progress=progress,
        training_set=counts,
        words=words,
        sample_weight=sample_weight,
        **extra,
    )
    return DatasetRun(trained, config, fs, counts, notes, per_class_accuracy(trained.model, fs), was_cached)
