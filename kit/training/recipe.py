"""The stream-robust training recipe: what a keyword model trained on a whole dataset sees.

Why: a model trained only on centred, clean 1-s clips scored 83 % on clean test clips but
missed 45-49 % of the keywords in a stream (``bench/results/streaming.md``), and adding the
unpadded 0.3-1.0 s ``speech_commands_train`` clips as they were (padded with digital silence,
classes unbalanced) gained nothing overall: on/off/go fell 6-17 points. The recipe, every
part a switch with a default, recorded in the model's ``train_config["recipe"]``:

* **short clips placed in real noise**: a clip shorter than ``short_clip_s`` is centred in the
  window over training background noise instead of zero padding (its feature row is replaced);
* **augmented copies** (``copies`` per training clip): a time shift within the window (no
  wrap-around), background noise at a random SNR in ``snr_db`` and a random gain;
* **hard negatives** labelled ``_unknown_`` (``negatives.py``), clean and over noise;
* **reversed keywords** (``reversed_negatives``, a fraction of the keyword clips, off by default)
  played backwards as ``_unknown_``: the same voices, rooms and spectra as the keywords but not
  the words, so "speech that is none of mine" stops meaning "FSDD's six speakers or an ESC sound";
* **quiet silence**: training-noise windows at stream levels (``silence_dbfs``), since the
  ``_silence_`` clips are the noise files at their recorded (loud) level;
* **SpecAugment-style masks** on the features (``augment.py``), **label smoothing** and **class
  balance** (sampling or loss weights) in the training loop;
* **a word head** (``word_head``, off by default): an auxiliary training head that tells apart the
  words inside ``_unknown_`` (``bed``, ``cat``, ``eight``...), weighted ``word_head`` against the
  main loss and dropped before the model is saved. Why: one ``_unknown_`` class teaches the
  backbone that every other word looks alike, which is exactly the embedding an on-device
  fine-tune then has to tell a new word apart in (``bench/finetune.py``). The exported model is
  unchanged in shape and size.

A **calibration hold-out** (``calibration_percent`` of the training speakers and of the hard-negative
files, ``holdout.py``) is never trained on: ``kit bundle --max-fa-per-hour`` chooses thresholds on
it, where the model is as unsure as it will be on a user's audio.

Background noise comes only from the training part of ``_background_noise_``
(``kit.data.noise.background_noise``), hard negatives only from training folds, so nothing the
recipe adds is ever heard again in a test clip or a benchmark stream. Features go through the
feature set's own front-end and normaliser, so the model fits the same export and bundle path.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from deploy.runtime.errors import KitError
from deploy.runtime.features import extract_features

from ..audio import load_audio
from ..data import AudioDataset
from ..data.noise import background_noise
from ..features.featureset import FeatureSet, limit_clips
from .config import TrainConfig
from .holdout import CALIBRATION_PERCENT, calibration_mask
from .negatives import hard_negatives
from .waveaug import at_level, db_to_gain, mix_at_snr, noise_window, place_in_window

UNKNOWN, SILENCE = "_unknown_", "_silence_"
#: waveforms per feature-extraction batch (bounds memory: 512 x 1 s x 16 kHz x 4 B = 32 MB)
CHUNK = 512


@dataclass(frozen=True)
class Recipe:
    """Every option of the recipe (levels in dB, times in s, counts in clips)."""

    copies: int = 2
    noise: bool = True
    snr_db: tuple[float, float] = (5.0, 30.0)
    shift: bool = True
    max_shift_s: float = 0.2
    gain_db: tuple[float, float] = (-10.0, 3.0)
    short_clip_s: float = 0.95
    hard_negatives: bool = True
    fsdd_negatives: int = 800
    #: fraction of keyword training clips added time-reversed (one noisy copy each) as _unknown_
    reversed_negatives: float = 0.0
    esc_cuts_per_clip: int = 3
    quiet_silence: int = 600
    silence_dbfs: tuple[float, float] = (-65.0, -25.0)
    specaugment: bool = True
    label_smoothing: float = 0.1
    balance: str = "sampling"
    #: percent of training speakers and hard-negative files kept out of training for threshold
    #: calibration (``holdout.py``; 0 trains on everything, and thresholds then come out too low)
    calibration_percent: int = CALIBRATION_PERCENT
    #: weight of the auxiliary loss over the words inside ``_unknown_`` (0 = no word head)
    word_head: float = 0.0
    #: share of the ``_unknown_`` draws that are spoken words (the rest: hard negatives, reversed
    #: keywords); None draws rows as they fall (``unknown_sampling_weights``)
    unknown_words_share: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.calibration_percent <= 50:
            raise KitError(f"recipe calibration_percent must be 0..50, got {self.calibration_percent}")
        if self.copies < 0 or self.fsdd_negatives < 0 or self.esc_cuts_per_clip < 0 or self.quiet_silence < 0:
            raise KitError("recipe: copies, negatives and silence counts must be >= 0")
        for name in ("snr_db", "gain_db", "silence_dbfs"):
            low, high = getattr(self, name)
            if low > high:
                raise KitError(f"recipe {name}: low {low} exceeds high {high}")
        if not 0.0 <= self.reversed_negatives <= 1.0:
            raise KitError(f"recipe reversed_negatives must lie in [0, 1], got {self.reversed_negatives}")
        if self.max_shift_s < 0:
            raise KitError(f"recipe max_shift_s must be >= 0, got {self.max_shift_s}")
        if not 0.0 <= self.word_head <= 10.0:
            raise KitError(f"--word-head (the word head's loss weight) must lie in [0, 10], got {self.word_head}")
        if self.unknown_words_share is not None and not 0.0 < self.unknown_words_share < 1.0:
            raise KitError(f"--unknown-words-share must lie in (0, 1), got {self.unknown_words_share}")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Recipe":
        """A recorded recipe; one recorded before the calibration hold-out existed held nothing out."""
        names = {f for f in cls.__dataclass_fields__}
        data = {"calibration_percent": 0, **data}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in names})

    def with_(self, **changes: Any) -> "Recipe":
        return replace(self, **changes)

    @property
    def needs_noise(self) -> bool:
        return self.noise or self.quiet_silence > 0

    #: options that shape the training loop, not the set: left out of the recipe cache's key, so
    #: ``--label-smoothing 0`` or ``--word-head 0.5`` reuses the set another run built
    LOOP_OPTIONS = ("specaugment", "label_smoothing", "balance", "word_head", "unknown_words_share")

    def train_config(self, base: TrainConfig) -> TrainConfig:
        """``base`` with the recipe's loop options (masks, smoothing, balance) and the recipe itself recorded."""
        return base.with_(
            augment=self.specaugment,
            label_smoothing=self.label_smoothing,
            balance=self.balance,
            word_head=self.word_head,
            recipe=self.to_dict(),
        )


