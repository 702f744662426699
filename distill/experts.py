"""The expert buffer of MTT: parameter trajectories of networks trained on the real data.

Why a buffer, and why on disk: matching training trajectories (Cazenavette et al., 2022) needs
"expert" trajectories, i.e. the parameters of E networks trained on the real training set,
snapshotted after every epoch. Training them is the expensive part of MTT and it does not depend
on the coreset (ipc, distillation seed, step size...), so the buffer is built once and reused by
every later ``kit distill --method mtt`` on the same data: a 1/class and a 10/class run share it.

Layout: a folder of kit artifacts (``deploy/runtime/artifact.py``, kind ``mtt-experts``, plain
``.npy`` arrays, every member checksummed, no pickles), one per expert:

* ``expert_000.kit`` a finished expert: ``trajectory`` (epochs + 1, P) float32 or float16 (the
  initial weights, then the weights after each epoch), the flattened parameters in
  ``model.parameters()`` order, named and shaped in the metadata;
* ``expert_003.partial.kit`` an expert being trained: its trajectory so far plus what resuming
  needs exactly (float32 weights, optimiser state, the two generator states). It is rewritten
  atomically after every epoch and replaced by ``expert_003.kit`` once the expert is finished, so
  a build killed at any point continues from the last finished epoch and produces the very same
  trajectories as an uninterrupted build.

Identity: every file's metadata carries the buffer *key* (architecture, expert training
settings, storage dtype, feature configuration when known, input shape, classes and a SHA-256
fingerprint of the training features and labels). A buffer whose key differs from the run's is
refused with a one-line ``KitError`` naming the first mismatching field; the number of experts is
not part of the key (a bigger request trains the missing ones, a smaller one uses the first E).

Default location: ``<kit cache>/mtt-experts/<hash of the key>`` (``kit.data.paths.cache_dir``,
i.e. ``$KIT_CACHE_DIR`` or ``~/.cache/audio-distill-kit/features``), not beside the output
coreset: the experts depend on the data and settings only, so keying the cache by content lets
every coreset of that data share one buffer. ``--param buffer=PATH`` puts it elsewhere.

Training follows MTT's buffer script: plain SGD (lr 0.01, no momentum, no weight decay, which is
also what the student's unrolled steps do), the kit's ConvNet with instance norm, and the same
feature-map augmentation the evaluation uses (``kit.training.augment.augment_batch``; MTT uses
DSA/ZCA-style augmentation for its experts). Expert ``e`` is seeded with ``e`` alone. Under
torch.distributed each rank trains the experts ``e % world == rank`` (all on the full training
set, every rank has it), so a build is shared without communication and gives the same files.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from deploy.runtime.artifact import Artifact, read_artifact, read_manifest, write_artifact
from deploy.runtime.errors import KitError
from kit.data.paths import cache_dir
from kit.models import build_model
from kit.training.augment import augment_batch

from .checkpoint import generator_state, restore_generator
from .distributed import ProcessGroup
from .iterative import data_fingerprint, optimizer_state, restore_optimizer

EXPERTS_KIND = "mtt-experts"
#: bump when the meaning of a stored trajectory changes (old buffers are then refused)
BUFFER_FORMAT = 1
STORAGE_DTYPES = ("float32", "float16")
_EXPERT_FILE = re.compile(r"^expert_(\d+)(\.partial)?\.kit$")


@dataclass(frozen=True)
class ExpertConfig:
    """How each expert is built and trained (all of it is part of the buffer key)."""

    arch: str = "convnet"
    width: int = 32
    depth: int = 3
    norm: str = "instance"
    epochs: int = 12
    lr: float = 0.01
    batch_size: int = 64
    momentum: float = 0.0
    weight_decay: float = 0.0
    augment: bool = True
    dtype: str = "float32"
    #: further constructor arguments of ``arch`` as sorted (name, value) pairs (hashable, frozen)
    extra_kwargs: tuple[tuple[str, Any], ...] = ()

    def arch_kwargs(self) -> dict[str, Any]:
        """The expert's constructor arguments. ``width``/``depth`` are the ConvNet's; any other
        architecture gets ``norm`` plus ``extra_kwargs`` (so the default ConvNet key, and with it
        the default buffer folder, is exactly what it was before other architectures existed)."""
        base = {"width": int(self.width), "depth": int(self.depth)} if self.arch == "convnet" else {}
        return {**base, "norm": str(self.norm), **dict(self.extra_kwargs)}

    def check(self) -> None:
        """One-line errors for settings no expert could be trained with."""
        for name in ("width", "depth", "epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise KitError(f"mtt: expert_{name} must be >= 1, got {getattr(self, name)}")
        if float(self.lr) <= 0:
            raise KitError(f"mtt: expert_lr must be positive, got {self.lr}")
        if not 0.0 <= float(self.momentum) < 1.0:
            raise KitError(f"mtt: expert_momentum must be in [0, 1), got {self.momentum}")
        if float(self.weight_decay) < 0:
            raise KitError(f"mtt: expert_weight_decay must be >= 0, got {self.weight_decay}")
        if self.dtype not in STORAGE_DTYPES:
            raise KitError(f"mtt: buffer_dtype must be one of {', '.join(STORAGE_DTYPES)}, got '{self.dtype}'")
        try:
            build_model(self.arch, (1, 2, 2), 2, **self.arch_kwargs())
        except KitError as exc:
            raise KitError(f"mtt: {exc}") from None

    def architecture(self) -> dict[str, Any]:
        return {"arch": self.arch, **self.arch_kwargs()}

    def training(self) -> dict[str, Any]:
        return {
            "optimizer": "sgd",
            "epochs": int(self.epochs),
            "lr": float(self.lr),
            "batch_size": int(self.batch_size),
            "momentum": float(self.momentum),
            "weight_decay": float(self.weight_decay),
            "augment": bool(self.augment),
        }


def _feature_config_dict(feature_config: Any) -> dict[str, Any] | str | None:
    """A FeatureConfig, its dict, or a fingerprint string -> something JSON-comparable."""
    if feature_config is None:
        return None
    if hasattr(feature_config, "to_dict"):
        return feature_config.to_dict()
    if isinstance(feature_config, (dict, str)):
        return feature_config
    raise KitError(
        f"mtt: feature_config must be a FeatureConfig, a dict or a string, got {type(feature_config).__name__}"
    )


def buffer_key(
    x: np.ndarray, y: np.ndarray, n_classes: int, config: ExpertConfig, feature_config: Any = None
) -> dict[str, Any]:
    """Everything a stored trajectory depends on, in the order mismatches are reported."""
    return {
        "format": BUFFER_FORMAT,
        "architecture": config.architecture(),
        "training": config.training(),
        "storage": config.dtype,
        "feature_config": _feature_config_dict(feature_config),
        "in_shape": [int(v) for v in x.shape[1:]],
        "n_classes": int(n_classes),
        "data": data_fingerprint(x, y),
    }


def key_hash(key: dict[str, Any]) -> str:
    """Folder name of the default buffer. The feature configuration is left out: the data
    fingerprint already determines it, and a caller that does not know it should still find
    the buffer a caller that did know it built."""
    hashed = {k: v for k, v in key.items() if k != "feature_config"}
    return hashlib.sha256(json.dumps(hashed, sort_keys=True).encode()).hexdigest()[:16]


def default_buffer_dir(key: dict[str, Any]) -> Path:
    return cache_dir() / "mtt-experts" / key_hash(key)


def key_mismatch(stored: dict[str, Any], wanted: dict[str, Any]) -> str | None:
    """The first field (dotted) where two keys differ, as ``field=stored (this run: wanted)``.

    An unknown feature configuration (None) on either side is not a mismatch: the data
    fingerprint, checked last, still catches features computed differently.
    """

    def walk(a: Any, b: Any, prefix: str) -> str | None:
        if isinstance(a, dict) and isinstance(b, dict):
            for k in list(b) + [k for k in a if k not in b]:
                found = walk(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else k)
                if found:
                    return found
            return None
        return None if a == b else f"{prefix}={a!r} (this run: {b!r})"

    for field in wanted:
        a, b = stored.get(field), wanted[field]
        if field == "feature_config" and (a is None or b is None):
            continue
        found = walk(a, b, field)
        if found:
            return found
    return None


# Flattened parameters ---------------------------------------------------------------------------
def param_spec(model: torch.nn.Module) -> list[tuple[str, list[int]]]:
    """(name, shape) of each parameter in ``model.parameters()`` order: how a flat vector splits."""
    return [(name, list(p.shape)) for name, p in model.named_parameters()]


def flatten_params(model: torch.nn.Module) -> torch.Tensor:
    return torch.nn.utils.parameters_to_vector([p.detach() for p in model.parameters()]).clone()


def new_expert_model(config: ExpertConfig, in_shape: tuple[int, ...], n_classes: int, seed: int) -> torch.nn.Module:
    """The expert architecture with weights drawn from ``seed`` (without touching the global RNG)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return build_model(config.arch, in_shape, n_classes, **config.arch_kwargs())


