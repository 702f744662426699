"""MTT: dataset distillation by matching training trajectories (Cazenavette et al., CVPR 2022).

The method of the DDFAD paper this kit reproduces. Why it works: a coreset is good when training
on it moves a network the way training on the real data does. MTT makes that literal. Experts
(ConvNets trained on the real data, ``distill/experts.py``) leave parameter trajectories
theta*_0, theta*_1, ... (one snapshot per epoch). One distillation step:

1. sample an expert and a start epoch t <= ``max_start_epoch``; the student starts at theta*_t;
2. unroll ``syn_steps`` plain SGD steps of the student on minibatches of the (augmented)
   synthetic set with a *learnable* step size alpha = exp(log_alpha), keeping the graph
   (the forward is ``torch.func.functional_call`` of the kit's own ConvNet on a flat parameter
   vector, so the student is exactly the expert architecture);
3. loss = ||theta_student - theta*_{t+M}||^2 / ||theta*_t - theta*_{t+M}||^2 with M =
   ``expert_epochs``: how far the student lands from where the expert got after M epochs,
   relative to how far the expert went (a value below 1 means the coreset beats standing still);
4. back-propagate through the whole unroll into the synthetic features (SGD with momentum as in
   the paper, or Adam), the log step size (its own Adam) and, with ``learn_labels``, soft labels.

Distributed runs: a step reads no real data (only the expert buffer), so every rank computes the
same step from the same generators and the coreset is identical to a one-process run without any
communication; the expensive expert buffer is what ranks share out (experts ``e % world``).

Expert buffer (``distill/experts.py``): by default 10 experts, width-32 instance-norm ConvNets,
12 epochs of SGD (lr 0.01, batch 64, no momentum) with the evaluation's augmentation, stored under
``<kit cache>/mtt-experts/<key hash>`` and reused by every later run on the same data and
settings (every ipc and seed); ``buffer=PATH`` puts it elsewhere. Why width 32 and not the
evaluation's 128: an unroll costs ~11x less (1 thread, busy cores: 10 clips x 20 unrolled steps
0.52 s vs 5.96 s forward + backward) and experts train ~10x faster (width 128 ran at ~100 clips/s
on the busy cores, width 32 at 1000-1500), so the buffer takes ~2 minutes instead of ~20; the
coresets transfer to the width-128 evaluation network (figures below).

Measured on FSDD, official split (2700 training clips, fd_mfcc (3, 13, 64)), 2 shared CPU cores,
1 torch thread, distillation seed 0 unless noted; accuracy = the benchmark's evaluation
(``kit.pipeline.load_training_set`` + ``distill_coreset`` + ``score_coreset(..., max_samples=16000)``,
ConvNet width 128, mean +- std over training seeds 0, 1, 2):

=========  ===============  =============  ============  ========  ========  ============
per class  MTT (defaults)   steps, time    peak RSS      random    RFAD      herding
=========  ===============  =============  ============  ========  ========  ============
1          87.8 +- 1.4 %    800, 260 s     563 MB        37.8 %    73.2 %    62.7 %
10         98.2 +- 0.2 %    194, 280 s *   1308 MB       95.7 %    97.2 %    97.4 %
=========  ===============  =============  ============  ========  ========  ============

(* stopped by the 280-s budget.) Distillation seed 1: 86.3 +- 1.5 % at 1/class (400 steps),
98.3 +- 0.3 % at 10/class (230 steps). The real clips MTT starts from score 96.6 +- 0.7 % at
10/class (seed 0), so MTT adds about 1.6 points there; at 1/class it is ~50 points above random
clips and ~15 above RFAD.
Expert buffer: 109 s to build on a quiet machine (484 s with the cores ~5x oversubscribed),
10.7 MB on disk (float32); a rebuild is bit-identical. Buffer time is not part of the figures above
(the buffer is built once and cached; the step loop's time budget starts after it).

Tuning runs (280-s budgets while the machine was 3-5x oversubscribed, so fewer steps; ipc 1 with
2 evaluation seeds): at 1/class Adam lr 1e-2, 150 steps 76.7 %; Adam 3e-2, 150 steps 82.0 %; SGD
momentum 0.5 (MTT's optimiser) lr 100, 150 steps 80.0 %; syn_steps 10 with Adam 3e-2, 594 steps
84.5 %; syn_steps 20, 300 steps 85.8 %; and, on a quiet machine with 3 seeds, 400 steps 85.1 +- 1.7 %
against 87.8 % for the default 800. At 10/class (3 evaluation seeds
unless noted) a large feature learning rate hurts even though the MTT loss falls faster: Adam
3e-2: 95.5 % (2 seeds), 1e-2 with batch 30 / max start 8: 96.8 % (2 seeds), 3e-3 with batch 30 /
max start 8: 97.3 +- 0.5 %, batch 30 / max start 10: 96.7 %, 1e-2 with batch 50 / max start 10:
97.1 +- 0.4 %, 3e-3 with batch 50 / max start 10: 98.2 +- 0.2 %. Adam is the default because it is
scale-free: SGD's learning rate has to follow the feature-gradient scale, which shrinks ~8x from
1 to 10 clips per class. Rows above 10/class (50/class) reuse the 10/class settings, unmeasured.

Memory grows linearly with ``syn_steps`` x synthetic batch: every unrolled step keeps its
activations and its parameter vector for the backward pass. Peak RSS of a whole process (~390 MB
of it is the data, torch and the buffer before the first step), width-32 student:

=============================  =======  =======  =======  =======
syn_steps                      10       20       40       80
=============================  =======  =======  =======  =======
1/class (batch 10)             459 MB   548 MB   688 MB   962 MB
10/class (batch 50)            822 MB   1280 MB  1977 MB  3392 MB
=============================  =======  =======  =======  =======

i.e. about 7 MB per unrolled step per 10 synthetic clips; the defaults stay near 1.3 GB, far
inside a 24-GB machine. The unroll time per step grows the same way (1 thread, quiet machine:
~0.33 s per step at 1/class and ~1.2 s at 10/class with the defaults).

Runs are resumable exactly (``checkpoint_path`` + ``resume``, via ``IterativeDistiller``): the
coreset, the log step size, soft labels, the optimisers' state and both generators are saved.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call

from deploy.runtime.errors import KitError
from kit.models import build_model
from kit.training.augment import augment_batch
from kit.training.targets import classification_loss

from .base import class_major_labels
from .distributed import ProcessGroup
from .experts import STORAGE_DTYPES, ExpertBuffer, ExpertConfig, describe, ensure_expert_buffer, key_hash
from .iterative import IterativeDistiller
from .params import Param, choice, flag, non_negative_int, positive_float, positive_int

OPTIMIZERS = ("sgd", "adam")
#: momentum of the SGD optimiser on the synthetic features (MTT's value)
SYN_MOMENTUM = 0.5

#: Defaults by samples-per-class, filled from measurements on FSDD (module docstring): the first
#: row whose ``max_ipc`` >= ipc applies to every parameter left at None.
#: ``lr`` is Adam's learning rate on the features, ``sgd_lr`` the one for ``optimizer="sgd"``
#: (feature gradients are ~1e-4 at 1/class and ~1.5e-5 at 10/class, hence the large values).
IPC_DEFAULTS: tuple[dict[str, Any], ...] = (
    {
        "max_ipc": 1,
        "steps": 800,
        "lr": 3e-2,
        "sgd_lr": 100.0,
        "syn_steps": 20,
        "batch_size": None,
        "max_start_epoch": 4,
    },
    {
        "max_ipc": 10,
        "steps": 250,
        "lr": 3e-3,
        "sgd_lr": 100.0,
        "syn_steps": 20,
        "batch_size": 50,
        "max_start_epoch": 10,
    },
    {
        "max_ipc": 10**9,
        "steps": 150,
        "lr": 3e-3,
        "sgd_lr": 100.0,
        "syn_steps": 20,
        "batch_size": 50,
        "max_start_epoch": 10,
    },
)


class MTT(IterativeDistiller):
    """Matching Training Trajectories (see the module docstring).

    ``batch_size`` is the synthetic minibatch of each unrolled step (None: the whole coreset),
    ``width``/``depth`` the expert = student ConvNet, ``arch``/``arch_kwargs`` another registered
    expert = student architecture (instance norm unless ``arch_kwargs`` sets ``norm``; part of the
    buffer key), ``buffer`` the expert buffer folder (None:
    the kit cache, keyed by data and settings), ``feature_config`` the features' configuration
    (recorded in and checked against the buffer when given).
    """

    method = "mtt"
    IPC_DEFAULTS = IPC_DEFAULTS
    PARAMS = {
        "lr": positive_float("learning rate on the coreset features", none="per-ipc default for the optimizer"),
        "optimizer": choice("optimiser of the coreset features", OPTIMIZERS),
        "syn_steps": positive_int("student steps unrolled on the coreset per step", none="per-ipc default"),
        "batch_size": positive_int(
            "synthetic minibatch of each unrolled step", none="per-ipc default; none there: the whole coreset"
        ),
        "expert_epochs": positive_int("expert epochs the student must match (M)"),
        "max_start_epoch": non_negative_int("latest expert epoch a segment starts at", none="per-ipc default"),
        "syn_lr_init": positive_float("initial learned student step size", none="expert_lr"),
        "lr_lr": positive_float("learning rate of the learned student step size"),
        "augment": flag("augment the coreset in the unrolled student steps"),
        "learn_labels": flag("learn soft coreset labels too"),
        "label_lr": positive_float("learning rate on the labels (learn_labels)"),
        "n_experts": positive_int("expert trajectories in the buffer"),
        "buffer_epochs": positive_int("epochs each expert trains"),
        "width": positive_int("channels of the expert = student ConvNet"),
        "depth": positive_int("conv blocks of the expert = student ConvNet"),
        "arch": Param("str", "expert = student architecture (kit models lists them)"),
        "arch_kwargs": Param("json", "constructor arguments of arch", none="the arch's defaults, instance norm"),
        "expert_lr": positive_float("SGD learning rate of the experts"),
        "expert_batch_size": positive_int("batch of the experts' training"),
        "buffer": Param("str", "expert buffer folder", none="the kit cache, keyed by data and settings"),
        "buffer_dtype": choice("storage type of the expert trajectories", STORAGE_DTYPES),
        "feature_config": Param("any", "the features' FeatureConfig, checked against the buffer", none="unchecked"),
    }

    def __init__(
        self,
        ipc: int = 1,
        seed: int = 0,
        steps: int | None = None,
        time_budget_s: float | None = 280.0,
        lr: float | None = None,
        optimizer: str = "adam",
        syn_steps: int | None = None,
        batch_size: int | None = None,
        expert_epochs: int = 2,
        max_start_epoch: int | None = None,
        syn_lr_init: float | None = None,
        lr_lr: float = 1e-2,
        augment: bool = True,
        learn_labels: bool = False,
        label_lr: float = 1e-2,
        n_experts: int = 10,
        buffer_epochs: int = 12,
        width: int = 32,
        depth: int = 3,
        arch: str = "convnet",
        arch_kwargs: dict[str, Any] | None = None,
        expert_lr: float = 0.01,
        expert_batch_size: int = 64,
        buffer: str | None = None,
        buffer_dtype: str = "float32",
        feature_config: Any = None,
        device: str = "auto",
        checkpoint_path: str | None = None,
        checkpoint_every: int = 25,
        resume: bool = False,
        progress: bool = False,
        threads: int | None = None,
    ) -> None:
        super().__init__(ipc=ipc, seed=seed)
        self._init_common(steps, time_budget_s, device, checkpoint_path, checkpoint_every, resume, progress, threads)
        self.lr = lr
        self.optimizer = optimizer
        self.syn_steps = syn_steps
        self.batch_size = batch_size
        self.expert_epochs = expert_epochs
        self.max_start_epoch = max_start_epoch
        self.syn_lr_init = syn_lr_init
        self.lr_lr = lr_lr
        self.augment = augment
        self.learn_labels = learn_labels
        self.label_lr = label_lr
        self.n_experts = n_experts
        self.buffer_epochs = buffer_epochs
        self.width = width
        self.depth = depth
        self.arch = arch
        self.arch_kwargs = arch_kwargs
        self.expert_lr = expert_lr
        self.expert_batch_size = expert_batch_size
        self.buffer = buffer
        self.buffer_dtype = buffer_dtype
        # stored JSON-ready: the parameters travel into the coreset artifact
        self.feature_config = feature_config.to_dict() if hasattr(feature_config, "to_dict") else feature_config

    # parameters ---------------------------------------------------------------------------------
    def resolved_params(self) -> dict[str, Any]:
        """The base fill, except that SGD takes the row's ``sgd_lr`` as its default ``lr``."""
        lr_unset = self.lr is None
        params = super().resolved_params()
        if lr_unset and self.optimizer == "sgd":
            params["lr"] = self.ipc_defaults()["sgd_lr"]
        if params.get("syn_lr_init") is None:
            params["syn_lr_init"] = float(self.expert_lr)
        return params

    def expert_config(self) -> ExpertConfig:
        """The experts' (= the student's) architecture and training; ``arch_kwargs`` may set ``norm``
        (instance by default: see ``distill.gradient_matching.network_kwargs``) and, for the
        ConvNet, override ``width``/``depth``."""
        if self.arch_kwargs is not None and not isinstance(self.arch_kwargs, dict):
            raise KitError(f"mtt: arch_kwargs must be a dict (JSON object), got {type(self.arch_kwargs).__name__}")
        extra = dict(self.arch_kwargs or {})
        norm = str(extra.pop("norm", "instance"))
        width, depth = int(self.width), int(self.depth)
        if self.arch == "convnet":
            width, depth = int(extra.pop("width", width)), int(extra.pop("depth", depth))
        return ExpertConfig(
            arch=str(self.arch),
            width=width,
            depth=depth,
            norm=norm,
            epochs=int(self.buffer_epochs),
            lr=float(self.expert_lr),
            batch_size=int(self.expert_batch_size),
            dtype=str(self.buffer_dtype),
            extra_kwargs=tuple(sorted(extra.items())),
        )

    def _check_params(self) -> None:
        super()._check_params()
        p = self.resolved_params()
        if int(p["max_start_epoch"]) + int(p["expert_epochs"]) > int(p["buffer_epochs"]):
            raise KitError(
                f"mtt: max_start_epoch {p['max_start_epoch']} + expert_epochs {p['expert_epochs']} exceeds the "
                f"{p['buffer_epochs']} epochs of the expert buffer (raise buffer_epochs or lower them)"
            )
        self.expert_config().check()

    def _identity_keys(self) -> tuple[str, ...]:
        # the buffer's location and the feature config (checked by the buffer itself) do not change
        # the optimisation; the buffer's content hash is added in ``_identity``
        return tuple(k for k in super()._identity_keys() if k not in ("buffer", "feature_config"))

    def _identity(self, x: np.ndarray, y: np.ndarray, n_classes: int) -> dict[str, Any]:
        identity = super()._identity(x, y, n_classes)
        identity["expert_buffer"] = key_hash(self.buffer_.key)
        return identity

    # setup --------------------------------------------------------------------------------------
    def _setup(self, x: np.ndarray, y: np.ndarray, n_classes: int, device: torch.device, group: ProcessGroup) -> None:
        p = self.resolved_params()
        ipc, k = int(self.ipc), n_classes
        self.buffer_: ExpertBuffer = ensure_expert_buffer(
            x,
            y,
            n_classes,
            self.expert_config(),
            int(self.n_experts),
            path=self.buffer,
            feature_config=self.feature_config,
            device=device,
            group=group,
            progress=bool(self.progress),
        )
        self.syn_steps_ = int(p["syn_steps"])
        self.m_ = int(p["expert_epochs"])
        self.max_start_ = int(p["max_start_epoch"])
        n_syn = ipc * k
        self.batch_ = n_syn if p["batch_size"] is None else min(int(p["batch_size"]), n_syn)

        # the student: the expert architecture, called functionally on a flat parameter vector
        config = self.expert_config()
        self.net_ = build_model(config.arch, tuple(x.shape[1:]), k, **config.arch_kwargs()).to(device)
        names = [name for name, _ in self.net_.named_parameters()]
        if names != [name for name, _ in self.buffer_.spec]:
            raise KitError(f"{self.buffer_.path}: expert parameters {names[:2]}... do not match the student network")
        self.shapes_ = [tuple(shape) for _, shape in self.buffer_.spec]
        self.names_ = names
        self.sizes_ = [int(np.prod(s)) for s in self.shapes_]

        # initialise from real samples of each class (MTT's "real" init)
        rng = np.random.default_rng(int(self.seed))
        init = np.concatenate([rng.choice(np.flatnonzero(y == c), size=ipc, replace=False) for c in range(k)])
        self.init_indices_ = init
        self.device_ = device
        features = torch.from_numpy(np.ascontiguousarray(x[init])).to(device).requires_grad_(True)
        log_lr = torch.tensor(math.log(float(p["syn_lr_init"])), device=device, requires_grad=True)
        self.tensors.update(features=features, log_syn_lr=log_lr)
        lr = float(p["lr"])
        if self.optimizer == "sgd":
            self.optimizers["features"] = torch.optim.SGD([features], lr=lr, momentum=SYN_MOMENTUM)
        else:
            self.optimizers["features"] = torch.optim.Adam([features], lr=lr)
        self.optimizers["syn_lr"] = torch.optim.Adam([log_lr], lr=float(self.lr_lr))
        self.hard_ = torch.from_numpy(class_major_labels(ipc, k)).to(device)
        if self.learn_labels:
            # logits whose softmax puts ~90 % on the true class: learnable but informative at start
            logits = F.one_hot(self.hard_, k).float() * math.log(9.0 * (k - 1))
            logits.requires_grad_(True)
            self.tensors["label_logits"] = logits
            self.optimizers["labels"] = torch.optim.Adam([logits], lr=float(self.label_lr))
        self.generators.update(
            sample=torch.Generator().manual_seed(int(self.seed)),
            augment=torch.Generator().manual_seed(1_000_003 + int(self.seed)),
        )

    # one step -----------------------------------------------------------------------------------
    def _forward(self, flat: torch.Tensor, xb: torch.Tensor) -> torch.Tensor:
        params = {n: t.view(s) for n, t, s in zip(self.names_, flat.split(self.sizes_), self.shapes_)}
        return functional_call(self.net_, params, (xb,))

    def _targets(self) -> torch.Tensor:
        if self.learn_labels:
            return torch.softmax(self.tensors["label_logits"], dim=1)
        return self.hard_

    def _step(self, step: int) -> dict[str, Any]:
        gen = self.generators["sample"]
        expert = int(torch.randint(self.buffer_.n_experts, (1,), generator=gen))
        start = int(torch.randint(self.max_start_ + 1, (1,), generator=gen))
        trajectory = self.buffer_.trajectories[expert]
        theta_start, theta_target = trajectory[start], trajectory[start + self.m_]
        features = self.tensors["features"]
        syn_lr = self.tensors["log_syn_lr"].exp()
        targets = self._targets()

        student = theta_start.clone().requires_grad_(True)
        n, chunks = len(features), []
        for _ in range(self.syn_steps_):
            if not chunks:  # successive random permutations of the coreset, as MTT draws minibatches
                chunks = list(torch.randperm(n, generator=gen).split(self.batch_))
            idx = chunks.pop(0).to(self.device_)
            xb = features[idx]
            if self.augment:
                xb = augment_batch(xb, self.generators["augment"])
            ce = classification_loss(self._forward(student, xb), targets[idx])
            (grad,) = torch.autograd.grad(ce, student, create_graph=True)
            student = student - syn_lr * grad
        loss = (student - theta_target).pow(2).sum() / (theta_start - theta_target).pow(2).sum()

        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        value = float(loss.detach())
        if math.isfinite(value):
            loss.backward()
            for opt in self.optimizers.values():
                opt.step()
        # a non-finite loss (a step size that blew up) is skipped rather than poisoning the coreset
        return {
            "loss": value if math.isfinite(value) else None,
            "syn_lr": float(syn_lr.detach()),
            "expert": expert,
            "start_epoch": start,
        }

    # result -------------------------------------------------------------------------------------
    def _finish(self) -> None:
        self.features_ = self.tensors["features"].detach().cpu().numpy().astype(np.float32)
        if self.learn_labels:
            self.labels_ = self._targets().detach().cpu().numpy().astype(np.float32)
        else:
            self.labels_ = self.hard_.cpu().numpy().astype(np.int64)
        self.syn_lr_ = float(self.tensors["log_syn_lr"].detach().exp())

    def summary(self) -> dict[str, Any]:
        out = super().summary()
        out.update(best_step=out.get("steps"), syn_lr=round(getattr(self, "syn_lr_", float("nan")), 6))
        if hasattr(self, "buffer_"):
            out["expert_buffer"] = describe(self.buffer_)
        return out
