"""``--nproc N``: start N local worker processes that join one torch.distributed group.

Why not just tell users to type ``torchrun``: on one machine ``kit distill --nproc 2`` is what
people expect, and it must turn a worker's ``KitError`` into the usual one-line message. It sets
the same environment torchrun does (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``,
``MASTER_PORT``), so the command inside the workers is exactly what runs under
``torchrun --nproc_per_node N -m kit.cli distill ...`` on one or several machines.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Any, Callable

from deploy.runtime.errors import KitError


def free_port() -> int:
    """A TCP port nobody listens on right now (for the rendezvous on 127.0.0.1)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, fn: Callable[[dict[str, Any]], None], job: dict[str, Any], world: int, port: int) -> None:
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from distill.distributed import shutdown  # lazy: pulls in torch, soundfile

    try:
        fn(job)
    except KitError as exc:
        print(f"error: (rank {rank}) {exc}", file=sys.stderr)
        sys.exit(2)
    finally:
        shutdown()


def launch(fn: Callable[[dict[str, Any]], None], job: dict[str, Any], nproc: int) -> None:
    """Run ``fn(job)`` in ``nproc`` processes of one process group; raise KitError if one fails."""
    import torch.multiprocessing as mp  # lazy: torch only when used

    if nproc < 2:
        fn(job)
        return
    port = free_port()
    try:
        mp.spawn(_worker, args=(fn, job, nproc, port), nprocs=nproc, join=True)
    except mp.ProcessExitedException as exc:
        raise KitError(f"distributed run failed: worker {exc.error_index} exited with status {exc.exit_code}") from None
    except mp.ProcessRaisedException as exc:
        last = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown error"
        raise KitError(f"distributed run failed: {last}") from None
