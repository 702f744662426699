"""Feature maps for a list of clips: cached, parallel over the cores, with bad files handled.

Why processes: decoding and the numpy DSP hold the GIL, so threads would not help; chunks of
clips amortise the inter-process transfer. Workers are forked where the OS allows it (no
re-import of the caller's script, no ``__main__`` guard needed, start-up in milliseconds): they
only run numpy and soundfile, never torch.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

from deploy.runtime.errors import KitError
from deploy.runtime.features import FeatureConfig, extract_features
from deploy.runtime.threads import one_blas_thread

from ..audio import load_audio
from ..data.types import Clip
from .cache import CACHE_STATS, cache_paths, read_cached, write_cached

# Below this many clips a process pool costs more than it saves.
_MIN_CLIPS_FOR_POOL = 48
_MAX_CHUNK = 128

_Item = tuple[int, str, float, float | None]
_Result = tuple[int, np.ndarray | None, str | None]


def clip_features(clip: Clip, config: FeatureConfig) -> np.ndarray:
    """One clip's feature map (``config.shape``), decoded and resampled to ``config.sample_rate``."""
    y = load_audio(clip.path, config.sample_rate, clip.offset_s, clip.duration_s)
    return extract_features(y, config)


def _extract_chunk(items: list[_Item], config_dict: dict) -> list[_Result]:
    """Worker: features or the KitError message for each (index, path, offset, duration)."""
    with one_blas_thread():
        return _extract_items(items, FeatureConfig.from_dict(config_dict))


def _extract_items(items: list[_Item], config: FeatureConfig) -> list[_Result]:
    out: list[_Result] = []
    for index, path, offset, duration in items:
        try:
            y = load_audio(path, config.sample_rate, offset, duration)
            out.append((index, extract_features(y, config), None))
        except KitError as exc:
            out.append((index, None, str(exc)))
    return out


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _pool_context() -> multiprocessing.context.BaseContext:
    """forkserver where available: plain fork after torch, JAX (pulled in by the TFLite exporter)
    or onnxruntime have started threads can deadlock the children; spawn elsewhere."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def _chunks(items: list[_Item], jobs: int) -> list[list[_Item]]:
    size = max(8, min(_MAX_CHUNK, -(-len(items) // (jobs * 4))))
    return [items[i : i + size] for i in range(0, len(items), size)]


def _progress_bar(progress: bool):
    columns = (
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    return Progress(*columns, console=Console(stderr=True), transient=True, disable=not progress)


def _run(items: list[_Item], config: FeatureConfig, jobs: int, progress: bool):
    """Yield result lists chunk by chunk, inline or from a process pool, with a progress bar.

    Work is submitted before the progress bar starts its refresh thread, so workers are forked
    from a process with no other thread running (no lock can be inherited held).
    """
    chunks = _chunks(items, jobs)
    description = f"features ({config.kind}, {jobs} job{'s' if jobs > 1 else ''})"
    if jobs == 1:
        with _progress_bar(progress) as bar:
            task = bar.add_task(description, total=len(items))
            for chunk in chunks:
                results = _extract_chunk(chunk, config.to_dict())
                bar.advance(task, len(chunk))
                yield results
        return
    with ProcessPoolExecutor(max_workers=jobs, mp_context=_pool_context()) as pool:
        pending = {pool.submit(_extract_chunk, chunk, config.to_dict()) for chunk in chunks}
        try:
            with _progress_bar(progress) as bar:
                task = bar.add_task(description, total=len(items))
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        results = future.result()
                        bar.advance(task, len(results))
                        yield results
        finally:
            for future in pending:
                future.cancel()


def _warn_skipped(n_bad: int, n_total: int, first_error: str) -> None:
    print(
        f"warning: skipped {n_bad} of {n_total} clips that could not be read (first: {first_error})",
        file=sys.stderr,
    )


def extract_clips(
    clips: Sequence[Clip],
    config: FeatureConfig,
    *,
    cache_dir: str | os.PathLike | None = None,
    jobs: int | None = None,
    skip_bad: bool = False,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Raw (unnormalised) features float32 (N, C, F, T) of the readable clips, and their indices.

    ``jobs=None`` uses every available core (inline for small lists), ``jobs=1`` runs inline.
    With ``skip_bad`` unreadable clips are left out and counted on stderr; otherwise the first
    bad clip raises its ``KitError``. Results are cached (see ``kit.features.cache``);
    ``CACHE_STATS`` tells whether this call hit.
    """
    clips = list(clips)
    paths = cache_paths(clips, config, cache_dir)
    CACHE_STATS.last_path = paths[0]
    cached = read_cached(paths, len(clips))
    if cached is not None:
        features, kept = cached
        missing = sorted(set(range(len(clips))) - set(kept.tolist()))
        if missing and not skip_bad:
            clip_features(clips[missing[0]], config)  # raises that clip's KitError (file unchanged since)
        else:
            CACHE_STATS.hits += 1
            CACHE_STATS.last_hit = True
            if missing:
                _warn_skipped(len(missing), len(clips), f"{clips[missing[0]].path}, as cached")
            return features, kept
    CACHE_STATS.misses += 1
    CACHE_STATS.last_hit = False

    n_jobs = available_cores() if jobs is None else max(1, int(jobs))
    if jobs is None and len(clips) < _MIN_CLIPS_FOR_POOL:
        n_jobs = 1
    n_jobs = min(n_jobs, max(1, len(clips)))
    items: list[_Item] = [(i, str(c.path), float(c.offset_s), c.duration_s) for i, c in enumerate(clips)]
    out = np.empty((len(clips), *config.shape), dtype=np.float32)
    ok = np.zeros(len(clips), dtype=bool)
    errors: dict[int, str] = {}
    batches = _run(items, config, n_jobs, progress)
    try:
        for results in batches:
            for index, feats, error in results:
                if error is None:
                    out[index] = feats
                    ok[index] = True
                else:
                    errors[index] = error
            if errors and not skip_bad:
                raise KitError(errors[min(errors)])
    finally:
        batches.close()  # stops the pool and the progress bar now, not when the traceback is freed
    CACHE_STATS.clips_extracted += int(ok.sum())
    kept = np.flatnonzero(ok).astype(np.int64)
    features = out if len(kept) == len(clips) else out[kept]
    if errors:
        _warn_skipped(len(errors), len(clips), errors[min(errors)])
    if len(kept) == 0 and len(clips):
        raise KitError(f"none of the {len(clips)} clips could be read (first: {errors[min(errors)]})")
    write_cached(paths, features, kept)
    return features, kept