# The buffer -------------------------------------------------------------------------------------
@dataclass
class ExpertBuffer:
    """Loaded trajectories: ``trajectories`` (E, epochs + 1, P) float32 on the requested device."""

    path: Path
    key: dict[str, Any]
    spec: list[tuple[str, list[int]]]
    trajectories: torch.Tensor
    #: epochs trained by this call (0 when the buffer was entirely reused)
    trained_epochs: int = 0
    #: experts this call resumed from a partial file
    resumed_experts: tuple[int, ...] = ()
    build_seconds: float = 0.0
    #: summed training time of the experts, over every build that contributed (from their metadata)
    expert_train_seconds: float = 0.0

    @property
    def n_experts(self) -> int:
        return int(self.trajectories.shape[0])

    @property
    def epochs(self) -> int:
        return int(self.trajectories.shape[1]) - 1

    @property
    def n_params(self) -> int:
        return int(self.trajectories.shape[2])


def expert_path(folder: Path, expert: int, partial: bool = False) -> Path:
    return folder / f"expert_{expert:03d}{'.partial' if partial else ''}.kit"


def check_buffer_folder(folder: Path, key: dict[str, Any]) -> None:
    """Refuse a folder holding experts of another key (or files that are not expert buffers)."""
    if folder.exists() and not folder.is_dir():
        raise KitError(f"{folder}: expert buffer must be a folder, this is a file")
    if not folder.exists():
        return
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not _EXPERT_FILE.match(path.name):
            continue  # temporary files of an interrupted atomic write, or the user's own files
        manifest = read_manifest(path)
        if manifest.get("kind") != EXPERTS_KIND:
            raise KitError(f"{path}: is a '{manifest.get('kind')}' artifact, not an MTT expert buffer")
        stored = manifest.get("meta", {}).get("key", {})
        diff = key_mismatch(stored, key)
        if diff:
            raise KitError(
                f"{folder}: expert buffer was built for {diff}; use another --param buffer=PATH or delete it"
            )