def unknown_sampling_weights(y: np.ndarray, words: np.ndarray, classes: list[str], share: float) -> np.ndarray:
    """Per-row sampling weights (N,) under which ``share`` of the ``_unknown_`` rows drawn are spoken words.

    Why: the spoken words inside ``_unknown_`` (``bed``, ``cat``...) are its smallest part. On kws12
    about 700 rows of real words sit beside about 3 300 hard negatives (FSDD digits, ESC-10 cuts),
    so a class-balanced batch holds almost no unknown speech, and unknown words were the weakest
    class on the test clips. A row of ``_unknown_`` is a spoken word when its word label is one of
    the words (``words >= len(classes)``). Other classes' rows keep weight 1, and the ``_unknown_``
    rows together keep their count, so the weights change nothing outside that class.
    """
    weights = np.ones(len(y), dtype=np.float64)
    if UNKNOWN not in classes:
        return weights
    in_unknown = np.asarray(y) == classes.index(UNKNOWN)
    spoken = in_unknown & (np.asarray(words) >= len(classes))
    other = in_unknown & ~spoken
    n_spoken, n_other = int(spoken.sum()), int(other.sum())
    if n_spoken == 0 or n_other == 0:
        return weights
    total = n_spoken + n_other
    weights[spoken] = share * total / n_spoken
    weights[other] = (1.0 - share) * total / n_other
    return weights


@dataclass
class RecipeSet:
    """Normalised features and labels of the training split plus what the recipe added.

    ``words`` (row for row) indexes ``word_classes``: the dataset's classes followed by the words
    found inside ``_unknown_``; a row that is no spoken word of ``_unknown_`` (a keyword, silence, a
    hard negative, a reversed keyword) keeps its class. It is what the word head trains on."""

    x: np.ndarray
    y: np.ndarray
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    words: np.ndarray | None = None
    word_classes: list[str] = field(default_factory=list)


def unknown_word(clip: Any) -> str:
    """The spoken word of an ``_unknown_`` clip: its folder in the release layout
    (``bed/<speaker>_nohash_0.wav``), else its file-name prefix (the test-set layout
    ``_unknown_/bed_<speaker>_nohash_0.wav``)."""
    folder = clip.path.parent.name
    if folder != UNKNOWN:
        return folder
    return clip.path.name.split("_", 1)[0] if "_" in clip.path.name else UNKNOWN


