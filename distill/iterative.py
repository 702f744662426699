"""The machinery every optimisation-based distiller shares: step loop, budget, checkpoints, progress.

Why one loop: RFAD, DC, DSA, DM and MTT differ only in what one step computes. Stopping on a
step count or a wall-clock budget, writing atomic checkpoints and resuming them exactly, showing
a progress bar, logging a history and agreeing on all of that across torch.distributed ranks is
the same for each, and doing it once means ``--resume``, ``--time-budget`` and ``--nproc`` behave
identically whatever ``--method`` says.

A subclass implements four hooks:

* ``_setup(x, y, n_classes, device, group)``: build the learnable tensors and register them in
  ``self.tensors`` (name -> tensor), optimisers in ``self.optimizers`` and torch generators in
  ``self.generators``; everything registered is checkpointed and restored automatically;
* ``_step(step)``: one optimisation step; returns the history fields (at least ``loss``);
* ``_finish()``: set ``features_`` and ``labels_`` from the tensors;
* ``_identity_keys()``: hyper-parameters a checkpoint must share with the run resuming it.

Optional: ``_extra_state() -> (arrays, meta)`` / ``_restore_extra_state(arrays, meta)`` for state
that is not a registered tensor, optimiser or generator, ``_after_step(step, entry)`` for periodic
work such as validation, and ``_default_steps()`` for a step count that depends on ``ipc``.
"""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deploy.runtime.errors import KitError
from kit.training.config import resolve_device
from kit.training.loop import torch_threads

from .base import Distiller
from .checkpoint import (
    generator_state,
    load_checkpoint,
    optimizer_state,
    restore_generator,
    restore_optimizer,
    save_checkpoint,
    to_numpy,
)
from .distributed import ProcessGroup, current_group
from .params import Param, flag, non_negative_int, positive_float, positive_int
from .progress import DistillProgress

#: parameters every iterative distiller takes (and that never change the result, except steps)
COMMON_PARAMS = (
    "steps",
    "time_budget_s",
    "device",
    "checkpoint_path",
    "checkpoint_every",
    "resume",
    "progress",
    "threads",
)


def data_fingerprint(x: np.ndarray, y: np.ndarray) -> str:
    """Short hash of the training data, so a checkpoint is never resumed on other data."""
    h = hashlib.sha256()
    h.update(str(x.shape).encode())
    h.update(np.ascontiguousarray(x).tobytes())
    h.update(np.ascontiguousarray(y).tobytes())
    return h.hexdigest()[:16]


# Real data, sharded over ranks -----------------------------------------------------------------
class RealData:
    """The real training pool as this rank holds it (rows ``i % world == rank``), on ``device``.

    Batches are drawn as *global* indices with a generator every rank seeds the same way; ``take``
    returns the rows of a global batch this rank owns. With one process it owns everything.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, n_classes: int, group: ProcessGroup, device: torch.device) -> None:
        self.n, self.n_classes, self.group, self.device = len(x), n_classes, group, device
        local = group.shard_indices(len(x))
        self.x = torch.from_numpy(np.ascontiguousarray(x[local])).to(device)
        self.y = torch.from_numpy(y[local]).to(device)
        self.class_indices = [torch.from_numpy(np.flatnonzero(y == c)) for c in range(n_classes)]

    def batch(self, generator: torch.Generator, size: int) -> torch.Tensor:
        """A random global batch of ``size`` indices (without replacement, capped at the pool)."""
        return torch.randperm(self.n, generator=generator)[: int(size)]

    def class_batch(self, generator: torch.Generator, c: int, size: int) -> torch.Tensor:
        members = self.class_indices[c]
        return members[torch.randperm(len(members), generator=generator)[: int(size)]]

    def take(self, global_idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(features, labels) of the members of ``global_idx`` held by this rank."""
        _, local = self.group.owned(global_idx)
        local = local.to(self.device)
        return self.x[local], self.y[local]


