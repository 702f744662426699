"""``load_dataset``: one entry point from a name or a path to a checked ``AudioDataset``.

Why one dispatcher: the CLI, benchmarks and tests accept the same strings ("fsdd", a folder, a
CSV), and every dataset passes the same sanity checks (no empty class, no test-only class)
before anyone extracts features from it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from deploy.runtime.errors import KitError

from .custom import load_folder, load_manifest
from .esc import load_esc
from .folds import canonical_name
from .fsdd import load_fsdd
from .paths import resolve_data_dir
from .ravdess import load_ravdess
from .speech_commands import load_speech_commands
from .types import AudioDataset, check_dataset
from .urbansound import load_urbansound8k

DATASET_NAMES = ("fsdd", "speech_commands", "esc10", "esc50", "urbansound8k", "ravdess")


def _builtin(
    name: str, data_dir: Path, split: str, task: str, test_fold: int, extra_train: Sequence[str | os.PathLike]
) -> AudioDataset:
    loaders: dict[str, Callable[[], AudioDataset]] = {
        "fsdd": lambda: load_fsdd(data_dir, split),
        "speech_commands": lambda: load_speech_commands(data_dir, task, extra_train),
        "esc10": lambda: load_esc("esc10", data_dir, test_fold),
        "esc50": lambda: load_esc("esc50", data_dir, test_fold),
        "urbansound8k": lambda: load_urbansound8k(data_dir, test_fold),
        "ravdess": lambda: load_ravdess(data_dir, split, test_fold),
    }
    if name not in ("fsdd", "ravdess") and split not in ("official", "default"):
        raise KitError(f"{name}: unknown split '{split}' ({name} has only its official split)")
    return loaders[name]()


def load_dataset(
    name_or_path: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    *,
    split: str = "official",
    task: str = "kws10",
    test_fold: int = 5,
    seed: int = 0,
    extra_train: Sequence[str | os.PathLike] = (),
) -> AudioDataset:
    """A built-in dataset by name (``fsdd``, ``speech_commands``, ``esc10``, ``esc50``,
    ``urbansound8k`` alias ``us8k``, ``ravdess``), a folder-per-class directory or a CSV manifest.

    ``split`` selects FSDD's "official" or "speaker" split, RAVDESS's "official" (actors 21-24 test)
    or "actors" (k-fold); ``task`` selects Speech Commands' kws10 or kws12; ``test_fold`` the ESC,
    UrbanSound8K, RAVDESS-actor (or manifest) fold held out; ``seed`` the hash salt of
    folder/manifest splits. Built-in splits ignore ``seed``: they are fixed by the datasets.
    ``extra_train`` folders add training-only clips (Speech Commands only).
    """
    text = os.fspath(name_or_path)
    key = canonical_name(text)
    if extra_train and key != "speech_commands":
        raise KitError(f"--extra-train: extra training folders are supported for speech_commands only, not '{text}'")
    if key in DATASET_NAMES:  # a folder that happens to share a name is passed as ./name
        dataset = _builtin(key, resolve_data_dir(data_dir), split, task, test_fold, list(extra_train))
    else:
        path = Path(text).expanduser()
        if path.is_dir():
            dataset = load_folder(path, split, seed)
        elif path.is_file() and path.suffix.lower() == ".csv":
            dataset = load_manifest(path, test_fold, seed)
        elif path.is_file():
            raise KitError(f"{path}: a dataset file must be a CSV manifest (path,label[,split|fold|group])")
        else:
            raise KitError(
                f"unknown dataset '{text}': not one of {', '.join(DATASET_NAMES)} and no folder or CSV file at "
                f"{path.resolve()}; get a built-in one with `kit data download NAME` or pass a folder-per-class path"
            )
    return check_dataset(dataset)
