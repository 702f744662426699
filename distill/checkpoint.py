"""Checkpoints of iterative distillers: the kit's artifact container, kind ``distill-checkpoint``.

Why the artifact container and not ``torch.save``: a checkpoint is a file a user may be handed
(``--resume`` on another machine), and ``torch.load`` of an untrusted file runs pickles. The
container holds plain ``.npy`` arrays read with ``allow_pickle=False`` plus JSON metadata, every
member checksummed, and is written atomically, so a run killed mid-save leaves the previous
checkpoint intact. Torch tensors and generator states round-trip through numpy here.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deploy.runtime.artifact import Artifact, read_artifact, write_artifact
from deploy.runtime.errors import KitError

CHECKPOINT_KIND = "distill-checkpoint"


def to_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


def generator_state(gen: torch.Generator) -> np.ndarray:
    """A torch generator's state as a uint8 array (storable without pickles)."""
    return gen.get_state().numpy().copy()


def restore_generator(gen: torch.Generator, state: np.ndarray) -> None:
    gen.set_state(torch.from_numpy(np.ascontiguousarray(state, dtype=np.uint8)))


def optimizer_state(opt: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Any torch optimiser's ``state_dict`` as arrays ``<prefix>/<param>/<field>`` plus JSON meta."""
    sd = opt.state_dict()
    arrays: dict[str, np.ndarray] = {}
    shapes: dict[str, list[int]] = {}
    for pid, fields in sd["state"].items():
        for key, value in fields.items():
            array = to_numpy(value) if torch.is_tensor(value) else np.asarray(value)
            name = f"{prefix}/{pid}/{key}"
            arrays[name], shapes[name] = array, list(array.shape)
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return arrays, {"param_groups": groups, "shapes": shapes}


def restore_optimizer(
    opt: torch.optim.Optimizer, prefix: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]
) -> None:
    """Inverse of ``optimizer_state`` (moments are cast to the parameters' device by torch)."""
    state: dict[int, dict[str, Any]] = {}
    for name, shape in meta["shapes"].items():
        _, pid, key = name.rsplit("/", 2)
        state.setdefault(int(pid), {})[key] = torch.from_numpy(np.array(arrays[name]).reshape(shape))
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in meta["param_groups"]]
    opt.load_state_dict({"state": state, "param_groups": groups})


def save_checkpoint(path: str | os.PathLike, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Path:
    """Write a checkpoint atomically (a crash mid-write keeps the previous one)."""
    return write_artifact(path, Artifact(kind=CHECKPOINT_KIND, meta=meta, arrays=arrays))


def load_checkpoint(
    path: str | os.PathLike, expect: dict[str, Any] | None = None
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read and verify a checkpoint; refuse one made for a different run.

    ``expect`` maps identity keys (method, ipc, seed, architecture, data fingerprint...) to the
    values of the run that wants to resume; any mismatch is a ``KitError`` naming the key,
    because continuing someone else's optimisation would silently produce garbage.
    """
    artifact = read_artifact(path, kind=CHECKPOINT_KIND)
    identity = artifact.meta.get("identity", {})
    for key, value in (expect or {}).items():
        if identity.get(key) != value:
            raise KitError(
                f"{path}: checkpoint was made with {key}={identity.get(key)!r}, this run has {key}={value!r}; "
                "use the same settings or drop --resume"
            )
    _check_progress(path, artifact.meta)
    return artifact.arrays, artifact.meta


def _check_progress(path: str | os.PathLike, meta: dict[str, Any]) -> None:
    """The loop appends one history entry per step, so ``step`` must equal the history's length and
    the entries count 1..step: a re-signed checkpoint claiming step=1e9 is refused, not reported."""
    step, elapsed, history = meta.get("step"), meta.get("elapsed"), meta.get("history")
    if not (
        isinstance(step, int)
        and not isinstance(step, bool)
        and step >= 0
        and isinstance(history, list)
        and isinstance(elapsed, (int, float))
        and math.isfinite(elapsed)
        and elapsed >= 0
    ):
        raise KitError(f"{path}: checkpoint has no valid step / elapsed / history (edited or corrupted)")
    counted = [entry.get("step") if isinstance(entry, dict) else None for entry in history]
    if step != len(history) or counted != list(range(1, step + 1)):
        raise KitError(
            f"{path}: checkpoint claims step {step} but its history holds {len(history)} steps (edited or corrupted)"
        )