class IterativeDistiller(Distiller):
    """Base of the optimisation-based distillers (see the module docstring for the hooks)."""

    PARAMS = {
        "steps": non_negative_int("optimisation steps", none="per-ipc default, capped by time_budget_s"),
        "time_budget_s": positive_float("stop after this many seconds of this invocation", none="no budget"),
        "device": Param("str", "auto, cpu, cuda or cuda:N"),
        "checkpoint_path": Param("str", "file of the resumable checkpoint", none="no checkpoint"),
        "checkpoint_every": positive_int("write the checkpoint every this many steps (and at the end)"),
        "resume": flag("continue from checkpoint_path when it exists"),
        "progress": flag("show a progress bar"),
        "threads": positive_int("torch CPU threads during the run", none="torch's choice"),
    }

    def _init_common(
        self,
        steps: int | None,
        time_budget_s: float | None,
        device: str,
        checkpoint_path: str | None,
        checkpoint_every: int,
        resume: bool,
        progress: bool,
        threads: int | None,
    ) -> None:
        self.steps = steps
        self.time_budget_s = time_budget_s
        self.device = device
        self.checkpoint_path = checkpoint_path
        self.checkpoint_every = checkpoint_every
        self.resume = resume
        self.progress = progress
        self.threads = threads

    # hooks ----------------------------------------------------------------------------------------
    #: Per-ipc defaults: rows ``{"max_ipc": N, param: value, ...}``, smallest ``max_ipc`` first. A
    #: parameter left at None takes its value from the first row whose ``max_ipc`` >= ipc (good
    #: settings differ with the coreset size; each method measures its own table).
    IPC_DEFAULTS: tuple[dict[str, Any], ...] = ()

    def ipc_defaults(self) -> dict[str, Any]:
        """The row of ``IPC_DEFAULTS`` for this ipc, without ``max_ipc`` ({} when there is none)."""
        ipc = int(self.ipc)
        row = next((r for r in self.IPC_DEFAULTS if ipc <= r["max_ipc"]), {})
        return {k: v for k, v in row.items() if k != "max_ipc"}

    def _default_steps(self) -> int | None:
        return self.ipc_defaults().get("steps")

    def _identity_keys(self) -> tuple[str, ...]:
        return tuple(k for k in self.param_names() if k not in COMMON_PARAMS)

    def _setup(self, x: np.ndarray, y: np.ndarray, n_classes: int, device: torch.device, group: ProcessGroup) -> None:
        raise NotImplementedError

    def _step(self, step: int) -> dict[str, Any]:
        raise NotImplementedError

    def _finish(self) -> None:
        raise NotImplementedError

    def _after_step(self, step: int, entry: dict[str, Any], last: bool) -> None:
        """Periodic extra work (validation); may add fields to ``entry``."""

    def _extra_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return {}, {}

    def _restore_extra_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        """Counterpart of ``_extra_state``."""

    # parameters ---------------------------------------------------------------------------------
    def resolved_params(self) -> dict[str, Any]:
        """``get_params()`` with the per-ipc defaults filled in for ``None`` (what actually ran)."""
        params = self.get_params()
        for key, value in self.ipc_defaults().items():
            if key in params and params[key] is None:
                params[key] = value
        if params.get("steps") is None:
            params["steps"] = self._default_steps()
        return params

    def _check_params(self) -> None:
        """A run must be able to stop, and its device must exist (subclasses extend this)."""
        if self.resolved_params()["steps"] is None and self.time_budget_s is None:
            raise KitError(f"{self.method}: give steps or a time budget (otherwise it would never stop)")
        try:
            resolve_device(self.device)
        except KitError as exc:
            raise KitError(f"{self.method}: {exc}") from None

    # the loop -----------------------------------------------------------------------------------
    def _fit(self, x: np.ndarray, y: np.ndarray, n_classes: int) -> None:
        with torch_threads(self.threads):
            self._loop(x, y, n_classes)

    def _identity(self, x: np.ndarray, y: np.ndarray, n_classes: int) -> dict[str, Any]:
        identity = {k: getattr(self, k) for k in self._identity_keys()}
        identity.update(method=self.method, n_classes=n_classes, data=data_fingerprint(x, y))
        return identity

    def _checkpoint_arrays(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays = {f"tensor/{k}": to_numpy(t) for k, t in self.tensors.items()}
        arrays.update({f"generator/{k}": generator_state(g) for k, g in self.generators.items()})
        optim_meta = {}
        for k, opt in self.optimizers.items():
            opt_arrays, optim_meta[k] = optimizer_state(opt, f"optim/{k}")
            arrays.update(opt_arrays)
        extra_arrays, extra_meta = self._extra_state()
        arrays.update({f"extra/{k}": v for k, v in extra_arrays.items()})
        return arrays, {"optimizers": optim_meta, "extra": extra_meta}

    def _restore(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        with torch.no_grad():
            for k, t in self.tensors.items():
                t.copy_(torch.from_numpy(np.array(arrays[f"tensor/{k}"])).reshape(t.shape))
        for k, g in self.generators.items():
            restore_generator(g, arrays[f"generator/{k}"])
        for k, opt in self.optimizers.items():
            restore_optimizer(opt, f"optim/{k}", arrays, meta["optimizers"][k])
        extra = {k[len("extra/") :]: v for k, v in arrays.items() if k.startswith("extra/")}
        self._restore_extra_state(extra, meta.get("extra", {}))

    def _loop(self, x: np.ndarray, y: np.ndarray, n_classes: int) -> None:
        group = current_group()
        self.group_ = group
        dev = resolve_device(self.device)
        steps = self.resolved_params()["steps"]
        steps = int(steps) if steps is not None else None
        self.tensors: dict[str, torch.Tensor] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.generators: dict[str, torch.Generator] = {}
        self._setup(x, y, n_classes, dev, group)
        identity = self._identity(x, y, n_classes)

        step, elapsed, history = 0, 0.0, []
        ckpt = Path(self.checkpoint_path) if self.checkpoint_path else None
        self.resumed_from_ = None
        if self.resume and ckpt is not None and ckpt.exists():
            arrays, meta = load_checkpoint(ckpt, expect=identity)
            self._restore(arrays, meta)
            step, elapsed, history = int(meta["step"]), float(meta["elapsed"]), list(meta["history"])
            self.resumed_from_ = step
        elif self.resume and ckpt is not None and group.is_main:
            print(f"{self.method}: no checkpoint at {ckpt}; starting a fresh run", file=sys.stderr)

        def save(reason: str) -> None:
            if ckpt is None or not group.is_main:
                return
            arrays, meta = self._checkpoint_arrays()
            meta.update(
                identity=identity,
                step=step,
                elapsed=elapsed,
                history=history,
                reason=reason,
                params=self.resolved_params(),
            )
            save_checkpoint(ckpt, arrays, meta)

        # the budget limits this invocation (a resumed run gets a fresh one); ``elapsed`` stays
        # cumulative over invocations. Ranks stop together: rank 0's clock decides.
        session_start = time.perf_counter()

        def done() -> bool:
            if steps is not None and step >= steps:
                return True
            over = self.time_budget_s is not None and time.perf_counter() - session_start >= float(self.time_budget_s)
            return group.any(over and group.is_main, dev)

        reason = "steps"
        bar = DistillProgress(self.method, self.progress and group.is_main, steps, step)
        try:
            with bar:
                finished = done()
                while not finished:
                    t0 = time.perf_counter()
                    entry = {"step": step + 1, **self._step(step)}
                    step += 1
                    history.append(entry)  # before the extra work, so an interrupt there keeps step and history in line
                    finished = done()
                    self._after_step(step, entry, finished)
                    elapsed += time.perf_counter() - t0
                    entry["elapsed"] = round(elapsed, 3)
                    bar.update(step, entry)
                    if ckpt is not None and step % int(self.checkpoint_every) == 0 and not finished:
                        save("periodic")
            if steps is None or step < steps:
                reason = "time_budget"
        except KeyboardInterrupt:
            save("interrupted")
            raise
        save(reason)
        self.stop_reason_ = reason
        self.steps_done_ = step
        self.elapsed_s_ = elapsed
        self.history_ = history
        self._finish()

    def summary(self) -> dict[str, Any]:
        """A short record of the run for the coreset's ``extra`` (the full history is large)."""
        losses = [h["loss"] for h in self.history_ if h.get("loss") is not None]
        return {
            "steps": getattr(self, "steps_done_", None),
            "stop_reason": getattr(self, "stop_reason_", None),
            "elapsed_s": round(getattr(self, "elapsed_s_", 0.0), 2),
            "first_loss": losses[0] if losses else None,
            "final_loss": losses[-1] if losses else None,
            "min_loss": min(losses) if losses else None,
            "resumed_from": getattr(self, "resumed_from_", None),
            "world_size": getattr(getattr(self, "group_", None), "world", 1),
        }
