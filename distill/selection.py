"""Coreset selection baselines: random, herding and k-center, all per class and seeded.

Why these three: random real samples are the baseline every distillation method must beat;
herding (Welling 2009, as used by iCaRL) picks samples whose running mean tracks the class
mean, i.e. it matches the class's first moment in an embedding; k-center (Sener & Savarese
2018) covers the class, bounding the distance of every training sample to its nearest pick.

Embedding for herding and k-center (``embedding``):

* ``"convnet"`` (default): a fixed random ConvNet (no norm, He-Gaussian, seeded) followed by
  average pooling. Its features are the same random-feature map RFAD's kernel is built from, so
  distances reflect what a ConvNet trained on the coreset is sensitive to, and pooling makes
  them tolerant to the small time shifts that separate two utterances of the same word.
* ``"flat"``: the normalised feature maps flattened; no torch work, but distances are
  dominated by where in the 1-s window the word happens to sit.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from deploy.runtime.errors import KitError

from .base import Distiller, class_major_labels
from .params import choice, positive_int
from .random_features import RandomConvNets

EMBEDDINGS = ("convnet", "flat")


def embed(
    x: np.ndarray, embedding: str = "convnet", seed: int = 0, width: int = 64, batch_size: int = 512
) -> np.ndarray:
    """(N, D) float64 embedding of feature maps (N, C, F, T) used for herding and k-center."""
    if embedding == "flat":
        return x.reshape(len(x), -1).astype(np.float64)
    if embedding != "convnet":
        raise KitError(f"unknown embedding '{embedding}' (choose from {', '.join(EMBEDDINGS)})")
    nets = RandomConvNets(tuple(x.shape[1:]), n_models=1, width=width, depth=3)
    weights = nets.draw(torch.Generator().manual_seed(int(seed)))
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            out.append(nets.features(torch.from_numpy(x[i : i + batch_size]), weights).double().numpy())
    return np.concatenate(out)


def herding(emb: np.ndarray, k: int) -> np.ndarray:
    """Greedy mean matching: indices of ``k`` rows whose running mean stays closest to the mean.

    At step t pick argmin_i || mu - (s + e_i) / t ||, where s is the sum of the rows picked so
    far; a row is never picked twice.
    """
    mu = emb.mean(axis=0)
    chosen: list[int] = []
    available = np.ones(len(emb), dtype=bool)
    total = np.zeros_like(mu)
    for t in range(1, k + 1):
        dist = np.linalg.norm(mu[None, :] - (total[None, :] + emb) / t, axis=1)
        dist[~available] = np.inf
        i = int(np.argmin(dist))
        chosen.append(i)
        available[i] = False
        total += emb[i]
    return np.asarray(chosen, dtype=np.int64)


def k_center(emb: np.ndarray, k: int) -> np.ndarray:
    """K-center greedy: start at the row closest to the mean, then repeatedly add the row farthest
    from everything picked so far (a 2-approximation of the minimal coverage radius)."""
    first = int(np.argmin(np.linalg.norm(emb - emb.mean(axis=0), axis=1)))
    chosen = [first]
    min_dist = np.linalg.norm(emb - emb[first], axis=1)
    for _ in range(1, k):
        i = int(np.argmax(min_dist))
        chosen.append(i)
        min_dist = np.minimum(min_dist, np.linalg.norm(emb - emb[i], axis=1))
    return np.asarray(chosen, dtype=np.int64)


def mean_error(emb: np.ndarray, picked: np.ndarray) -> float:
    """|| mean(emb) - mean(emb[picked]) ||: what herding minimises."""
    return float(np.linalg.norm(emb.mean(axis=0) - emb[picked].mean(axis=0)))


def coverage_radius(emb: np.ndarray, picked: np.ndarray) -> float:
    """max_i min_j || emb_i - emb_picked_j ||: what k-center minimises."""
    d = np.linalg.norm(emb[:, None, :] - emb[None, picked, :], axis=2)
    return float(d.min(axis=1).max())


class Selector(Distiller):
    """A distiller that picks real training samples; ``indices_`` records which ones."""

    def _fit(self, x: np.ndarray, y: np.ndarray, n_classes: int) -> None:
        started = time.perf_counter()
        emb = self._embed(x)
        picked = []
        for c in range(n_classes):
            members = np.flatnonzero(y == c)
            local = self._select(emb[members] if emb is not None else None, len(members), c)
            picked.append(members[local])
        self.indices_ = np.concatenate(picked).astype(np.int64)
        self.features_ = x[self.indices_].astype(np.float32, copy=True)
        self.labels_ = class_major_labels(self.ipc, n_classes)
        self.history_ = [{"step": 0, "loss": None, "elapsed": time.perf_counter() - started}]

    def _embed(self, x: np.ndarray) -> np.ndarray | None:
        return None

    def _select(self, emb: np.ndarray | None, n: int, c: int) -> np.ndarray:
        raise NotImplementedError


class RandomSelector(Selector):
    """``ipc`` real samples per class drawn uniformly without replacement (seeded)."""

    method = "random"

    def __init__(self, ipc: int = 1, seed: int = 0) -> None:
        super().__init__(ipc=ipc, seed=seed)

    def _fit(self, x: np.ndarray, y: np.ndarray, n_classes: int) -> None:
        self._rng = np.random.default_rng(self.seed)
        super()._fit(x, y, n_classes)

    def _select(self, emb: np.ndarray | None, n: int, c: int) -> np.ndarray:
        return np.sort(self._rng.choice(n, size=self.ipc, replace=False))


class _EmbeddingSelector(Selector):
    PARAMS = {
        "embedding": choice(
            "space the picks are made in: a random ConvNet's pooled features or the raw maps", EMBEDDINGS
        ),
        "width": positive_int("channels of the random ConvNet (embedding=convnet)"),
    }

    def __init__(self, ipc: int = 1, seed: int = 0, embedding: str = "convnet", width: int = 64) -> None:
        super().__init__(ipc=ipc, seed=seed)
        self.embedding = embedding
        self.width = width

    def _embed(self, x: np.ndarray) -> np.ndarray:
        self.embedding_ = embed(x, self.embedding, seed=self.seed, width=self.width)
        return self.embedding_


class HerdingSelector(_EmbeddingSelector):
    """Per class, greedy mean matching in the embedding (see the module docstring)."""

    method = "herding"

    def _select(self, emb: np.ndarray | None, n: int, c: int) -> np.ndarray:
        return herding(emb, self.ipc)


class KCenterSelector(_EmbeddingSelector):
    """Per class, k-center greedy in the embedding, initialised at the sample nearest the mean."""

    method = "kcenter"

    def _select(self, emb: np.ndarray | None, n: int, c: int) -> np.ndarray:
        return k_center(emb, self.ipc)
