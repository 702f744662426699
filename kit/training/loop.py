"""The training loop: one seeded, reproducible run from feature maps to a trained model.

Why so explicit about randomness: coreset quality is reported as mean +- std over seeds, so each
seed must give the same model every time. Weight init uses ``torch.manual_seed(seed)``, batch
order a numpy ``Generator(seed)`` and augmentation its own ``torch.Generator`` seeded from the
same seed; nothing depends on wall-clock time. (On one machine with the same thread count,
results are bit-identical; across thread counts float reductions may differ slightly.)
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from deploy.runtime.errors import KitError

from ..models import KitModel, build_model
from .augment import augment_batch
from .config import TrainConfig, resolve_device
from .targets import classification_loss, prepare_targets


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Temporarily ``torch.set_num_threads`` (a process-wide setting) and restore it afterwards."""
    if threads is None:
        yield
        return
    if int(threads) < 1:
        raise KitError(f"threads must be >= 1, got {threads}")
    previous = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _progress_bar(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.3f}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
        disable=not enabled,
    )


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser ``config`` names over ``model``'s parameters (SGD with momentum 0.9, Adam or AdamW).

    Public because loops that train differently (continual learning's masked, replayed steps) must
    still build exactly the optimiser ``train_model`` would, or their figures stop being comparable.
    """
    if config.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=0.9, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Give every parameter group of ``optimizer`` the learning rate ``lr`` (``TrainConfig.learning_rate``)."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def _batches(n: int, batch: int, rng: np.random.Generator, weights: np.ndarray | None = None) -> Iterator[np.ndarray]:
    """Endless stream of index batches: a fresh permutation per epoch, the last partial batch kept;
    with per-clip ``weights``, batches drawn with replacement in proportion to them instead."""
    if weights is not None:
        p = weights / weights.sum()
        while True:
            yield rng.choice(n, size=batch, replace=True, p=p)
    while True:
        order = rng.permutation(n)
        for start in range(0, n, batch):
            yield order[start : start + batch]


def draw_weights(
    labels: np.ndarray, n_classes: int, balance: str, sample_weight: np.ndarray | None = None
) -> np.ndarray | None:
    """How often each row is drawn (unnormalised (N,)), or None for plain epochs over a permutation.

    Under ``balance="sampling"`` every class (by ``labels``) gets an equal share of the draws and,
    inside a class, rows share it in proportion to ``sample_weight`` (equally without it); otherwise
    rows are drawn in proportion to ``sample_weight`` when it is given.
    """
    n = len(labels)
    weights = None
    if sample_weight is not None:
        weights = np.asarray(sample_weight, dtype=np.float64)
        if weights.shape != (n,) or not np.all(np.isfinite(weights)) or weights.min() < 0 or weights.sum() <= 0:
            raise KitError(f"sample weights must be {n} finite numbers >= 0, not all 0 (got shape {weights.shape})")
    if balance != "sampling":
        return weights
    per_row = np.ones(n) if weights is None else weights
    mass = np.bincount(labels, weights=per_row, minlength=n_classes)
    return per_row / np.where(mass[labels] > 0, mass[labels], 1.0)


def _word_head(
    model: KitModel, words: np.ndarray | None, n: int, config: TrainConfig, device: torch.device
) -> tuple[torch.nn.Module | None, torch.Tensor | None]:
    """The training-only word head (a linear layer on the embedding) and its targets, or (None, None)."""
    if words is None or config.word_head <= 0:
        return None, None
    labels = np.asarray(words)
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer) or (n and labels.min() < 0):
        raise KitError(f"word labels must be {n} non-negative class indices, got shape {labels.shape}")
    head = torch.nn.Linear(model.embedding_dim, int(labels.max()) + 1).to(device)
    return head, torch.from_numpy(labels.astype(np.int64)).to(device)


def train_model(
    x: np.ndarray | torch.Tensor,
    y: np.ndarray | torch.Tensor,
    n_classes: int,
    config: TrainConfig | None = None,
    progress: bool = True,
    words: np.ndarray | None = None,
    sample_weight: np.ndarray | None = None,
) -> KitModel:
    """Train ``config.arch`` on normalised feature maps ``x`` (N, C, F, T) with labels ``y``
    ((N,) int or (N, K) soft) and return the model in eval mode on the training device.

    ``words`` ((N,) int, finer labels such as the words inside ``_unknown_``) train a linear word
    head on the embedding beside the model's own, its loss weighted ``config.word_head``; the word
    head shapes the backbone and is then dropped (the model returned has only its own head).
    ``model.train_stats`` records steps, clips seen, seconds, clips/s and the final loss.
    """
    config = config or TrainConfig()
    x_np = np.asarray(x, dtype=np.float32)
    if x_np.ndim != 4 or len(x_np) == 0:
        raise KitError(f"training features must be a non-empty (N, C, F, T) array, got shape {x_np.shape}")
    n = len(x_np)
    device = resolve_device(config.device)
    if device.type == "cuda":
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    with torch_threads(config.threads):
        torch.manual_seed(config.seed)
        model = build_model(config.arch, x_np.shape[1:], n_classes, **config.arch_kwargs).to(device)
        features = torch.from_numpy(x_np).to(device)
        targets = prepare_targets(y, n, n_classes).to(device)
        rng = np.random.default_rng(config.seed)
        aug_gen = torch.Generator().manual_seed(config.seed)
        word_head, word_targets = _word_head(model, words, n, config, device)
        optimizer = make_optimizer(model if word_head is None else torch.nn.ModuleList([model, word_head]), config)
        batch = config.effective_batch(n)
        total = config.total_steps(n)
        hard = (targets.argmax(dim=1) if targets.ndim == 2 else targets).cpu().numpy()
        counts = np.bincount(hard, minlength=n_classes).astype(np.float64)
        per_clip = draw_weights(hard, n_classes, config.balance, sample_weight)
        class_weight = None
        if config.balance == "loss":
            class_weight = torch.tensor(
                np.where(counts > 0, n / (n_classes * np.maximum(counts, 1)), 0.0), dtype=torch.float32, device=device
            )
        model.train()
        seen, loss_value, started = 0, float("nan"), time.perf_counter()
        with _progress_bar(progress) as bar:
            task = bar.add_task(f"train {config.arch} seed {config.seed}", total=total, loss=float("nan"))
            for step, index in zip(range(total), _batches(n, batch, rng, per_clip)):
                set_learning_rate(optimizer, config.learning_rate(step, total))
                idx = torch.from_numpy(index).to(device)
                xb = features[idx]
                if config.augment:
                    xb = augment_batch(xb, aug_gen)
                if word_head is None:
                    loss = classification_loss(model(xb), targets[idx], config.label_smoothing, class_weight)
                else:
                    logits, embedding = model.forward_with_embedding(xb)
                    loss = classification_loss(logits, targets[idx], config.label_smoothing, class_weight)
                    loss = loss + config.word_head * classification_loss(
                        word_head(embedding), word_targets[idx], config.label_smoothing
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                seen += len(index)
                if step % 10 == 0 or step == total - 1:
                    loss_value = float(loss.detach())
                    if not np.isfinite(loss_value):  # NaN stays NaN: stop instead of saving a NaN model
                        raise KitError(
                            f"training stopped: the loss became {loss_value} at step {step + 1} "
                            "(non-finite input features, or try a lower --lr)"
                        )
                    bar.update(task, completed=step + 1, loss=loss_value)
        seconds = time.perf_counter() - started
    model.eval()
    model.train_stats = {  # type: ignore[attr-defined]
        "steps": total,
        "batch_size": batch,
        "epochs": total * batch / n,
        "samples_seen": seen,
        "seconds": seconds,
        "samples_per_s": seen / seconds if seconds > 0 else float("inf"),
        "final_loss": loss_value,
        "device": str(device),
    }
    return model
