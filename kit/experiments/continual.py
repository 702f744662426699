"""Class-incremental learning with a rehearsal memory (DDFAD §5.1): distillation vs herding vs random.

The question: when a keyword model on a device learns new words a couple at a time and may keep
only ``memory`` feature maps per old word, which memory loses the least? The classes are split
into tasks of ``task_size`` classes (a seeded order); for each task t the model

1. continues training from its weights after task t-1 on task t's real training clips plus the
   rehearsal memory of every old class;
2. is evaluated on the test split restricted to the classes seen so far (predicting among those
   classes only);
3. adds ``memory`` samples per class of task t to the memory, filled by the strategy:
   ``distill`` = ``distill.make_distiller(method, ipc=memory)`` fitted on task t's real clips
   (synthetic maps), ``herding`` = EEIL/iCaRL herding in the *current model's* embedding (L2
   normalised, as in iCaRL), ``random`` = real clips drawn uniformly.

Two references run beside them: ``joint`` (upper bound: all real training clips of every class
seen so far, no memory limit) and ``finetune`` (lower bound: the new task's clips only, no memory).
The figure of merit is the average incremental accuracy (mean of the accuracy after each task,
the first task included, as in iCaRL).

Why one K-way head with masking instead of a growing head: the dataset's class list is known up
front, so the model is built once with K outputs and the logits of classes not seen yet are set
to -inf in training (softmax gives them probability 0, so their rows get no gradient from the
loss) and left out of the argmax in evaluation. This is the same function as a head that grows
by ``task_size`` rows per task, but the network's shape never changes, so every checkpoint is an
ordinary ``model`` artifact that ``kit eval``/``kit export`` can open.

Why class-balanced batches (``balanced``, on by default): a task brings ~270 clips per new FSDD
digit but the memory only 20 per old one; plain uniform batches then teach the head that old
classes are rare, the bias EEIL corrects with its balanced fine-tuning stage. Drawing each clip
with probability 1 / (size of its class) gives every seen class the same share of every batch.

Resumable: one cell per (strategy, seed, task) in the run folder; after each task the model and
the memory are checkpointed as artifacts (``model`` and ``coreset`` kinds, float32, no pickles)
under ``checkpoints/``; only the latest task's pair is kept per (strategy, seed), since resuming
needs nothing older. Resuming is exact: an interrupted and resumed stream reproduces the
uninterrupted accuracies bit for bit (tested).

Measured (FSDD official split, 5 tasks of 2 digits, memory 20/class, ConvNet width 64, 4 000
clips per task, DM 200 steps per task, one seed; ``python -m bench.continual --seeds 0 --width 64
--max-samples 4000``, 9 min on the 2 shared cores at load 10-13): average incremental accuracy
herding 96.6 %, random 96.0 %, distill (DM) 95.7 %, joint 97.2 %, fine-tuning without memory
44.6 % (19 % after the last task, 0 % on the old digits: they are forgotten). With 20 per class
every memory keeps the old digits at 95.6-100 %; what each fill loses is on the newest digits
(72-77 % after task 5, joint 65 %), so the three fills differ by under a point, within one seed's
noise; DDFAD's ranking (distillation first) is not reproduced at this setting.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from deploy.runtime.coreset import Coreset
from deploy.runtime.errors import KitError
from kit.pipeline import load_training_set

from .rundir import RunDir

FILLS = ("distill", "herding", "random")
BOUNDS = ("joint", "finetune")
EXPERIMENT = "continual"


@dataclass(frozen=True)
class ContinualSettings:
    """Everything that determines a continual-learning run (recorded in its config.json)."""

    fills: tuple[str, ...] = FILLS
    bounds: bool = True  # also run the joint (upper) and finetune (lower) references
    memory: int = 20  # samples per old class kept in the rehearsal memory
    task_size: int = 2
    order_seed: int = 0  # class order of the task split
    seeds: tuple[int, ...] = (0,)  # repetitions: model init, batch order, memory selection
    distill_method: str = "dm"
    distill_params: dict[str, Any] = field(default_factory=dict)
    distill_steps: int | None = 200
    arch: str = "convnet"
    width: int = 128
    max_samples: int = 8000  # clips seen per task (the training budget of one task)
    batch_size: int = 64
    lr: float = 1e-3
    augment: bool = True
    balanced: bool = True
    limit_per_class: int | None = None  # real clips per class and split (quick runs)
    threads: int = 1

    def __post_init__(self) -> None:
        unknown = [f for f in self.fills if f not in FILLS]
        if unknown:
            raise KitError(f"--fill: unknown strategy '{unknown[0]}' (choose from {', '.join(FILLS)})")
        if len(set(self.fills)) != len(self.fills):
            raise KitError("--fill: a strategy is listed twice")
        if not self.fills and not self.bounds:
            raise KitError("--fill: give at least one strategy (or keep the bounds)")
        if self.memory < 1:
            raise KitError(f"--memory must be >= 1, got {self.memory}")
        if self.task_size < 2:
            raise KitError(f"--task-size must be >= 2, got {self.task_size}")
        if not self.seeds:
            raise KitError("--seeds: give at least one seed")
        for name in ("width", "max_samples", "batch_size", "threads"):
            if int(getattr(self, name)) < 1:
                raise KitError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.distill_steps is not None and self.distill_steps < 1:
            raise KitError(f"--distill-steps must be >= 1, got {self.distill_steps}")
        if self.limit_per_class is not None and self.limit_per_class < self.memory:
            raise KitError(f"--limit-per-class {self.limit_per_class} is below --memory {self.memory}")

    @property
    def strategies(self) -> tuple[str, ...]:
        return tuple(self.fills) + (BOUNDS if self.bounds else ())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_(self, **changes: Any) -> "ContinualSettings":
        return replace(self, **changes)


#: The ``--quick`` setting: every stage on a small slice of the real data, well under a minute.
QUICK = {"limit_per_class": 30, "memory": 10, "width": 16, "max_samples": 1600, "batch_size": 32, "distill_steps": 10}


def quick_settings(**overrides: Any) -> ContinualSettings:
    known = {f.name for f in fields(ContinualSettings)}
    return ContinualSettings(**{**QUICK, **{k: v for k, v in overrides.items() if k in known}})


# the task split ----------------------------------------------------------------------------------------
def split_tasks(n_classes: int, task_size: int, seed: int) -> list[list[int]]:
    """Class indices in a seeded random order, cut into tasks of ``task_size`` classes.

    A trailing task of a single class is merged into the one before it (a one-class task has
    nothing to discriminate, and a distiller needs two classes).
    """
    if task_size < 2:
        raise KitError(f"--task-size must be >= 2, got {task_size}")
    if n_classes < task_size:
        raise KitError(f"--task-size {task_size} exceeds the dataset's {n_classes} classes")
    order = np.random.default_rng(seed).permutation(n_classes).tolist()
    tasks = [order[i : i + task_size] for i in range(0, n_classes, task_size)]
    if len(tasks) > 1 and len(tasks[-1]) == 1:
        tasks[-2].extend(tasks.pop())
    return tasks


# the rehearsal memory ----------------------------------------------------------------------------------
@dataclass
class RehearsalMemory:
    """Feature maps kept from old tasks, labelled with global class indices.

    ``source`` is the training-split row each entry was copied from, or -1 for a synthetic map,
    so a test can check that no memory entry ever comes from the test split.
    """

    x: np.ndarray
    y: np.ndarray
    source: np.ndarray

    @classmethod
    def empty(cls, shape: tuple[int, ...]) -> "RehearsalMemory":
        return cls(np.zeros((0, *shape), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64))

    def extended(self, x: np.ndarray, y: np.ndarray, source: np.ndarray) -> "RehearsalMemory":
        return RehearsalMemory(
            np.concatenate([self.x, x.astype(np.float32)]),
            np.concatenate([self.y, y.astype(np.int64)]),
            np.concatenate([self.source, source.astype(np.int64)]),
        )

    def merged(self, other: "RehearsalMemory") -> "RehearsalMemory":
        return self.extended(other.x, other.y, other.source)

    def per_class(self, n_classes: int) -> list[int]:
        return np.bincount(self.y, minlength=n_classes).tolist()

    def __len__(self) -> int:
        return len(self.y)


def distiller_options(
    method: str, params: dict[str, Any], steps: int | None, threads: int, option: str = "--distill-method"
) -> dict[str, Any]:
    """The distiller's parameters: the user's, plus (where the method takes them) a fixed step count
    with no time budget, so the result does not depend on the machine's load, one thread and no bar.

    Without a step count the method keeps its own defaults (its measured steps and 280-s budget).
    Shared by the continual-learning and feature-ablation experiments.
    """
    from distill.registry import METHODS  # lazy: pulls in torch

    cls = METHODS.get(method)
    if cls is None:
        raise KitError(f"{option}: unknown method '{method}' (choose from {', '.join(METHODS)})")
    valid = set(cls.param_names())
    unknown = sorted(set(params) - (valid - {"ipc", "seed"}))
    if unknown:
        raise KitError(f"{option} {method} has no parameter {', '.join(unknown)}")
    out = dict(params)
    defaults: dict[str, Any] = {"threads": threads, "progress": False, "device": "cpu"}
    if steps is not None:
        defaults.update(steps=steps, time_budget_s=None)
    for key, value in defaults.items():
        if key in valid:
            out.setdefault(key, value)
    return out


def save_png(fig: Any, path: Path) -> Path:
    """Render a matplotlib figure to PNG and write it atomically (a report may be reading the folder)."""
    from kit.report.plots import save_figure  # lazy: pulls in matplotlib

    return save_figure(fig, path, dpi=120)


def fill_memory(
    strategy: str,
    x_task: np.ndarray,
    y_task: np.ndarray,
    rows: np.ndarray,
    task: list[int],
    per_class: int,
    seed: int,
    settings: ContinualSettings,
    model: Any = None,
) -> RehearsalMemory:
    """``per_class`` memory entries for each class of ``task`` from its training clips.

    ``y_task`` holds global labels; ``rows`` the training-split index of each clip.
    """
    from distill.registry import make_distiller  # lazy: pulls in torch

    shape = x_task.shape[1:]
    if strategy == "distill":
        local = np.searchsorted(np.asarray(sorted(task)), y_task)
        order = np.asarray(sorted(task))
        options = distiller_options(
            settings.distill_method, settings.distill_params, settings.distill_steps, settings.threads
        )
        distiller = make_distiller(settings.distill_method, per_class, seed=seed, **options)
        distiller.fit(x_task, local, n_classes=len(task))
        labels = np.asarray(distiller.labels_)
        labels = labels.argmax(axis=1) if labels.ndim == 2 else labels  # soft labels -> their class
        source = np.full(len(labels), -1, np.int64)
        if hasattr(distiller, "indices_"):  # a selector given as --distill-method: real rows
            source = rows[np.asarray(distiller.indices_)]
        return RehearsalMemory.empty(shape).extended(np.asarray(distiller.features_), order[labels], source)
    picked: list[np.ndarray] = []
    if strategy == "herding":
        from distill.selection import herding  # lazy: pulls in torch

        emb = _embed(model, x_task, settings.threads)
        emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        for c in task:
            members = np.flatnonzero(y_task == c)
            picked.append(members[herding(emb[members], per_class)])
    elif strategy == "random":
        rng = np.random.default_rng(seed)
        for c in task:
            members = np.flatnonzero(y_task == c)
            picked.append(np.sort(rng.choice(members, size=per_class, replace=False)))
    else:
        raise KitError(f"unknown memory strategy '{strategy}' (choose from {', '.join(FILLS)})")
    index = np.concatenate(picked)
    return RehearsalMemory.empty(shape).extended(x_task[index], y_task[index], rows[index])


def _embed(model: Any, x: np.ndarray, threads: int, batch_size: int = 512) -> np.ndarray:
    import torch  # lazy: torch only when used

    from kit.training import torch_threads  # lazy: pulls in torch

    device = next(model.parameters()).device
    model.eval()
    out = []
    with torch_threads(threads), torch.no_grad():
        for i in range(0, len(x), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(x[i : i + batch_size])).to(device)
            out.append(model.embed(batch).double().cpu().numpy())
    return np.concatenate(out)


# training and evaluation -------------------------------------------------------------------------------
def train_config(settings: ContinualSettings, seed: int) -> Any:
    from kit.training import TrainConfig  # lazy: pulls in torch

    return TrainConfig(
        arch=settings.arch,
        arch_kwargs={"width": settings.width},
        max_samples=settings.max_samples,
        batch_size=settings.batch_size,
        lr=settings.lr,
        augment=settings.augment,
        seed=seed,
        threads=settings.threads,
        device="cpu",
    )


def new_model(fs: Any, config: Any) -> Any:
    import torch  # lazy: torch only when used

    from kit.models import build_model  # lazy: pulls in torch

    torch.manual_seed(config.seed)
    return build_model(config.arch, fs.x_train.shape[1:], len(fs.classes), **config.arch_kwargs)


def train_task(
    model: Any, x: np.ndarray, y: np.ndarray, seen: list[int], config: Any, balanced: bool = True
) -> dict[str, Any]:
    """Continue training ``model`` in place on ``(x, y)``, logits of unseen classes masked to -inf.

    Fresh optimiser per task; the step count and learning-rate decay follow ``config`` exactly as
    ``kit.training.train_model`` does for a model trained from scratch.
    """
    import torch  # lazy: torch only when used

    from kit.training import (  # lazy: pulls in torch
        augment_batch,
        classification_loss,
        draw_weights,
        make_optimizer,
        set_learning_rate,
        torch_threads,
    )

    n = len(x)
    batch = config.effective_batch(n)
    steps = config.total_steps(n)
    rng = np.random.default_rng(config.seed)
    aug_gen = torch.Generator().manual_seed(config.seed)
    weights = draw_weights(y, model.n_classes, "sampling") if balanced else np.ones(n)
    weights /= weights.sum()
    mask = torch.full((model.n_classes,), float("-inf"))
    mask[torch.as_tensor(seen)] = 0.0
    features, targets = (
        torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
        torch.from_numpy(y.astype(np.int64)),
    )
    started = time.perf_counter()
    loss_value = float("nan")
    with torch_threads(config.threads):
        optimizer = make_optimizer(model, config)
        model.train()
        for step in range(steps):
            set_learning_rate(optimizer, config.learning_rate(step, steps))
            index = torch.from_numpy(rng.choice(n, size=batch, replace=True, p=weights))
            xb = augment_batch(features[index], aug_gen) if config.augment else features[index]
            loss = classification_loss(model(xb) + mask, targets[index], config.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_value = float(loss.detach())
    model.eval()
    return {
        "steps": steps,
        "batch_size": batch,
        "n_train": n,
        "seconds": round(time.perf_counter() - started, 2),
        "final_loss": loss_value,
    }


def evaluate_seen(
    model: Any, x_test: np.ndarray, y_test: np.ndarray, seen: list[int], old: list[int], threads: int = 1
) -> dict[str, Any]:
    """Accuracy on the test clips of the ``seen`` classes, the argmax taken over those classes only;
    also split into the ``old`` classes (earlier tasks) and the new ones."""
    from kit.training import predict_logits, torch_threads  # lazy: pulls in torch

    keep = np.isin(y_test, seen)
    if not keep.any():
        raise KitError("the test split has no clip of the classes seen so far")
    with torch_threads(threads):
        logits = predict_logits(model, x_test[keep])
    seen_sorted = np.asarray(sorted(seen))
    predictions = seen_sorted[logits[:, seen_sorted].argmax(axis=1)]
    labels = y_test[keep]
    correct = predictions == labels
    is_old = np.isin(labels, old)
    return {
        "accuracy": float(correct.mean()),
        "old_accuracy": float(correct[is_old].mean()) if is_old.any() else None,
        "new_accuracy": float(correct[~is_old].mean()) if (~is_old).any() else None,
        "n_test": int(keep.sum()),
        "predicted_classes": sorted({int(p) for p in predictions}),
    }


# one stream of tasks -----------------------------------------------------------------------------------
def cell_key(strategy: str, seed: int, task: int) -> str:
    return f"{strategy}/seed{seed}/task{task + 1}"


def _checkpoint_paths(run: RunDir, strategy: str, seed: int, task: int) -> tuple[Path, Path]:
    folder = run.path / "checkpoints"
    stem = f"{strategy}_seed{seed}_task{task + 1}"
    return folder / f"{stem}.model.kit", folder / f"{stem}.memory.kit"


def _save_checkpoint(
    run: RunDir,
    fs: Any,
    strategy: str,
    seed: int,
    task: int,
    model: Any,
    memory: RehearsalMemory,
    config: Any,
    seen: list[int],
    accuracy: float,
) -> None:
    from kit.training import save_trained  # lazy: pulls in torch

    model_path, memory_path = _checkpoint_paths(run, strategy, seed, task)
    model_path.parent.mkdir(parents=True, exist_ok=True)
    save_trained(
        model_path,
        model,
        fs,
        config,
        metrics={"seen_accuracy": accuracy},
        continual={
            "strategy": strategy,
            "stream_seed": seed,
            "task": task + 1,
            "seen_classes": [fs.classes[c] for c in seen],
        },
    )
    Coreset(
        features=memory.x,
        labels=memory.y,
        classes=list(fs.classes),
        feature_config=fs.config,
        normalizer=fs.normalizer,
        method=f"rehearsal-{strategy}",
        seed=seed,
        source=fs.source,
        extra={"train_rows": memory.source.tolist(), "task": task + 1},
    ).save(memory_path, dtype="float32")
    if task > 0:  # resuming needs only the latest pair
        for old in _checkpoint_paths(run, strategy, seed, task - 1):
            old.unlink(missing_ok=True)


def _load_checkpoint(run: RunDir, strategy: str, seed: int, task: int) -> tuple[Any, RehearsalMemory] | None:
    from kit.models import load_model  # lazy: pulls in torch

    model_path, memory_path = _checkpoint_paths(run, strategy, seed, task)
    if not (model_path.exists() and memory_path.exists()):
        return None
    model, _ = load_model(model_path)
    memory = Coreset.load(memory_path)
    rows = np.asarray(memory.extra.get("train_rows", [-1] * len(memory.labels)), np.int64)
    return model, RehearsalMemory(memory.features, memory.hard_labels, rows)


def run_stream(
    run: RunDir,
    fs: Any,
    tasks: list[list[int]],
    strategy: str,
    seed: int,
    settings: ContinualSettings,
    on_task: Any = None,
) -> list[dict[str, Any]]:
    """Train through every task for one (strategy, seed), skipping tasks whose cell and checkpoint exist."""
    done = 0
    while done < len(tasks) and run.has(cell_key(strategy, seed, done)):
        done += 1
    state = None
    while done > 0:  # the latest finished task whose checkpoint is still there
        state = _load_checkpoint(run, strategy, seed, done - 1)
        if state is not None:
            break
        done -= 1
    base = train_config(settings, seed)
    if state is None:
        model, memory = new_model(fs, base), RehearsalMemory.empty(fs.x_train.shape[1:])
    else:
        model, memory = state
    for _ in range(done):
        if on_task is not None:
            on_task()
    seen: list[int] = [c for task in tasks[:done] for c in task]
    for t in range(done, len(tasks)):
        task, old = tasks[t], list(seen)
        seen = old + list(task)
        config = base.with_(seed=seed * 1000 + t)
        in_task = np.isin(fs.y_train, task)
        if strategy == "joint":
            rows = np.flatnonzero(np.isin(fs.y_train, seen))
            x, y = fs.x_train[rows], fs.y_train[rows]
        elif strategy == "finetune":
            x, y = fs.x_train[in_task], fs.y_train[in_task]
        else:
            x = np.concatenate([fs.x_train[in_task], memory.x])
            y = np.concatenate([fs.y_train[in_task], memory.y])
        stats = train_task(model, x, y, seen, config, settings.balanced)
        result = evaluate_seen(model, fs.x_test, fs.y_test, seen, old, settings.threads)
        fill_s = 0.0
        if strategy in FILLS:
            started = time.perf_counter()
            rows = np.flatnonzero(in_task)
            memory = memory.merged(
                fill_memory(
                    strategy,
                    fs.x_train[rows],
                    fs.y_train[rows],
                    rows,
                    task,
                    settings.memory,
                    seed * 1000 + t,
                    settings,
                    model,
                )
            )
            fill_s = time.perf_counter() - started
        _save_checkpoint(run, fs, strategy, seed, t, model, memory, config, seen, result["accuracy"])
        run.record(
            cell_key(strategy, seed, t),
            {
                **result,
                "strategy": strategy,
                "seed": seed,
                "task": t + 1,
                "task_classes": list(task),
                "seen_classes": seen,
                "train": stats,
                "memory_size": len(memory),
                "memory_per_class": memory.per_class(len(fs.classes)),
                "memory_train_rows": memory.source.tolist(),
                "fill_seconds": round(fill_s, 2),
            },
        )
        if on_task is not None:
            on_task()
    return [run.get(cell_key(strategy, seed, t)) for t in range(len(tasks))]


# the whole experiment ----------------------------------------------------------------------------------
def average_incremental(accuracies: list[float]) -> float:
    """Mean of the accuracy after each task (iCaRL's figure of merit, first task included)."""
    return float(np.mean(accuracies))


def summarise(cells: dict[str, list[list[dict[str, Any]]]]) -> dict[str, dict[str, Any]]:
    """Per strategy: accuracy after each task and the average incremental accuracy, mean/std over seeds."""
    out = {}
    for strategy, per_seed in cells.items():
        curves = np.array([[c["accuracy"] for c in stream] for stream in per_seed])
        averages = np.array([average_incremental(row.tolist()) for row in curves])
        last_old = [stream[-1]["old_accuracy"] for stream in per_seed if stream[-1]["old_accuracy"] is not None]
        out[strategy] = {
            "after_task_mean": curves.mean(axis=0).tolist(),
            "after_task_std": curves.std(axis=0).tolist(),
            "average_mean": float(averages.mean()),
            "average_std": float(averages.std()),
            "final_old_accuracy_mean": float(np.mean(last_old)) if last_old else None,
            "n_seen": [len(c["seen_classes"]) for c in per_seed[0]],
        }
    return out


def _pct(mean: float, std: float, n_seeds: int) -> str:
    return f"{100 * mean:.1f} ± {100 * std:.1f}" if n_seeds > 1 else f"{100 * mean:.1f}"


def plot_curves(summary: dict[str, dict[str, Any]], path: Path, title: str) -> Path:
    """Accuracy on the classes seen so far vs their number, one line per strategy (bounds dashed)."""
    import matplotlib  # lazy: matplotlib only when used

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: matplotlib only when used

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    styles = {"joint": dict(color="0.3", linestyle="--"), "finetune": dict(color="0.55", linestyle=":")}
    for strategy, row in summary.items():
        label = {"joint": "joint (upper bound)", "finetune": "fine-tune, no memory (lower bound)"}.get(
            strategy, strategy
        )
        mean, std = np.array(row["after_task_mean"]) * 100, np.array(row["after_task_std"]) * 100
        ax.errorbar(
            row["n_seen"],
            mean,
            yerr=std if std.any() else None,
            marker="o",
            capsize=3,
            label=f"{label}: avg {100 * row['average_mean']:.1f} %",
            **styles.get(strategy, {}),
        )
    ax.set_xlabel("classes seen")
    ax.set_ylabel("test accuracy on classes seen (%)")
    ax.set_ylim(0, 102)
    ax.set_xticks(next(iter(summary.values()))["n_seen"])
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return save_png(fig, path)


def run_continual(
    dataset: str,
    out: str | os.PathLike,
    settings: ContinualSettings,
    *,
    data_dir: str | os.PathLike | None = None,
    split: str = "official",
    task: str = "kws10",
    test_fold: int = 5,
    overwrite: bool = False,
    progress: bool = True,
) -> RunDir:
    """Load the data, run every (strategy, seed) stream (resumably) and write table, figure and headline."""

    # an unknown method or parameter fails before any data is loaded
    distiller_options(settings.distill_method, settings.distill_params, settings.distill_steps, settings.threads)
    fs, loader = load_training_set(
        dataset,
        data_dir,
        split=split,
        task=task,
        test_fold=test_fold,
        limit_per_class=settings.limit_per_class,
        progress=progress,
    )
    smallest = int(np.bincount(fs.y_train, minlength=len(fs.classes)).min())
    if settings.memory > smallest:
        raise KitError(f"--memory {settings.memory} exceeds the {smallest} training clips of the smallest class")
    tasks = split_tasks(len(fs.classes), settings.task_size, settings.order_seed)
    config = {
        "dataset": dataset,
        "loader": loader,
        "settings": settings.to_dict(),
        "tasks": [[fs.classes[c] for c in t] for t in tasks],
    }
    run = RunDir(out, EXPERIMENT, config, title=f"Continual learning on {dataset}", overwrite=overwrite)
    total = len(settings.strategies) * len(settings.seeds) * len(tasks)
    cells: dict[str, list[list[dict[str, Any]]]] = {}
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
        disable=not progress,
    ) as bar:
        job = bar.add_task("continual learning", total=total)
        for strategy in settings.strategies:
            for seed in settings.seeds:
                bar.update(job, description=f"{strategy} seed {seed}")
                stream = run_stream(run, fs, tasks, strategy, seed, settings, on_task=lambda: bar.advance(job))
                cells.setdefault(strategy, []).append(stream)
    summary = summarise(cells)
    n_seeds = len(settings.seeds)
    n_seen = next(iter(summary.values()))["n_seen"]
    columns = ["strategy"] + [f"after task {t + 1} ({n} classes)" for t, n in enumerate(n_seen)] + ["average"]
    rows = [
        [s]
        + [_pct(m, sd, n_seeds) for m, sd in zip(row["after_task_mean"], row["after_task_std"])]
        + [_pct(row["average_mean"], row["average_std"], n_seeds)]
        for s, row in summary.items()
    ]
    run.add_table(
        f"Accuracy (%) on the classes seen so far, memory {settings.memory}/class, {len(settings.seeds)} seed(s)",
        columns,
        rows,
    )
    title = (
        f"{dataset}: tasks of {settings.task_size} classes, memory {settings.memory}/class "
        f"(distill = {settings.distill_method})"
    )
    plot_curves(summary, run.path / "continual.png", title)
    run.add_figure(
        "continual.png",
        "Accuracy on the classes seen so far after each task; one line per memory "
        "strategy, joint training and memory-less fine-tuning as bounds.",
    )
    run.headline = {f"average_{s}": round(100 * row["average_mean"], 2) for s, row in summary.items()}
    ranked = sorted(((row["average_mean"], s) for s, row in summary.items() if s in FILLS), reverse=True)
    if ranked:
        run.summary = (
            f"Average incremental accuracy over {len(tasks)} tasks: "
            + ", ".join(f"{s} {100 * m:.1f} %" for m, s in ranked)
            + (
                f"; joint {100 * summary['joint']['average_mean']:.1f} %, fine-tune without memory "
                f"{100 * summary['finetune']['average_mean']:.1f} %."
                if settings.bounds
                else "."
            )
        )
    run.save()
    return run