def word_labels(clips: list[Any], classes: list[str]) -> tuple[np.ndarray, list[str]]:
    """Per clip, its index in ``classes + sorted(words of _unknown_)`` (see ``RecipeSet``)."""
    spoken = [unknown_word(c) if c.label == UNKNOWN else c.label for c in clips]
    names = list(classes) + sorted(set(spoken) - {UNKNOWN, *classes})
    index = {name: i for i, name in enumerate(names)}
    # a word that is also a class name (or an unreadable one) stays in its clip's class
    return np.array([index[w] if w not in classes else index[c.label] for w, c in zip(spoken, clips)], np.int64), names


class _Featurizer:
    """Collect waveforms, turn them into normalised features ``CHUNK`` at a time."""

    def __init__(self, fs: FeatureSet, progress: Callable[[int], None] | None) -> None:
        self.fs, self.progress = fs, progress
        self.pending: list[np.ndarray] = []
        self.done: list[np.ndarray] = []

    def add(self, wave: np.ndarray) -> None:
        self.pending.append(wave)
        if len(self.pending) >= CHUNK:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            raw = np.stack([extract_features(w, self.fs.config) for w in self.pending])
            self.done.append(self.fs.normalizer.transform(raw).astype(np.float32))
            if self.progress is not None:
                self.progress(len(self.pending))
            self.pending = []

    def result(self) -> np.ndarray:
        self.flush()
        shape = (0, *self.fs.x_train.shape[1:])
        return np.concatenate(self.done) if self.done else np.zeros(shape, dtype=np.float32)


def _training_clips(dataset: AudioDataset, fs: FeatureSet) -> list[Any]:
    """The training clips behind ``fs.x_train``, row for row (a skipped clip breaks the alignment)."""
    clips = limit_clips(dataset, dataset.clips_in("train"), fs.source.get("limit_per_class"))
    labels = np.array([fs.classes.index(c.label) for c in clips], dtype=np.int64)
    if len(clips) != len(fs.y_train) or not np.array_equal(labels, fs.y_train):
        raise KitError(
            f"recipe: the training clips of '{dataset.name}' do not line up with the feature set "
            "(was an unreadable clip skipped? fix or remove it)"
        )
    return clips


def planned_counts(n_clips: int, recipe: Recipe, classes: list[str]) -> int:
    """About how many waveforms the recipe will featurise (for the progress bar)."""
    extra = n_clips * recipe.copies
    if UNKNOWN in classes and recipe.hard_negatives:
        extra += 2 * (recipe.fsdd_negatives + 320 * recipe.esc_cuts_per_clip)
    if UNKNOWN in classes:
        extra += int(recipe.reversed_negatives * n_clips)
    if SILENCE in classes and recipe.noise:
        extra += recipe.quiet_silence
    return extra


def _rows_to_reverse(labels: np.ndarray, fs: FeatureSet, recipe: Recipe, rng: np.random.Generator) -> set[int]:
    """``recipe.reversed_negatives`` of the keyword rows, to be played backwards through ``variant``
    (shift, noise, gain) as ``_unknown_``: negatives that sound like the keywords' speakers, not their
    words. Chosen up front so the training loop reads each clip from disk once."""
    if recipe.reversed_negatives <= 0 or UNKNOWN not in fs.classes:
        return set()
    not_keywords = {fs.classes.index(c) for c in (UNKNOWN, SILENCE) if c in fs.classes}
    keyword_rows = np.flatnonzero([int(label) not in not_keywords for label in labels])
    return {int(i) for i in rng.permutation(keyword_rows)[: int(round(recipe.reversed_negatives * len(keyword_rows)))]}