def _storage(array: torch.Tensor, dtype: str) -> np.ndarray:
    return array.detach().cpu().numpy().astype(np.float16 if dtype == "float16" else np.float32)


def train_expert(
    folder: Path,
    expert: int,
    x: torch.Tensor,
    y: torch.Tensor,
    n_classes: int,
    config: ExpertConfig,
    key: dict[str, Any],
    on_epoch: Callable[[int, int], None] | None = None,
    advance: Callable[[], None] | None = None,
) -> tuple[int, bool]:
    """Train expert ``expert`` (resuming its partial file if any) and write ``expert_XXX.kit``.

    Returns (epochs trained by this call, whether it resumed). ``on_epoch(expert, epoch)`` runs
    after each epoch's file is safely on disk (tests interrupt a build there).
    """
    device = x.device
    model = new_expert_model(config, tuple(x.shape[1:]), n_classes, expert).to(device)
    spec = param_spec(model)
    opt = torch.optim.SGD(
        model.parameters(),
        lr=float(config.lr),
        momentum=float(config.momentum),
        weight_decay=float(config.weight_decay),
    )
    gen_order = torch.Generator().manual_seed(int(expert))
    gen_aug = torch.Generator().manual_seed(10_000 + int(expert))
    trajectory = [_storage(flatten_params(model), config.dtype)]
    done, seconds, resumed = 0, 0.0, False

    partial = expert_path(folder, expert, partial=True)
    if partial.exists():
        art = read_artifact(partial, kind=EXPERTS_KIND)
        if art.meta.get("spec") != [[name, shape] for name, shape in spec]:
            raise KitError(f"{partial}: partial expert does not match the expert architecture; delete it")
        trajectory = list(np.asarray(art.arrays["trajectory"]))
        with torch.no_grad():
            torch.nn.utils.vector_to_parameters(
                torch.from_numpy(np.array(art.arrays["weights"])).to(device), model.parameters()
            )
        restore_generator(gen_order, art.arrays["gen_order"])
        restore_generator(gen_aug, art.arrays["gen_aug"])
        optim_arrays = {k: v for k, v in art.arrays.items() if k.startswith("optim/")}
        restore_optimizer(opt, "optim", optim_arrays, art.meta["optimizer"])
        done, seconds, resumed = int(art.meta["epochs_done"]), float(art.meta["train_seconds"]), True

    n, batch = len(x), int(config.batch_size)
    trained = 0
    for epoch in range(done, int(config.epochs)):
        started = time.perf_counter()
        model.train()
        order = torch.randperm(n, generator=gen_order)
        loss_sum = correct = 0.0
        for i in range(0, n, batch):
            idx = order[i : i + batch].to(device)
            xb = x[idx]
            if config.augment:
                xb = augment_batch(xb, gen_aug)
            logits = model(xb)
            loss = F.cross_entropy(logits, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += float(loss.detach()) * len(idx)
            correct += float((logits.argmax(1) == y[idx]).sum())
        seconds += time.perf_counter() - started
        trained += 1
        weights = flatten_params(model)
        trajectory.append(_storage(weights, config.dtype))
        meta = {
            "key": key,
            "expert": int(expert),
            "seed": int(expert),
            "spec": [[name, shape] for name, shape in spec],
            "n_params": int(weights.numel()),
            "train_seconds": round(seconds, 3),
        }
        if epoch + 1 == int(config.epochs):
            meta.update(epochs=int(config.epochs), final_train_loss=loss_sum / n, final_train_acc=correct / n)
            write_artifact(
                expert_path(folder, expert),
                Artifact(kind=EXPERTS_KIND, meta=meta, arrays={"trajectory": np.stack(trajectory)}),
            )
            partial.unlink(missing_ok=True)
        else:
            optim_arrays, optim_meta = optimizer_state(opt, "optim")
            arrays = {
                "trajectory": np.stack(trajectory),
                "weights": weights.cpu().numpy().astype(np.float32),
                "gen_order": generator_state(gen_order),
                "gen_aug": generator_state(gen_aug),
                **optim_arrays,
            }
            meta.update(partial=True, epochs_done=epoch + 1, optimizer=optim_meta)
            write_artifact(partial, Artifact(kind=EXPERTS_KIND, meta=meta, arrays=arrays))
        if advance is not None:
            advance()
        if on_epoch is not None:
            on_epoch(int(expert), epoch + 1)
    return trained, resumed


def load_expert(path: Path, key: dict[str, Any], epochs: int) -> tuple[np.ndarray, dict[str, Any]]:
    art = read_artifact(path, kind=EXPERTS_KIND)
    diff = key_mismatch(art.meta.get("key", {}), key)
    if diff:
        raise KitError(f"{path}: expert buffer was built for {diff}; use another --param buffer=PATH or delete it")
    trajectory = np.asarray(art.arrays["trajectory"])
    if (
        trajectory.ndim != 2
        or trajectory.shape[0] != epochs + 1
        or trajectory.shape[1] != int(art.meta.get("n_params", -1))
    ):
        raise KitError(f"{path}: expert trajectory has shape {trajectory.shape}, expected ({epochs + 1}, n_params)")
    return trajectory, art.meta


def ensure_expert_buffer(
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    config: ExpertConfig,
    n_experts: int,
    *,
    path: str | os.PathLike | None = None,
    feature_config: Any = None,
    device: torch.device | str = "cpu",
    group: ProcessGroup | None = None,
    progress: bool = False,
    on_epoch: Callable[[int, int], None] | None = None,
) -> ExpertBuffer:
    """Load the buffer for this data and these settings, training whatever experts are missing.

    ``path`` None -> the default cache folder for the key. Finished experts are reused as they
    are, a partial expert continues from its last finished epoch, missing ones are trained.
    """
    config.check()
    if int(n_experts) < 1:
        raise KitError(f"mtt: n_experts must be >= 1, got {n_experts}")
    group = group or ProcessGroup()
    key = buffer_key(x, y, n_classes, config, feature_config)
    folder = Path(path).expanduser() if path not in (None, "") else default_buffer_dir(key)
    check_buffer_folder(folder, key)

    started = time.perf_counter()
    mine = [e for e in range(int(n_experts)) if e % group.world == group.rank]
    for e in mine:  # a build killed between writing an expert and deleting its partial file
        if expert_path(folder, e).exists():
            expert_path(folder, e, partial=True).unlink(missing_ok=True)
    todo = [e for e in mine if not expert_path(folder, e).exists()]
    trained, resumed = 0, []
    if todo:
        folder.mkdir(parents=True, exist_ok=True)
        device = torch.device(device)
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device)
        yt = torch.from_numpy(np.asarray(y, dtype=np.int64)).to(device)
        remaining = sum(int(config.epochs) - _partial_epochs(folder, e) for e in todo)
        with _BuildProgress(progress and group.is_main, remaining, folder) as bar:
            for e in todo:
                n_trained, was_resumed = train_expert(folder, e, xt, yt, n_classes, config, key, on_epoch, bar.advance)
                trained += n_trained
                if was_resumed:
                    resumed.append(e)
    group.barrier()
    build_seconds = time.perf_counter() - started

    trajectories, train_seconds, spec = [], 0.0, None
    for e in range(int(n_experts)):
        trajectory, meta = load_expert(expert_path(folder, e), key, int(config.epochs))
        trajectories.append(trajectory.astype(np.float32))
        train_seconds += float(meta.get("train_seconds", 0.0))
        spec = spec or [(name, list(shape)) for name, shape in meta["spec"]]
    stacked = torch.from_numpy(np.stack(trajectories)).to(device)
    return ExpertBuffer(
        path=folder,
        key=key,
        spec=spec or [],
        trajectories=stacked,
        trained_epochs=trained,
        resumed_experts=tuple(resumed),
        build_seconds=build_seconds,
        expert_train_seconds=train_seconds,
    )


