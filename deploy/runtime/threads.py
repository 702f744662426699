"""Pin numpy's BLAS to one thread: ``with one_blas_thread(): ...``.

Why one helper for the whole kit: the matrix products of the front-end (40 x 257 by 257 x 64) and
of the fine-tuned head (~200 x 512) are small, and on a machine whose cores are busy (a listener
running, other processes, feature-extraction workers) OpenBLAS's worker threads spin-wait for
cores. Measured: Speech Commands extraction 8x slower, a head fit 18x slower (8.4 s vs 0.47 s)
with the default threads than with one. Parallelism, where wanted, comes from processes instead.
``threadpoolctl`` (a scikit-learn dependency, optional on a device) does the pinning; without it
nothing is pinned (set ``OPENBLAS_NUM_THREADS=1`` before starting Python). Standard library only,
so the device runtime may use it.
"""

from __future__ import annotations

import contextlib


def one_blas_thread() -> contextlib.AbstractContextManager:
    """A context manager limiting BLAS to one thread inside it (a no-op without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_limits  # lazy: optional back-end, absent on most devices
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")
