"""DM: dataset condensation by distribution matching (Zhao & Bilen, WACV 2023).

Why this method: gradient matching (DC/DSA) needs second-order gradients and inner network
training, which is slow on a CPU. DM asks for less and is far cheaper: under a randomly
initialised embedding network, the synthetic samples of each class should have the same mean
embedding as the real samples of that class. Random networks are drawn afresh at every step, so
the coreset matches the class distributions in many random feature spaces at once (a cheap
stand-in for matching them in the feature space of a trained network).

One step:

1. draw a fresh kit ConvNet body (instance norm, width ``width``, depth ``depth``, random init;
   or another registered ``arch`` with ``arch_kwargs``) from the ``net`` generator; its ``embed``
   (the penultimate representation) is the feature space;
2. for every class c: draw ``batch_size`` real samples of c and one augmentation
   (:class:`distill.augment.SiameseAugment`), applied identically to those real samples and to
   the synthetic samples of c;
3. loss = sum over classes of || mean real embedding - mean synthetic embedding ||^2;
4. one SGD step (lr ``lr``, momentum ``momentum``) on the synthetic features.

Distributed runs (exact, the rule for real-data statistics): every rank draws the same global
class batches, augmentation parameters and network from identically seeded generators, embeds
only the real rows it owns and forms per-class embedding SUMS and COUNTS; one ``all_reduce_sum``
of the stacked (K, D + 1) tensor [sums | counts] gives the global sums and counts, and their ratio
is exactly the single-process class mean (up to float summation order). The synthetic side (the
coreset, the network, the augmentation) is identical on every rank, so all ranks compute the same
loss and gradient and take the same step without exchanging gradients; rank 0 writes checkpoints.

The real side needs no gradient, so one step costs one forward pass of K * ``batch_size`` real
samples plus a forward/backward pass of the coreset: 0.5-1.8 s per step on one core of the busy
2-core machine (about 280 steps at 1/class and 160 at 10/class fit in the 280-s budget there).

Why these defaults (``IPC_DEFAULTS`` and the constructor), measured on FSDD: one random width-64
instance-norm ConvNet per step and 32 real clips per class, as in the notes; the notes' SGD lr
3e-3 barely moves normalised MFCC maps in a few hundred steps (41.9 % at 1/class after 312
steps), lr 3e-2 gave 53.7 % after 128 steps, 0.3 78.3 % after 79 steps and 1.0 86.6 % after 200
steps; at 10/class lr 0.3 gave 97.8 % (2 seeds) after 200 steps, so lr 0.3 is kept there
(each of 10 samples has less far to move from its real initialisation than one alone). The
augmentations are on by default, as in the DM paper (the coreset should match the class means
under every view, not one fixed view); DM without them was not measured here.

Measured with the defaults (``kit.pipeline.load_training_set("fsdd")`` official split, 2 700
training clips; ``distill_coreset(..., threads=1, device="cpu")``, distillation seed 0;
``score_coreset(..., max_samples=16000)`` = ConvNet width 128 trained on the coreset, test
accuracy mean +- std over 3 training seeds, one thread; 2 shared CPU cores at load 5-10, i.e.
several other jobs running, so the 280-s budget stopped both runs before their step count;
random real clips score 37.8 / 95.7 %, RFAD 73.2 / 97.2 %):

* 1 per class: 87.1 +- 1.2 % (278 steps in 285 s);
* 10 per class: 97.3 +- 0.8 % (163 steps in 289 s).

Speech Commands kws10 (``task="kws10"``), same protocol: 31.8 +- 1.3 % at 1 per class (177
steps in 288 s; random real clips ~22 %) and 52.5 +- 1.0 % at 10 per class (233 steps in 288 s;
random ~51 %, so no clear gain there within the 280-s budget; longer runs or larger real
batches are the untested next step).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from deploy.runtime.errors import KitError

from .augment import MODES, OPS, SiameseAugment, parse_ops
from .base import class_major_labels
from .distributed import ProcessGroup
from .gradient_matching import check_network, fresh_network
from .iterative import IterativeDistiller, RealData
from .params import Param, choice, fraction, positive_float, positive_int

#: Defaults by samples per class, measured on FSDD (module docstring): first row with max_ipc >= ipc.
#: The 280-s ``time_budget_s`` caps the steps on a slower or busier machine.
IPC_DEFAULTS: tuple[dict[str, Any], ...] = (
    {"max_ipc": 1, "steps": 500, "lr": 1.0},
    {"max_ipc": 10**9, "steps": 300, "lr": 0.3},
)


class DM(IterativeDistiller):
    """Distribution matching. ``batch_size`` = real samples per class per step; ``arch`` /
    ``arch_kwargs`` the random embedding networks (default the instance-norm ConvNet of
    ``width``/``depth``; any registered architecture, instance norm unless ``arch_kwargs`` sets
    ``norm``: see ``distill.gradient_matching.network_kwargs`` for why)."""

    method = "dm"
    IPC_DEFAULTS = IPC_DEFAULTS
    PARAMS = {
        "lr": positive_float("SGD learning rate on the coreset features", none="per-ipc default"),
        "momentum": fraction("SGD momentum on the coreset features"),
        "batch_size": positive_int("real samples per class per step"),
        "width": positive_int("channels of the random embedding ConvNet"),
        "depth": positive_int("conv blocks of the random embedding ConvNet"),
        "arch": Param("str", "embedding network architecture (kit models lists them)"),
        "arch_kwargs": Param("json", "constructor arguments of arch", none="the arch's defaults, instance norm"),
        "augment": Param("str", f"comma-separated augmentations ({', '.join(OPS)}) or none"),
        "augment_mode": choice("one random augmentation per draw, or all of them", MODES),
    }

    def __init__(
        self,
        ipc: int = 1,
        seed: int = 0,
        steps: int | None = None,
        time_budget_s: float | None = 280.0,
        lr: float | None = None,
        momentum: float = 0.5,
        batch_size: int = 32,
        width: int = 64,
        depth: int = 3,
        arch: str = "convnet",
        arch_kwargs: dict[str, Any] | None = None,
        augment: str = ",".join(OPS),
        augment_mode: str = "single",
        device: str = "auto",
        checkpoint_path: str | None = None,
        checkpoint_every: int = 50,
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
        self.arch = arch
        self.arch_kwargs = arch_kwargs
        self.augment = augment
        self.augment_mode = augment_mode
        self._init_common(steps, time_budget_s, device, checkpoint_path, checkpoint_every, resume, progress, threads)

    # parameters ---------------------------------------------------------------------------------
    def _check_params(self) -> None:
        super()._check_params()
        check_network("dm", self.arch, self.arch_kwargs, int(self.width), int(self.depth))
        self._augmenter()

    def _augmenter(self) -> SiameseAugment:
        ops = parse_ops(self.augment, owner="dm")
        try:
            return SiameseAugment(ops, mode=self.augment_mode)
        except KitError as exc:
            raise KitError(f"dm: {str(exc).removeprefix('augment: ')}") from None

    # the run ------------------------------------------------------------------------------------
    def _setup(self, x: np.ndarray, y: np.ndarray, n_classes: int, device: torch.device, group: ProcessGroup) -> None:
        self._k, self._ipc, self._device, self._shape = n_classes, int(self.ipc), device, tuple(x.shape[1:])
        self._aug = self._augmenter()
        self.real = RealData(x, y, n_classes, group, device)
        self.group = group
        rng = np.random.default_rng(int(self.seed))
        self.init_indices_ = np.concatenate(
            [rng.choice(np.flatnonzero(y == c), size=self._ipc, replace=False) for c in range(n_classes)]
        ).astype(np.int64)
        syn = torch.from_numpy(x[self.init_indices_]).to(device).requires_grad_(True)
        self.tensors["features"] = syn
        lr = float(self.resolved_params()["lr"])
        self.optimizers["coreset"] = torch.optim.SGD([syn], lr=lr, momentum=float(self.momentum))
        base = int(self.seed) * 1_000_003
        for i, name in enumerate(("real", "net", "aug")):
            self.generators[name] = torch.Generator().manual_seed(base + 7919 * (i + 1))

    def _real_means(self, net: torch.nn.Module, draws: list[Any]) -> torch.Tensor:
        """Per-class mean real embeddings (K, D), summed over ranks before dividing."""
        parts, labels = [], []
        for c in range(self._k):
            idx = self.real.class_batch(self.generators["real"], c, int(self.batch_size))
            xr, _ = self.real.take(idx)
            parts.append(self._aug.apply(xr, draws[c]))
            labels.append(torch.full((len(xr),), c, dtype=torch.long, device=self._device))
        xr, yr = torch.cat(parts), torch.cat(labels)
        dim = int(net.embedding_dim)
        stats = torch.zeros((self._k, dim + 1), device=self._device)
        if len(xr):
            with torch.no_grad():
                emb = net.embed(xr)
            stats[:, :dim].index_add_(0, yr, emb)
            stats[:, dim].index_add_(0, yr, torch.ones(len(yr), device=self._device))
        self.group.all_reduce_sum(stats)
        return stats[:, :dim] / stats[:, dim:].clamp_min(1.0)

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
        for p in net.parameters():
            p.requires_grad_(False)
        draws = [self._aug.sample(self._shape, self.generators["aug"]) for _ in range(self._k)]
        mean_real = self._real_means(net, draws)
        syn = self.tensors["features"]
        xs = torch.cat([self._aug.apply(syn[c * self._ipc : (c + 1) * self._ipc], draws[c]) for c in range(self._k)])
        mean_syn = net.embed(xs).reshape(self._k, self._ipc, -1).mean(dim=1)
        loss = (mean_real - mean_syn).pow(2).sum()
        opt = self.optimizers["coreset"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": float(loss.detach())}

    def _finish(self) -> None:
        self.features_ = np.ascontiguousarray(self.tensors["features"].detach().cpu().numpy(), dtype=np.float32)
        self.labels_ = class_major_labels(self._ipc, self._k)
        del self.real
