"""On-disk cache of extracted feature maps, keyed by everything that could change them.

Why this key: the feature config, the exact clip list (path, size, mtime, segment) and a code
version together decide the output, so a hit is always the array a fresh extraction would give;
editing a file, changing a config field or bumping ``FEATURE_CODE_VERSION`` after a DSP change
simply misses. Arrays are plain ``.npy`` (never pickles), written atomically so a crash or a
concurrent writer never leaves a torn file that a later run would trust.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deploy.runtime.artifact import atomic_write_bytes
from deploy.runtime.errors import KitError
from deploy.runtime.features import FeatureConfig

from ..data.paths import cache_dir as resolve_cache_dir
from ..data.types import Clip

# Bump when the extraction code changes its output for the same config and audio
# (DSP, resampling, mono mixing, crop/pad): every old cache entry then misses.
FEATURE_CODE_VERSION = 2


@dataclass
class CacheStats:
    """Counters of this process's cache use, so callers (and tests) can see hits without timing."""

    hits: int = 0
    misses: int = 0
    clips_extracted: int = 0
    last_path: Path | None = None
    last_hit: bool = False

    def reset(self) -> None:
        self.hits = self.misses = self.clips_extracted = 0
        self.last_path, self.last_hit = None, False


CACHE_STATS = CacheStats()


def _stat(clip: Clip) -> tuple[int, int]:
    try:
        st = os.stat(clip.path)
    except OSError:
        return -1, -1  # a missing file still gets a key; extraction reports it
    return st.st_size, st.st_mtime_ns


def cache_key(clips: Sequence[Clip], config: FeatureConfig) -> str:
    """SHA-256 over the config, the ordered clip list with file size + mtime, and the code version."""
    rows = []
    for clip in clips:
        size, mtime = _stat(clip)
        rows.append([str(Path(clip.path).resolve()), size, mtime, float(clip.offset_s), clip.duration_s])
    payload = {"version": FEATURE_CODE_VERSION, "config": config.to_dict(), "clips": rows}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def cache_paths(
    clips: Sequence[Clip], config: FeatureConfig, cache_dir: str | os.PathLike | None = None
) -> tuple[Path, Path]:
    """(features .npy, kept-indices .npy) for this clip list and config."""
    key = cache_key(clips, config)
    folder = resolve_cache_dir(cache_dir) / f"v{FEATURE_CODE_VERSION}"
    return folder / f"{key}.npy", folder / f"{key}.kept.npy"


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def read_cached(paths: tuple[Path, Path], n_clips: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The cached (features, kept) or None when absent or unusable (then it is recomputed)."""
    features_path, kept_path = paths
    if not (features_path.is_file() and kept_path.is_file()):
        return None
    try:
        features = np.load(features_path, allow_pickle=False)
        kept = np.load(kept_path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if features.ndim != 4 or kept.ndim != 1 or len(features) != len(kept) or (len(kept) and kept.max() >= n_clips):
        return None
    return features.astype(np.float32, copy=False), kept.astype(np.int64, copy=False)


def write_cached(paths: tuple[Path, Path], features: np.ndarray, kept: np.ndarray) -> None:
    """Kept indices first, features last: a features file only ever exists with its indices."""
    features_path, kept_path = paths
    try:
        atomic_write_bytes(kept_path, _npy(np.asarray(kept, dtype=np.int64)))
        atomic_write_bytes(features_path, _npy(np.asarray(features, dtype=np.float32)))
    except OSError as exc:
        raise KitError(f"cannot write the feature cache at {features_path.parent}: {exc} (set KIT_CACHE_DIR)") from None