def recipe_training_set(
    dataset: AudioDataset,
    fs: FeatureSet,
    recipe: Recipe,
    data_dir: str | os.PathLike | None = None,
    progress: Callable[[int], None] | None = None,
) -> RecipeSet:
    """``fs``'s training split (of ``dataset``) plus the recipe's material; see the module docstring."""
    clips = _training_clips(dataset, fs)
    keep = ~calibration_mask(clips, recipe.calibration_percent, dataset.clips_in("train"))
    held_out = int((~keep).sum())
    clips = [c for c, k in zip(clips, keep) if k]
    x_train, y_train = fs.x_train[keep], fs.y_train[keep]
    rate = fs.config.sample_rate
    n = int(round(rate * fs.config.duration_s))
    rng = np.random.default_rng(recipe.seed)
    notes: list[str] = []
    noise: list[np.ndarray] = []
    if recipe.needs_noise:
        try:
            noise = [rec.audio for rec in background_noise(data_dir, rate, "train")]
        except KitError as exc:
            raise KitError(f"{exc}; switch the recipe's noise off with --no-noise --quiet-silence 0") from None

    def variant(y: np.ndarray) -> np.ndarray:
        shift = int(rng.uniform(-recipe.max_shift_s, recipe.max_shift_s) * rate) if recipe.shift else 0
        wave = place_in_window(y, n, shift)
        if recipe.noise:
            wave = mix_at_snr(wave, noise_window(noise, n, rng), float(rng.uniform(*recipe.snr_db)), rate)
        return np.clip(wave * db_to_gain(float(rng.uniform(*recipe.gain_db))), -1.0, 1.0)

    base, copies = _Featurizer(fs, progress), _Featurizer(fs, progress)
    to_reverse, reversed_words = _rows_to_reverse(y_train, fs, recipe, rng), _Featurizer(fs, progress)
    replaced: list[int] = []
    copy_labels: list[int] = []
    words, word_classes = word_labels(clips, list(fs.classes))
    copy_words: list[int] = []
    silence = fs.classes.index(SILENCE) if SILENCE in fs.classes else -1
    for i, clip in enumerate(clips):
        y = load_audio(clip.path, rate, clip.offset_s, clip.duration_s)
        if recipe.noise and len(y) < recipe.short_clip_s * rate:
            # a short, unpadded clip: the kept row is the word in real background, not in digital silence
            word = place_in_window(y, n, 0)
            base.add(mix_at_snr(word, noise_window(noise, n, rng), float(rng.uniform(*recipe.snr_db)), rate))
            replaced.append(i)
        if i in to_reverse:
            reversed_words.add(variant(y[::-1].copy()))
        if int(y_train[i]) == silence:
            continue  # silence copies would be noise over noise; quiet silence covers levels
        for _ in range(recipe.copies):
            copies.add(variant(y))
            copy_labels.append(int(y_train[i]))
            copy_words.append(int(words[i]))
    x_base = x_train.copy()
    if replaced:
        x_base[np.array(replaced)] = base.result()
    xs, ys = [x_base, copies.result()], [y_train, np.array(copy_labels, dtype=np.int64)]
    ws = [words, np.array(copy_words, dtype=np.int64)]
    counts = {
        "training clips": int(len(clips)),
        "clips held out for threshold calibration": held_out,
        "short clips placed in noise": len(replaced),
        "augmented copies": len(copy_labels),
    }
    if recipe.hard_negatives and UNKNOWN in fs.classes:
        waves, found = hard_negatives(
            data_dir,
            rate,
            recipe.fsdd_negatives,
            recipe.esc_cuts_per_clip,
            rng,
            exclude=dataset.name,
            holdout_percent=recipe.calibration_percent,
        )
        notes += found
        negatives = _Featurizer(fs, progress)
        for wave in waves:
            negatives.add(place_in_window(wave, n, 0))
            if recipe.noise:
                negatives.add(variant(wave))
        x_neg = negatives.result()
        xs.append(x_neg)
        ys.append(np.full(len(x_neg), fs.classes.index(UNKNOWN), dtype=np.int64))
        ws.append(ys[-1])
        counts["hard negatives (_unknown_)"] = int(len(x_neg))
    elif recipe.hard_negatives:
        notes.append("no hard negatives: the dataset has no '_unknown_' class")
    if recipe.reversed_negatives > 0 and UNKNOWN in fs.classes:
        x_rev = reversed_words.result()
        xs.append(x_rev)
        ys.append(np.full(len(x_rev), fs.classes.index(UNKNOWN), dtype=np.int64))
        ws.append(ys[-1])
        counts["reversed keywords (_unknown_)"] = int(len(x_rev))
    if recipe.quiet_silence > 0 and silence >= 0:
        quiet = _Featurizer(fs, progress)
        for _ in range(recipe.quiet_silence):
            quiet.add(at_level(noise_window(noise, n, rng), float(rng.uniform(*recipe.silence_dbfs))))
        xs.append(quiet.result())
        ys.append(np.full(recipe.quiet_silence, silence, dtype=np.int64))
        ws.append(ys[-1])
        counts["quiet silence (_silence_)"] = recipe.quiet_silence
    elif recipe.quiet_silence > 0:
        notes.append("no quiet silence: the dataset has no '_silence_' class")
    if len(word_classes) > len(fs.classes):
        counts["words inside _unknown_ (word head)"] = len(word_classes) - len(fs.classes)
    return RecipeSet(np.concatenate(xs), np.concatenate(ys), counts, notes, np.concatenate(ws), word_classes)
