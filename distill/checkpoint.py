"""Checkpoints of iterative distillers: the kit's artifact container, kind ``distill-checkpoint``.

Why the artifact container and not ``torch.save``: a checkpoint is a file a user may be handed
(``--resume`` on another machine), and ``torch.load`` of an untrusted file runs pickles. The
container holds plain ``.npy`` arrays read with ``allow_pickle=False`` plus JSON metadata, every
member checksummed, and is written atomically, so a run killed mid-save leaves the previous
checkpoint intact. Torch tensors and generator states round-trip through numpy here.
"""
from __future__ import annotations

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


def adam_state_arrays(opt: torch.optim.Optimizer, names: list[str]) -> dict[str, np.ndarray]:
    """Adam's per-parameter moments and step counts, keyed ``adam/<name>/<field>``.

    ``names`` names the optimiser's parameters in ``param_groups`` order.
    """
    params = [p for group in opt.param_groups for p in group["params"]]
    if len(params) != len(names):
        raise ValueError("one name per optimised parameter")
    out: dict[str, np.ndarray] = {}
    for name, p in zip(names, params):
        state = opt.state.get(p)
        if not state:
            continue
        for key, value in state.items():
            out[f"adam/{name}/{key}"] = to_numpy(value) if torch.is_tensor(value) else np.asarray(value)
    return out


def restore_adam_state(opt: torch.optim.Optimizer, names: list[str], arrays: dict[str, np.ndarray]) -> None:
    """Inverse of ``adam_state_arrays``: put moments and step counts back on the parameters."""
    params = [p for group in opt.param_groups for p in group["params"]]
    for name, p in zip(names, params):
        prefix = f"adam/{name}/"
        state = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
        if not state:
            continue
        restored: dict[str, Any] = {}
        for key, value in state.items():
            tensor = torch.from_numpy(np.array(value))
            # the container stores 0-d arrays as 1-d (np.ascontiguousarray), so restore shapes;
            # moments live beside the parameter, Adam keeps its step counter on the CPU
            if key == "step":
                restored[key] = tensor.reshape(())
            else:
                restored[key] = tensor.reshape(p.shape).to(device=p.device, dtype=p.dtype)
        opt.state[p] = restored


def save_checkpoint(path: str | os.PathLike, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Path:
    """Write a checkpoint atomically (a crash mid-write keeps the previous one)."""
    return write_artifact(path, Artifact(kind=CHECKPOINT_KIND, meta=meta, arrays=arrays))


def load_checkpoint(path: str | os.PathLike, expect: dict[str, Any] | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
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
    return artifact.arrays, artifact.meta