def _partial_epochs(folder: Path, expert: int) -> int:
    path = expert_path(folder, expert, partial=True)
    if not path.exists():
        return 0
    return int(read_manifest(path).get("meta", {}).get("epochs_done", 0))


class _BuildProgress:
    """A rich bar over the expert epochs still to train (the slow, one-off part of MTT)."""

    def __init__(self, enabled: bool, total: int, folder: Path) -> None:
        self.enabled, self.total, self.folder = enabled, total, folder
        self._progress = None

    def __enter__(self) -> "_BuildProgress":
        if self.enabled:
            self._progress = Progress(
                TextColumn("mtt experts (epochs)"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
            )
            self._progress.__enter__()
            self._task = self._progress.add_task("experts", total=self.total)
        return self

    def advance(self) -> None:
        if self._progress is not None:
            self._progress.advance(self._task)

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)


def describe(buffer: ExpertBuffer) -> dict[str, Any]:
    """JSON summary of a buffer for a coreset's provenance."""
    return {
        "path": str(buffer.path),
        "hash": key_hash(buffer.key),
        "n_experts": buffer.n_experts,
        "epochs": buffer.epochs,
        "n_params": buffer.n_params,
        "trained_epochs": buffer.trained_epochs,
        "resumed_experts": list(buffer.resumed_experts),
        "build_s": round(buffer.build_seconds, 2),
        "expert_train_s": round(buffer.expert_train_seconds, 2),
        "architecture": buffer.key["architecture"],
        "training": buffer.key["training"],
    }


__all__ = [
    "ExpertBuffer",
    "ExpertConfig",
    "EXPERTS_KIND",
    "buffer_key",
    "default_buffer_dir",
    "describe",
    "ensure_expert_buffer",
    "flatten_params",
    "key_mismatch",
    "new_expert_model",
    "param_spec",
]
