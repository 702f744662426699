"""DC and DSA: dataset condensation by gradient matching (with Siamese augmentation for DSA).

DC: Zhao, Mopuri & Bilen, "Dataset Condensation with Gradient Matching", ICLR 2021.
DSA: Zhao & Bilen, "Dataset Condensation with Differentiable Siamese Augmentation", ICML 2021.

Why gradient matching: a network trained on the coreset should follow the same path through
weight space as one trained on the real data. DC makes that local: for a network at some point of
its training, the gradient of the classification loss on the synthetic samples of class c should
point where the gradient on a real batch of class c points. Matching over many freshly
initialised networks, each trained a little on the coreset in between, covers the part of the
trajectory a model trained on the coreset will actually visit.

One step (the paper's outer iteration) is:

1. draw a fresh ConvNet (kit ``convnet``, instance norm, width ``width``; or any registered ``arch``
   with ``arch_kwargs``, instance norm unless they say otherwise) from the ``net`` generator;
2. ``outer_loop`` times: for every class c, draw ``batch_size`` real samples of c; compute the
   gradient g_real of the mean cross-entropy on them and g_syn on the synthetic samples of c (with
   DSA both batches first go through the SAME sampled augmentation); the distance is, per layer
   with a weight matrix or kernel, sum over output units of (1 - cos(g_real[u], g_syn[u])) (biases
   and normalisation parameters are skipped, as in the authors' code); sum over classes and take one
   SGD step (momentum ``momentum``, lr ``lr``) on the synthetic features; then, except after the last
   update, train the network ``inner_loop`` epochs on the (detached, for DSA augmented) coreset with
   SGD lr ``net_lr``.

The network lives only inside a step, so a checkpoint (the coreset, the SGD momentum and the
generators, all registered with ``IterativeDistiller``) resumes a run exactly.

Distributed runs (``torchrun --nproc N``): every rank draws the same class batch of global
indices, augmentation parameters and network; each computes the *summed* cross-entropy gradient of
the rows it owns, the gradients are summed over ranks (``all_reduce_sum``) and divided by the
global batch size, so g_real equals the single-process one; the synthetic side is identical on all
ranks, hence every rank takes the same step (the distributed rule for real-data statistics).

Why these defaults (``IPC_DEFAULTS`` and the constructor), measured on FSDD at 1/class: a width-64
ConvNet with 64 real clips per class cost 4-7 s per coreset update on one core of the busy machine
(width 128 no less), so only 18 updates fit in 120 s, worth 47.2 % with the paper's image lr 0.1.
Width-32 networks on 32 real clips per class are ~4x cheaper and still informative, and lr 1.0
(SGD, momentum 0.5) moves normalised MFCC maps fast enough: 60 updates gave 80.7 % (DC) and
81.3 % (DSA), 2 seeds. ``outer_loop`` / ``inner_loop`` follow the paper's (1, 1) at 1/class and
(10, 50) at 10/class with the inner loop cut to 10 epochs for the CPU: 12 such steps gave 98.2 %
at 10/class (2 seeds) but took 11 minutes on the busy machine, so the default 20 steps are
capped by the 280-s ``time_budget_s`` there. The row for more than 10 per class is scaled down
from the 10/class one and was not measured.

Measured with the defaults (``kit.pipeline.load_training_set("fsdd")`` official split, 2 700
training clips; ``distill_coreset(..., threads=1, device="cpu")``, distillation seed 0;
``score_coreset(..., max_samples=16000)`` = ConvNet width 128 trained on the coreset, test
accuracy mean +- std over 3 training seeds, one thread; 2 shared CPU cores at load 5-10, i.e.
several other jobs running; random real clips score 37.8 / 95.7 %, RFAD 73.2 / 97.2 %):

====== ========================================= ===========================================
method 1 per class                               10 per class
====== ========================================= ===========================================
DC     85.9 +- 1.0 % (223 steps, 289 s, budget)  97.8 +- 0.4 % (9 steps, 296 s, budget)
DSA    87.1 +- 0.7 % (300 steps, 240 s)          98.7 +- 0.0 % (18 steps, 298 s, budget)
====== ========================================= ===========================================

Speech Commands kws10 (``task="kws10"``) at 1 per class, same protocol: DC 38.3 +- 1.7 % (300 steps,
283 s), DSA 36.6 +- 1.4 % (300 steps, 273 s); random real clips ~22 %.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from deploy.runtime.errors import KitError
from kit.models import build_model

from .augment import MODES, OPS, SiameseAugment, parse_ops
from .base import class_major_labels
from .distributed import ProcessGroup
from .iterative import IterativeDistiller, RealData
from .params import Param, choice, fraction, non_negative_int, positive_float, positive_int

#: Defaults by samples per class, measured on FSDD (module docstring): first row with max_ipc >= ipc.
IPC_DEFAULTS: tuple[dict[str, Any], ...] = (
    {"max_ipc": 1, "steps": 300, "outer_loop": 1, "inner_loop": 1},
    {"max_ipc": 10, "steps": 20, "outer_loop": 10, "inner_loop": 10},
    {"max_ipc": 10**9, "steps": 10, "outer_loop": 10, "inner_loop": 5},
)
#: hyper-parameters whose ``None`` means "take the per-ipc default"
_PER_IPC = ("steps", "outer_loop", "inner_loop")


def network_kwargs(arch: str, arch_kwargs: dict[str, Any] | None, width: int, depth: int) -> dict[str, Any]:
    """Constructor arguments of a distiller's network: instance norm unless ``arch_kwargs`` says
    otherwise; ``width``/``depth`` are the ConvNet's (other architectures take theirs, e.g. a
    ResNet's ``width`` or a DS-CNN's ``size``, from ``arch_kwargs``).

    Why instance norm by default for every architecture: BatchNorm in train mode normalises by the
    statistics of the batch it sees, so the same network maps a real class batch and a handful of
    synthetic samples through different normalisations (DM's class means and DC's gradients stop
    being comparable, most of all at 1 clip per class), and under ``torch.distributed`` each rank
    would normalise by its own shard. Per-sample GroupNorm has neither problem; the distillation
    papers use instance-norm ConvNets for the same reason. Evaluation networks keep their own norm.

    Measured caveat (FSDD, 30 clips per digit, nearest-class-mean accuracy of random-network
    embeddings, the feature space DM matches in, 3 seeds): ConvNet width 64 instance 57 % / none
    46 % / batch 57 %; the global-average-pooled nets are far weaker whatever the norm: ResNet-18
    width 16 24 / 24 / 21 %, VGG11 width 16 20 / 40 / 31 %, DS-CNN small 20 / 12 / 25 % (without a
    norm the DS-CNN's ReLUs die: every embedding is equal). Pooling a per-sample-normalised map
    removes its level, so distilling *with* such a network gives a weaker signal than with the
    flattening ConvNet; no norm choice fixes that, hence the uniform, exact-across-ranks default.
    """
    base: dict[str, Any] = {"width": int(width), "depth": int(depth)} if arch == "convnet" else {}
    return {**base, "norm": "instance", **dict(arch_kwargs or {})}


def fresh_network(
    in_shape: Sequence[int],
    n_classes: int,
    width: int,
    depth: int,
    generator: torch.Generator,
    device: torch.device,
    arch: str = "convnet",
    arch_kwargs: dict[str, Any] | None = None,
) -> torch.nn.Module:
    """A randomly initialised kit network (``arch``, instance norm by default; see
    ``network_kwargs``) whose weights come from ``generator``.

    ``build_model`` initialises from torch's global RNG; forking it around a seed drawn from our
    generator makes the network a function of the checkpointed generator state alone (and the same
    on every rank), without disturbing anyone else's global RNG.
    """
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = build_model(arch, tuple(in_shape), n_classes, **network_kwargs(arch, arch_kwargs, width, depth))
    return net.to(device)


def check_network(method: str, arch: str, arch_kwargs: Any, width: int, depth: int) -> None:
    """One-line ``KitError`` for an unknown architecture or arguments it does not take (checked
    on a tiny input before any data is loaded; the types of ``arch``/``arch_kwargs`` are declared
    ``Param``s, checked before this)."""
    try:
        build_model(arch, (1, 2, 2), 2, **network_kwargs(arch, arch_kwargs, width, depth))
    except KitError as exc:
        raise KitError(f"{method}: {exc}") from None


def gradient_distance(g_real: Sequence[torch.Tensor], g_syn: Sequence[torch.Tensor]) -> torch.Tensor:
    """DC's layer-wise distance: sum over layers and output units of 1 - cosine similarity.

    Each gradient is reshaped to (output units, rest); only weights with >= 2 dimensions are
    passed in (the paper's code returns 0 for biases and normalisation parameters).
    """
    total = g_syn[0].new_zeros(())
    for a, b in zip(g_real, g_syn):
        a, b = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
        cos = (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1) + 1e-6)
        total = total + (1.0 - cos).sum()
    return total


class DC(IterativeDistiller):
    """Gradient matching (DC). ``batch_size`` = real samples per class per coreset update;
    ``arch``/``arch_kwargs`` the matching network (default the instance-norm ConvNet of
    ``width``/``depth``; see ``network_kwargs``)."""

    method = "dc"
    IPC_DEFAULTS = IPC_DEFAULTS
    PARAMS = {
        "lr": positive_float("SGD learning rate on the coreset features"),
        "momentum": fraction("SGD momentum on the coreset features"),
        "batch_size": positive_int("real samples per class per coreset update"),
        "width": positive_int("channels of the matching ConvNet"),
        "depth": positive_int("conv blocks of the matching ConvNet"),
        "outer_loop": positive_int("coreset updates per fresh network", none="per-ipc default"),
        "inner_loop": non_negative_int(
            "epochs the network trains on the coreset between updates", none="per-ipc default"
        ),
        "net_lr": positive_float("SGD learning rate of the network's inner training"),
        "net_batch_size": positive_int("batch of the network's inner training"),
        "arch": Param("str", "matching network architecture (kit models lists them)"),
        "arch_kwargs": Param("json", "constructor arguments of arch", none="the arch's defaults, instance norm"),
    }

    def __init__(
        self,
        ipc: int = 1,
        seed: int = 0,
        steps: int | None = None,
        time_budget_s: float | None = 280.0,
        lr: float = 1.0,
        momentum: float = 0.5,
        batch_size: int = 32,
        width: int = 32,
        depth: int = 3,
        outer_loop: int | None = None,
        inner_loop: int | None = None,
        net_lr: float = 0.01,
        net_batch_size: int = 256,
        arch: str = "convnet",
        arch_kwargs: dict[str, Any] | None = None,
        device: str = "auto",
        checkpoint_path: str | None = None,
        checkpoint_every: int = 10,
        resume: bool = False,
        progress: bool = False,
        threads: int | None = None,
    ) -> None:
        super().__init__(ipc=ipc, seed=seed)
        self.lr = lr
        self.momentum = momentum
        self.batch_size = batch_size
        self.width = width
        self.depth = depth
        self.outer_loop = outer_loop
        self.inner_loop = inner_loop
        self.net_lr = net_lr
        self.net_batch_size = net_batch_size
        self.arch = arch
        self.arch_kwargs = arch_kwargs
        self._init_common(steps, time_budget_s, device, checkpoint_path, checkpoint_every, resume, progress, threads)

    # parameters ---------------------------------------------------------------------------------
    def _check_params(self) -> None:
        super()._check_params()
        check_network(self.method, self.arch, self.arch_kwargs, int(self.width), int(self.depth))

    def _augmenter(self) -> SiameseAugment | None:
        """DC matches un-augmented batches; DSA overrides this."""
        return None

    # the run ------------------------------------------------------------------------------------
    def _setup(self, x: np.ndarray, y: np.ndarray, n_classes: int, device: torch.device, group: ProcessGroup) -> None:
        params = self.resolved_params()
        self._outer, self._inner = int(params["outer_loop"]), int(params["inner_loop"])
        self._k, self._ipc, self._device = n_classes, int(self.ipc), device
        self._shape = tuple(x.shape[1:])
        self._aug = self._augmenter()
        self.real = RealData(x, y, n_classes, group, device)
        self.group = group
        # initialise from random real samples of each class (seeded; the same on every rank)
        rng = np.random.default_rng(int(self.seed))
        self.init_indices_ = np.concatenate(
            [rng.choice(np.flatnonzero(y == c), size=self._ipc, replace=False) for c in range(n_classes)]
        ).astype(np.int64)
        syn = torch.from_numpy(x[self.init_indices_]).to(device).requires_grad_(True)
        self._labels = torch.from_numpy(class_major_labels(self._ipc, n_classes)).to(device)
        self.tensors["features"] = syn
        self.optimizers["coreset"] = torch.optim.SGD([syn], lr=float(self.lr), momentum=float(self.momentum))
        base = int(self.seed) * 1_000_003
        for i, name in enumerate(("real", "net", "aug")):
            self.generators[name] = torch.Generator().manual_seed(base + 7919 * (i + 1))

    def _real_gradient(
        self, net: torch.nn.Module, weights: list[torch.Tensor], c: int, aug_params: Any
    ) -> list[torch.Tensor]:
        """Mean cross-entropy gradient on a global real batch of class ``c`` (exact across ranks)."""
        idx = self.real.class_batch(self.generators["real"], c, int(self.batch_size))
        xr, yr = self.real.take(idx)
        if len(xr):
            if aug_params is not None:
                xr = self._aug.apply(xr, aug_params)
            loss = F.cross_entropy(net(xr), yr, reduction="sum")
            grads = [g.detach() for g in torch.autograd.grad(loss, weights)]
        else:  # this rank owns none of the batch
            grads = [torch.zeros_like(w) for w in weights]
        for g in grads:
            self.group.all_reduce_sum(g)
            g.div_(len(idx))
        return grads

    def _match(self, net: torch.nn.Module) -> float:
        """One coreset update: the summed matching distance over classes, backpropagated."""
        syn = self.tensors["features"]
        weights = [p for p in net.parameters() if p.dim() > 1]
        opt = self.optimizers["coreset"]
        opt.zero_grad(set_to_none=True)
        total = 0.0
        for c in range(self._k):
            aug_params = self._aug.sample(self._shape, self.generators["aug"]) if self._aug is not None else None
            g_real = self._real_gradient(net, weights, c, aug_params)
            xs = syn[c * self._ipc : (c + 1) * self._ipc]
            if aug_params is not None:
                xs = self._aug.apply(xs, aug_params)
            loss_syn = F.cross_entropy(net(xs), self._labels[c * self._ipc : (c + 1) * self._ipc])
            g_syn = torch.autograd.grad(loss_syn, weights, create_graph=True)
            distance = gradient_distance(g_real, g_syn)
            torch.autograd.backward(distance, inputs=[syn])  # class by class: memory stays small
            total += float(distance.detach())
        opt.step()
        return total

    def _train_network(self, net: torch.nn.Module, net_opt: torch.optim.Optimizer) -> float:
        """``inner_loop`` epochs of SGD on the current coreset (DSA: augmented, fresh draw per batch)."""
        syn = self.tensors["features"].detach()
        n, batch = len(syn), min(int(self.net_batch_size), len(syn))
        last = float("nan")
        for _ in range(self._inner):
            order = torch.randperm(n, generator=self.generators["net"]).to(self._device)
            for start in range(0, n, batch):
                idx = order[start : start + batch]
                xb = syn[idx]
                if self._aug is not None:
                    (xb,) = self._aug(xb, generator=self.generators["aug"])
                loss = F.cross_entropy(net(xb), self._labels[idx])
                net_opt.zero_grad(set_to_none=True)
                loss.backward()
                net_opt.step()
                last = float(loss.detach())
        return last

    def _step(self, step: int) -> dict[str, Any]:
        net = fresh_network(
            self._shape,
            self._k,
            int(self.width),
            int(self.depth),
            self.generators["net"],
            self._device,
            self.arch,
            self.arch_kwargs,
        )
        net.train()
        net_opt = torch.optim.SGD(net.parameters(), lr=float(self.net_lr))
        distances = []
        net_loss = None
        for ol in range(self._outer):
            distances.append(self._match(net))
            if ol < self._outer - 1 and self._inner > 0:
                net_loss = self._train_network(net, net_opt)
        # reported loss: matching distance per class, averaged over the step's coreset updates
        entry: dict[str, Any] = {"loss": float(np.mean(distances)) / self._k}
        if net_loss is not None:
            entry["net_loss"] = net_loss
        return entry

    def _finish(self) -> None:
        self.features_ = np.ascontiguousarray(self.tensors["features"].detach().cpu().numpy(), dtype=np.float32)
        self.labels_ = class_major_labels(self._ipc, self._k)
        del self.real  # the real pool is large; the fitted distiller keeps only its result


class DSA(DC):
    """DC with Differentiable Siamese Augmentation: real and synthetic batches share one draw."""

    method = "dsa"
    PARAMS = {
        "augment": Param("str", f"comma-separated augmentations ({', '.join(OPS)}) or none"),
        "augment_mode": choice("one random augmentation per draw, or all of them", MODES),
    }

    def __init__(
        self,
        ipc: int = 1,
        seed: int = 0,
        steps: int | None = None,
        time_budget_s: float | None = 280.0,
        lr: float = 1.0,
        momentum: float = 0.5,
        batch_size: int = 32,
        width: int = 32,
        depth: int = 3,
        outer_loop: int | None = None,
        inner_loop: int | None = None,
        net_lr: float = 0.01,
        net_batch_size: int = 256,
        arch: str = "convnet",
        arch_kwargs: dict[str, Any] | None = None,
        augment: str = ",".join(OPS),
        augment_mode: str = "single",
        device: str = "auto",
        checkpoint_path: str | None = None,
        checkpoint_every: int = 10,
        resume: bool = False,
        progress: bool = False,
        threads: int | None = None,
    ) -> None:
        super().__init__(
            ipc=ipc,
            seed=seed,
            steps=steps,
            time_budget_s=time_budget_s,
            lr=lr,
            momentum=momentum,
            batch_size=batch_size,
            width=width,
            depth=depth,
            outer_loop=outer_loop,
            inner_loop=inner_loop,
            net_lr=net_lr,
            net_batch_size=net_batch_size,
            arch=arch,
            arch_kwargs=arch_kwargs,
            device=device,
            checkpoint_path=checkpoint_path,
            checkpoint_every=checkpoint_every,
            resume=resume,
            progress=progress,
            threads=threads,
        )
        self.augment = augment
        self.augment_mode = augment_mode

    def _check_params(self) -> None:
        super()._check_params()
        self._augmenter()

    def _augmenter(self) -> SiameseAugment:
        ops = parse_ops(self.augment, owner=self.method)
        try:
            return SiameseAugment(ops, mode=self.augment_mode)
        except KitError as exc:
            raise KitError(f"{self.method}: {str(exc).removeprefix('augment: ')}") from None
