"""On-device fine-tuning: add a keyword from a few clips, or adapt to one voice, without forgetting.

Why only the head and why replay: the device has no torch, and a few clips cannot retrain a
convolutional backbone anyway. The frozen backbone (ONNX/TFLite) maps clips to embeddings and
the linear head (``logits = embedding @ W.T + b``) is refitted on

* the new clips (the user's recordings), and
* the bundle's replay memory (the coreset: a few normalised feature maps per old class, passed
  through the same backbone), which stands in for the training data the device never had.

The head starts from the bundle's head and is pulled towards it (L2-SP, see ``head.py``);
without replay (``replay=False``) nothing tells the head what the old classes look like, which
``bench/finetune.py`` measures as the cost of skipping it.

The new keyword's clips are also added to the replay memory by default (``remember``), so a
later fine-tune still has examples of it; personalisation clips are not (their effect lives in
the head, which later fine-tunes are anchored to), keeping the memory at its original size.

Labels for personalisation come from each clip's parent folder name, or else from a
``<class>_`` file-name prefix (``yes_003.wav``); a clip whose label is not one of the bundle's
classes is a one-line ``KitError`` naming it.

``main(argv)`` is the device sub-command ``python -m <runtime> finetune``. It updates the bundle
in place by default (what a deployed listener reads), keeping the previous version as
``BUNDLE.bak`` so one ``mv`` undoes it; ``--out`` writes a new file and leaves BUNDLE untouched.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .artifact import artifact_bytes, atomic_write_bytes, configured_key
from .bundle import Bundle, BundleClassifier
from .errors import KitError
from .head import HEADS, balanced_weights, make_head
from .names import check_class_name
from .safeio import atomic_write_files, check_output_path, file_lock, read_regular_bytes, require_regular_file
from .synthetic_speech import SyntheticClip, check_text, synthesize
from .threads import one_blas_thread
from .wavio import MIN_CLIP_S, read_wav  # noqa: F401  (MIN_CLIP_S: the one minimum, re-exported)

#: Peak amplitude below which a clip is taken for digital silence (-80 dBFS).
SILENT_PEAK = 1e-4
#: L2 pull of the old classes' rows towards the current head, and of new rows towards zero;
#: chosen by measurement in bench/finetune.py (see bench/results/finetune.md).
DEFAULT_L2 = 1.0
DEFAULT_L2_NEW = 3e-2
#: A class known only from the user's few clips is weighted up against the old classes, after
#: class balancing (see ``few_shot_weight``); measured in bench/finetune.py.
FEW_SHOT_CLIPS = 25.0
#: Replay samples per old class that hold their ground against one unit of extra weight.
REPLAY_PER_UNIT_WEIGHT = 10.0
#: Circular time shifts (frames) applied to the new clips (see ``time_shifts``).
DEFAULT_SHIFTS = (-16, -8, 0, 8, 16)
BACKUP_SUFFIX = ".bak"
#: A new keyword's clips kept as replay: as many as the largest old class holds, and at least this
#: many (they are the only examples of the word a later fine-tune will have; ~2.5 KiB each as int8).
REMEMBER_AT_LEAST = 10


# Clips -------------------------------------------------------------------------------------------
def expand_clips(clips: Sequence[str | os.PathLike]) -> list[Path]:
    """Clip paths as given, with each directory replaced by the ``.wav`` files under it (sorted)."""
    out: list[Path] = []
    for item in clips:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() == ".wav")
            if not found:
                raise KitError(f"{path}: folder holds no .wav clips")
            out.extend(found)
        else:
            out.append(path)
    if not out:
        raise KitError("no clips given: pass at least one WAV file (or a folder of them)")
    return out


def clip_features(classifier: BundleClassifier, path: Path, *, require_sound: bool = True) -> np.ndarray:
    """Normalised features (C, F, T) of one WAV file through the bundle's own front-end.

    Too short, silent or unreadable clips are one-line ``KitError``s naming the file: a bad clip
    in a handful would silently teach the head noise.
    """
    y, rate = read_wav(path)  # names the file in its own errors (missing, empty, corrupt, too short)
    if require_sound and float(np.max(np.abs(y))) < SILENT_PEAK:
        raise KitError(f"{path}: clip is silent (peak amplitude {float(np.max(np.abs(y))):.1e})")
    try:
        return classifier.features(y, rate)
    except KitError as exc:
        raise KitError(f"{path}: {exc}") from None


def _synthetic_features(classifier: BundleClassifier, clip: SyntheticClip) -> np.ndarray:
    """Like ``clip_features`` for a synthetic clip: its errors name the voice instead of a file."""
    try:
        return classifier.features(clip.audio, clip.rate)
    except KitError as exc:
        raise KitError(f"--synthetic ({clip.voice}): {exc}") from None


def label_of(path: Path, classes: Sequence[str]) -> str:
    """The class of a personalisation clip: its parent folder's name, else a ``<class>_`` prefix.

    The prefix must end at an underscore, so a class ``on`` never claims ``one_2.wav``; where
    several classes match, the longest wins (``_silence__1.wav`` is ``_silence_``).
    """
    if path.parent.name in classes:
        return path.parent.name
    prefixes = [c for c in classes if path.name.startswith(c + "_")]
    if prefixes:
        return max(prefixes, key=len)
    guess = path.name.split("_", 1)[0] if "_" in path.name else None
    found = f"folder '{path.parent.name}'" + (f" and prefix '{guess}'" if guess else "")
    raise KitError(
        f"{path}: cannot tell its class ({found} name no class of the bundle); put it in a folder named after "
        f"the class or name it <class>_*.wav (classes: {', '.join(classes)})"
    )


# Training ----------------------------------------------------------------------------------------
def time_shifts(x: np.ndarray, shifts: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """The clips plus copies circularly shifted in time by each non-zero shift (frames), and a
    sample weight per row: 1 for an original, ``1 / n_shifts`` for a copy.

    Why: a handful of clips shows the word at a handful of positions in the window, and the
    backbone's embedding keeps coarse time position, so a head fitted on them alone learns
    "eight, 0.3 s in" rather than "eight" (Speech Commands words sit anywhere in their second).
    Circular shifts are the augmentation the backbone was trained with
    (``kit/training/augment.py``). The copies together weigh as much as the originals, so the
    positions actually recorded stay best fitted: with equal weights per copy, FSDD digits
    (always centred by the front-end) lost accuracy. bench/finetune.py measures both effects.
    """
    x = np.asarray(x, dtype=np.float32)
    moved = [int(s) for s in shifts if int(s) != 0]
    weights = np.ones(len(x) * (1 + len(moved)))
    if not moved:
        return x, weights
    weights[len(x) :] = 1.0 / len(moved)
    return np.concatenate([x, *(np.roll(x, s, axis=-1) for s in moved)]), weights


def few_shot_weight(n_clips: int, replay_per_class: float) -> float:
    """Weight of a class learnt from ``n_clips`` user clips relative to an old class, when the old
    classes have ``replay_per_class`` replay samples each: ``25 / n_clips``, at most
    ``replay_per_class / 10``, at least 1.

    Why: class-balanced, a 5-clip word is outvoted near every old class it resembles (mostly
    ``_unknown_``) and most of its held-out clips land there; more clips cover the word better
    and need less help. Each unit of extra weight also takes old clips for the new word, which
    only a larger replay memory keeps down. Measured in bench/finetune.py on Speech Commands:
    with 50 replay samples per class, 5 clips at 5x reached 82.6 % on the word for a 1.9-point
    old-class drop (1x: 53.9 %, 0.4 points); with 10 per class, 2x already cost 3.2 points, so
    small memories keep plain balance.
    """
    if n_clips < 1:
        return 1.0
    return float(max(1.0, min(FEW_SHOT_CLIPS / n_clips, replay_per_class / REPLAY_PER_UNIT_WEIGHT)))


def _replay(bundle: Bundle, replay: bool) -> tuple[np.ndarray, np.ndarray]:
    if not replay:
        return np.zeros((0, *bundle.feature_config.shape), np.float32), np.zeros(0, np.int64)
    x = np.asarray(bundle.replay_features, dtype=np.float32)
    y = np.asarray(bundle.replay_labels, dtype=np.int64)
    if len(x) == 0:
        raise KitError(
            "bundle has no replay memory (coreset); fine-tune with --no-replay, "
            "accepting that old classes may be forgotten"
        )
    return x, y


def learnt_on_device(bundle: Bundle) -> list[int]:
    """Indices of the classes a fine-tune added (from the bundle's history)."""
    names = {entry.get("keyword") for entry in bundle.history if entry.get("op") == "add_keyword"}
    return [i for i, name in enumerate(bundle.classes) if name in names]


def fit_head(
    bundle: Bundle,
    classifier: BundleClassifier,
    x_new: np.ndarray,
    y_new: np.ndarray,
    n_classes: int,
    *,
    replay: bool,
    head: str,
    seed: int,
    l2: float,
    l2_new: float,
    shifts: Sequence[int],
    class_weight: str = "balanced",
    new_weight: float | None = None,
    synthetic_rows: int = 0,
):
    """Embed the (time-shifted) new clips and the replay memory, fit the head warm-started from the
    bundle's; returns (fitted head, info dict for the history entry).

    Replay samples of classes that an earlier fine-tune added are the user's own clips of that
    word; they get the same time shifts as new clips, so a second fine-tune trains that class on
    what the first one did instead of on fewer, unshifted examples. Those classes and the ones
    this fine-tune appends are the few-shot classes that ``new_weight`` scales (after class
    balancing, which is done here so the scaling is not balanced away); ``None`` scales each by
    ``few_shot_weight`` of its clips and the old classes' replay size. The last ``synthetic_rows``
    rows of ``x_new`` are synthetic speech (``synthetic_speech``): they train the class but do not
    count as the user's clips in that rule, so adding them leaves the class's total weight as it was.
    """
    if head not in HEADS:
        raise KitError(f"--head: unknown head '{head}' (choose from {', '.join(HEADS)})")
    if new_weight is not None and not new_weight > 0:
        raise KitError(f"--new-weight must be positive, got {new_weight}")
    if class_weight not in ("balanced", "none"):
        raise KitError(f"class_weight must be 'balanced' or 'none', not '{class_weight}'")
    x_old, y_old = _replay(bundle, replay)
    few_shot = sorted({*learnt_on_device(bundle), *range(len(bundle.classes), n_classes)})
    user = np.isin(y_old, learnt_on_device(bundle))
    x_src = np.concatenate([x_new, x_old[user]])
    y_src = np.concatenate([y_new, y_old[user]])
    x_old, y_old = x_old[~user], y_old[~user]
    x_aug, w_aug = time_shifts(x_src, shifts)
    y_aug = np.tile(y_src, len(x_aug) // len(x_src))
    z_old = classifier.embed(x_old) if len(x_old) else np.zeros((0, bundle.embedding_dim), np.float32)
    z_aug = classifier.embed(x_aug)
    params: dict = {
        "class_weight": "none",
        "n_classes": n_classes,
        "seed": seed,
        "warm_start": (np.asarray(bundle.head_weight), np.asarray(bundle.head_bias)),
    }
    if head == "softmax":  # the MLP keeps its own weight decay: l2 / l2_new are pulls towards the old head
        params.update(l2=l2, l2_new=l2_new)
    y_all = np.concatenate([y_old, y_aug])
    weights = np.concatenate([np.ones(len(z_old)), w_aug])
    if class_weight == "balanced":
        weights = weights * balanced_weights(y_all, n_classes, weights)
    clips_of = np.bincount(y_src, minlength=n_classes) - np.bincount(
        y_new[len(y_new) - synthetic_rows :], minlength=n_classes
    )
    counts = np.bincount(y_old) if len(y_old) else np.zeros(0, np.int64)
    replay_per_class = float(np.median(counts[counts > 0])) if np.any(counts > 0) else 0.0
    scale = {
        c: float(new_weight) if new_weight is not None else few_shot_weight(int(clips_of[c]), replay_per_class)
        for c in few_shot
    }
    for c, factor in scale.items():
        weights[y_all == c] *= factor
    with one_blas_thread():
        model = make_head(head, **params).fit(np.concatenate([z_old, z_aug]), y_all, sample_weight=weights)
    z_replay = np.concatenate([z_old, z_aug[len(x_new) : len(x_src)]])
    y_replay = np.concatenate([y_old, y_src[len(x_new) :]])
    info = {
        "replay": bool(replay),
        "n_replay": int(len(z_replay)),
        "class_weight": class_weight,
        "new_weight": {str(c): round(factor, 4) for c, factor in scale.items()},
        "shifts": [int(s) for s in shifts],
        "train_accuracy_clips": float(np.mean(model.predict(z_aug[: len(x_new)]) == y_new)),
        "train_accuracy_replay": float(np.mean(model.predict(z_replay) == y_replay)) if len(z_replay) else None,
    }
    return model, info


def _check_numbers(*, seed: int, l2: float, l2_new: float, new_weight: float | None) -> None:
    """Finite, non-negative numbers only, checked before any work: ``--l2-new inf`` would otherwise
    warn from numpy and fail later with a less useful message."""
    if not 0 <= int(seed) < 2**32:
        raise KitError(f"--seed: {seed} is outside 0..{2**32 - 1}")
    for option, value in (("--l2", l2), ("--l2-new", l2_new)):
        if value is not None and not (np.isfinite(value) and value >= 0):
            raise KitError(f"{option}: {value} must be a finite number >= 0")
    if new_weight is not None and not (np.isfinite(new_weight) and new_weight > 0):
        raise KitError(f"--new-weight must be positive and finite, got {new_weight}")


def _storable(head: str) -> None:
    """Only a linear head fits the bundle's ``logits = embedding @ W.T + b``; refuse others up front."""
    if head not in HEADS:
        raise KitError(f"--head: unknown head '{head}' (choose from {', '.join(HEADS)})")
    if head != "softmax":
        raise KitError(
            f"--head {head}: the bundle stores a linear head (logits = embedding @ W.T + b), which a {head} head "
            "cannot be written as; use --head softmax (bench/finetune.py compares the two)"
        )


def _entry(op: str, started: float, model, clips: Sequence[Path], classifier: BundleClassifier, **extra) -> dict:
    return {
        "op": op,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "clips": [p.name for p in clips],
        "n_clips": len(clips),
        "model": classifier.model_name,
        "head": model.get_params(),
        "n_iter": int(model.n_iter_),
        "converged": bool(model.converged_),
        **extra,
        "seconds": round(time.perf_counter() - started, 3),
    }


def add_keyword(
    bundle: Bundle,
    name: str,
    clips: Sequence[str | os.PathLike],
    *,
    replay: bool = True,
    remember: bool = True,
    head: str = "softmax",
    seed: int = 0,
    l2: float = DEFAULT_L2,
    l2_new: float = DEFAULT_L2_NEW,
    shifts: Sequence[int] = DEFAULT_SHIFTS,
    new_weight: float | None = None,
    model_name: str | None = None,
    threads: int = 1,
    synthetic: int = 0,
    spoken: str | None = None,
) -> Bundle:
    """A new bundle that also recognises ``name``, learnt from ``clips`` (WAV paths or folders).

    ``replay`` trains on the bundle's replay memory too (without it every clip looks like the
    new word to the head: old classes are forgotten); ``remember`` appends the new clips'
    features to the replay memory, at most as many as the largest old class holds.
    ``synthetic`` adds that many text-to-speech clips of ``spoken`` (default: ``name`` with
    underscores as spaces) to the new class (``synthetic_speech``); they are never remembered,
    so the replay memory keeps only the user's own voice.
    """
    started = time.perf_counter()
    _storable(head)
    _check_numbers(seed=seed, l2=l2, l2_new=l2_new, new_weight=new_weight)
    name = check_class_name(str(name), "--add-keyword", new_keyword=True)
    if name in bundle.classes:
        raise KitError(f"--add-keyword: '{name}' is already a class of this bundle; use --personalize to adapt it")
    if synthetic < 0:
        raise KitError(f"--synthetic must be 0 or more clips, got {synthetic}")
    text = check_text(spoken if spoken is not None else name.replace("_", " ")) if synthetic else None
    paths = expand_clips(clips)
    classifier = BundleClassifier(bundle, model_name, threads=threads)
    x_new = np.stack([clip_features(classifier, p) for p in paths])
    voices: list[str] = []
    if synthetic:
        spoken_clips = synthesize(text, synthetic, seed=seed)
        voices = [clip.voice for clip in spoken_clips]
        x_synthetic = [_synthetic_features(classifier, c) for c in spoken_clips]
        x_new = np.concatenate([x_new, np.stack(x_synthetic)])
    k = len(bundle.classes)
    y_new = np.full(len(x_new), k, np.int64)
    model, info = fit_head(
        bundle,
        classifier,
        x_new,
        y_new,
        k + 1,
        replay=replay,
        head=head,
        seed=seed,
        l2=l2,
        l2_new=l2_new,
        shifts=shifts,
        new_weight=new_weight,
        synthetic_rows=len(voices),
    )
    weight, bias = model.coef_, model.intercept_
    replay_x = replay_y = None
    added = 0
    if remember:
        stored_y = np.asarray(bundle.replay_labels, dtype=np.int64)
        cap = max(int(np.bincount(stored_y).max()) if len(stored_y) else 0, REMEMBER_AT_LEAST)
        added = min(cap, len(paths))
        replay_x = np.concatenate([np.asarray(bundle.replay_features, np.float32), x_new[:added]])
        replay_y = np.concatenate([stored_y, y_new[:added]])
    if voices:
        info["synthetic"] = {"text": text, "clips": len(voices), "voices": voices}
    entry = _entry("add_keyword", started, model, paths, classifier, keyword=name, seed=seed, remembered=added, **info)
    return bundle.with_head(
        [*bundle.classes, name], weight, bias, entry, replay_features=replay_x, replay_labels=replay_y
    )


def personalize(
    bundle: Bundle,
    clips: Sequence[str | os.PathLike],
    *,
    replay: bool = True,
    remember: bool = False,
    head: str = "softmax",
    seed: int = 0,
    l2: float = DEFAULT_L2,
    l2_new: float = DEFAULT_L2_NEW,
    shifts: Sequence[int] = DEFAULT_SHIFTS,
    new_weight: float | None = None,
    model_name: str | None = None,
    threads: int = 1,
) -> Bundle:
    """A new bundle whose head is adapted to labelled clips of the user's voice (existing classes only).

    Labels come from each clip's folder or ``<class>_`` file-name prefix (see ``label_of``).
    ``remember`` appends the clips to the replay memory (off by default: see the module docstring).
    """
    started = time.perf_counter()
    _storable(head)
    _check_numbers(seed=seed, l2=l2, l2_new=l2_new, new_weight=new_weight)
    paths = expand_clips(clips)
    classes = list(bundle.classes)
    labels = [label_of(p, classes) for p in paths]
    ignore = set(getattr(bundle.detector, "ignore", ()) or ())
    classifier = BundleClassifier(bundle, model_name, threads=threads)
    x_new = np.stack(
        [clip_features(classifier, p, require_sound=label not in ignore) for p, label in zip(paths, labels)]
    )
    y_new = np.array([classes.index(label) for label in labels], dtype=np.int64)
    model, info = fit_head(
        bundle,
        classifier,
        x_new,
        y_new,
        len(classes),
        replay=replay,
        head=head,
        seed=seed,
        l2=l2,
        l2_new=l2_new,
        shifts=shifts,
        new_weight=new_weight,
    )
    weight, bias = model.coef_, model.intercept_
    replay_x = replay_y = None
    if remember:
        replay_x = np.concatenate([np.asarray(bundle.replay_features, np.float32), x_new])
        replay_y = np.concatenate([np.asarray(bundle.replay_labels, np.int64), y_new])
    entry = _entry(
        "personalize",
        started,
        model,
        paths,
        classifier,
        labels=sorted(set(labels)),
        seed=seed,
        remembered=len(x_new) if remember else 0,
        **info,
    )
    return bundle.with_head(classes, weight, bias, entry, replay_features=replay_x, replay_labels=replay_y)


# Saving ------------------------------------------------------------------------------------------
def output_paths(source: Path, out: Path | None) -> tuple[Path, Path | None]:
    """(where the new bundle goes, where the previous one is kept or None), all checked before any work.

    ``--out`` naming BUNDLE itself (or a link to it) means in place, like no ``--out``.
    """
    source = Path(source)
    if out is not None:
        check_output_path(out, "--out")
        if not (source.exists() and os.path.exists(out) and os.path.samefile(out, source)):
            return Path(out), None
    require_regular_file(source)  # before the lock: a missing BUNDLE leaves no lock file behind
    check_output_path(source, "BUNDLE")
    backup = source.with_name(source.name + BACKUP_SUFFIX)
    check_output_path(backup, "BUNDLE.bak")
    return source, backup


def save_updated(new: Bundle, source: Path, out: Path | None, *, held: bool = False) -> tuple[Path, Path | None]:
    """Write ``new`` to ``out``, or over ``source`` keeping the previous file as ``source.bak``.

    Returns (written path, backup path or None). Both writes are atomic: an interrupted
    fine-tune leaves the old or the new bundle, never half of one; the backup is written first,
    so the old bundle always survives somewhere. ``held=True``: the caller holds ``source``'s
    :func:`file_lock` since it read the bundle (see :func:`run`), so ``.bak`` is the version this
    update started from and no concurrent update is lost.
    """
    target, backup = output_paths(Path(source), out)
    if backup is None:
        return new.save(target), None
    atomic_write_bytes(backup, read_regular_bytes(source))
    atomic_write_files({target: artifact_bytes(new.to_artifact(), configured_key())}, held=(target,) if held else ())
    return target, backup


# Command line ------------------------------------------------------------------------------------
def build_parser(prog: str = "finetune") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Retrain a bundle's classifier head on the device: add a keyword from a few clips, "
        "or personalise to a voice, replaying the bundle's coreset so old classes are kept.",
    )
    parser.add_argument("bundle", type=Path, metavar="BUNDLE", help="bundle file (.kit)")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument(
        "--add-keyword",
        nargs="+",
        metavar=("NAME", "CLIPS"),
        help="new keyword name followed by its WAV clips (files or folders; 5-10 clips suffice)",
    )
    mode.add_argument(
        "--personalize",
        nargs="+",
        metavar="CLIPS",
        help="labelled WAV clips of existing classes (label = parent folder or <class>_ prefix)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="write the updated bundle here and leave BUNDLE untouched (default: update BUNDLE "
        "in place, keeping the previous version as BUNDLE.bak)",
    )
    parser.add_argument(
        "--no-replay", action="store_true", help="do not replay the coreset (old classes are forgotten)"
    )
    parser.add_argument(
        "--head",
        choices=sorted(HEADS),
        default="softmax",
        help="head to train (default softmax; mlp cannot be stored in a bundle and is refused)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed (recorded in the bundle history)")
    parser.add_argument(
        "--l2",
        type=float,
        default=DEFAULT_L2,
        help=f"pull of the old classes towards the current head (default {DEFAULT_L2})",
    )
    parser.add_argument(
        "--l2-new", type=float, default=DEFAULT_L2_NEW, help=f"weight decay of a new class (default {DEFAULT_L2_NEW})"
    )
    parser.add_argument(
        "--new-weight",
        type=float,
        default=None,
        help=f"weight of a keyword learnt from your clips relative to an old class (default {FEW_SHOT_CLIPS:g} / "
        "its clips, at most the replay samples per old class / 10, at least 1; lower it if old "
        "words start being taken for the new one)",
    )
    parser.add_argument("--no-shift", action="store_true", help="do not augment the clips with time shifts")
    parser.add_argument(
        "--synthetic",
        type=int,
        default=0,
        metavar="N",
        help="with --add-keyword: also train on N text-to-speech clips of the word in many voices "
        "(needs espeak-ng or flite; never stored in the replay memory; default 0)",
    )
    parser.add_argument(
        "--spoken",
        default=None,
        metavar="TEXT",
        help="what the synthetic voices say (default: the keyword's name, underscores as spaces)",
    )
    parser.add_argument(
        "--remember",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="add the clips to the replay memory (default: yes for --add-keyword, no for --personalize)",
    )
    parser.add_argument(
        "--model", default=None, help="model file in the bundle that embeds the clips (default: the bundle's default)"
    )
    parser.add_argument("--threads", type=int, default=1, help="inference threads (default 1)")
    return parser


def run(args: argparse.Namespace) -> tuple[Bundle, Bundle, Path, Path | None]:
    """Load, fine-tune and save as ``args`` say; returns (old bundle, new bundle, written path, backup).

    Every output is checked before the bundle is read. An in-place update holds the bundle's lock
    from reading it to renaming the new one over it, so two fine-tunes of one file run one after
    the other and both updates land (the second one starts from the first one's result).
    """
    target, backup = output_paths(Path(args.bundle), args.out)
    with contextlib.ExitStack() as stack:
        if backup is not None:
            stack.enter_context(file_lock(target, "BUNDLE"))
        return _run_locked(args, held=backup is not None)


def _run_locked(args: argparse.Namespace, held: bool) -> tuple[Bundle, Bundle, Path, Path | None]:
    bundle = Bundle.load(args.bundle)
    if args.threads < 1:
        raise KitError(f"--threads must be at least 1, got {args.threads}")
    common = {
        "replay": not args.no_replay,
        "head": args.head,
        "seed": args.seed,
        "l2": args.l2,
        "l2_new": args.l2_new,
        "shifts": () if args.no_shift else DEFAULT_SHIFTS,
        "new_weight": args.new_weight,
        "model_name": args.model,
        "threads": args.threads,
    }
    if args.remember is not None:
        common["remember"] = args.remember
    synthetic, spoken = args.synthetic, args.spoken
    if args.add_keyword is not None:
        if len(args.add_keyword) < 2:
            raise KitError("--add-keyword needs the keyword name followed by at least one clip")
        new = add_keyword(
            bundle, args.add_keyword[0], args.add_keyword[1:], synthetic=synthetic, spoken=spoken, **common
        )
    elif synthetic or spoken is not None:
        raise KitError("--synthetic and --spoken go with --add-keyword (personalisation adapts to your own voice)")
    else:
        new = personalize(bundle, args.personalize, **common)
    path, backup = save_updated(new, args.bundle, args.out, held=held)
    return bundle, new, path, backup


def describe(old: Bundle, new: Bundle, path: Path, backup: Path | None = None) -> str:
    """The few lines printed after a fine-tune."""
    entry = new.history[-1] if new.history else {}
    added = [c for c in new.classes if c not in old.classes]
    what = f"added '{added[0]}'" if added else "personalised"
    replay = f"replaying {entry.get('n_replay', 0)} coreset samples" if entry.get("replay") else "without replay"
    acc = entry.get("train_accuracy_clips")
    synthetic = entry.get("synthetic") or {}
    spoken = f" and {synthetic['clips']} synthetic clips of '{synthetic['text']}'" if synthetic else ""
    seconds = entry.get("seconds", float("nan"))
    lines = [
        f"{what} from {entry.get('n_clips', '?')} clips{spoken}, {replay}, in {seconds:.2f} s"
        + (f"; {100 * acc:.0f} % of the clips are now recognised" if acc is not None else "")
    ]
    lines.append(f"classes ({len(new.classes)}): {', '.join(new.classes)}")
    lines.append(f"wrote {path}" + (f" (previous version kept as {backup})" if backup is not None else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``finetune BUNDLE (--add-keyword NAME CLIPS... | --personalize CLIPS...) [options]``."""
    args = build_parser().parse_args(argv)
    old, new, path, backup = run(args)
    print(describe(old, new, path, backup))
    return 0
