"""Where recordings and the feature cache live on disk.

Why one place: the CLI, the tests and the benchmarks must all agree on the lookup order
(explicit argument, then environment, then a per-user cache) or a user who set ``KIT_DATA_DIR``
gets different data in different commands.
"""

from __future__ import annotations

import os
from pathlib import Path

APP_DIR_NAME = "audio-distill-kit"


def user_cache_root() -> Path:
    """``$XDG_CACHE_HOME/audio-distill-kit`` (or ``~/.cache/...``): per-user, never inside the repo."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / APP_DIR_NAME


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding the datasets: ``data_dir``, else ``$KIT_DATA_DIR``, else the user cache.

    Nothing is checked here: loaders report a missing folder with advice on how to fill it.
    """
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    env = os.environ.get("KIT_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return user_cache_root() / "data"


def cache_dir(path: str | os.PathLike | None = None) -> Path:
    """The feature cache: ``path``, else ``$KIT_CACHE_DIR``, else the per-user cache."""
    if path is not None and str(path) != "":
        return Path(path).expanduser()
    env = os.environ.get("KIT_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return user_cache_root() / "features"
