"""Classifier heads trained on the device: numpy only, full batch, deterministic.

Why only the head: on the device the backbone is a frozen ONNX/TFLite graph, and fine-tuning
means refitting ``logits = embedding @ W.T + b`` on a few new clips plus the bundle's replay
memory. That problem is small (~10 classes x a few hundred embedding dimensions x ~150
samples), so a full-batch L-BFGS in numpy converges in milliseconds with no learning rate to
tune and, being full batch with no sampling, gives the same head for the same data every time.

The objective of :class:`SoftmaxHead` is the sample-weighted mean cross-entropy plus an L2 pull
towards an *anchor*::

    J(W, b) = sum_i w_i CE(softmax(W z_i + b), y_i) / sum_i w_i + sum_k l2_k / 2 * ||W_k - A_k||^2

With ``anchor="init"`` and a warm start from the bundle's head, ``A_k`` is the old head's row for
each old class (pulled with ``l2``) and zero for classes the warm start appends (decayed with
``l2_new``). This is L2-SP (Li et al., 2018): the solution stays close to the head that was
trained on all the old data, which the few replay samples alone could not re-derive, so old
classes forget less, while the new row is free to fit. ``anchor="zero"`` is ordinary weight
decay; the warm start then only speeds convergence. Biases are not regularised.

Class balancing (``class_weight="balanced"``) rescales the sample weights so that every class
carries the same total weight (scikit-learn's ``n / (K * n_class)`` when all weights are 1),
whatever mix of new clips, augmented copies and replay samples is given. Weights rather than
oversampling: with a full-batch objective they are exactly equivalent to oversampling in
expectation, without randomness or duplicated memory. ``bench/finetune.py`` measures balanced
against unweighted classes.

:class:`MLPHead` (one ReLU hidden layer) is offered for comparison; it cannot be expressed as
the bundle's linear head, so it is for measurement and for applications that run it themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .classify import softmax
from .errors import KitError

CLASS_WEIGHTS = ("balanced", "none")
ANCHORS = ("init", "zero")


# L-BFGS ----------------------------------------------------------------------------------------
@dataclass
class LbfgsResult:
    """Where the optimiser stopped and why (recorded in fine-tune history)."""

    x: np.ndarray
    f: float
    iterations: int
    evaluations: int
    converged: bool
    grad_norm: float


def lbfgs(
    fun: Callable[[np.ndarray], tuple[float, np.ndarray]],
    x0: np.ndarray,
    *,
    max_iter: int = 300,
    memory: int = 10,
    gtol: float = 1e-5,
    ftol: float = 1e-10,
) -> LbfgsResult:
    """Minimise a smooth ``fun(x) -> (f, grad)`` with L-BFGS and a backtracking Armijo search.

    Why written out instead of scipy: the device runtime has numpy only. The two-loop recursion
    (Nocedal & Wright, Alg. 7.4) with the usual ``s.y / y.y`` initial scaling; pairs that break
    the curvature condition are skipped, so the inverse-Hessian estimate stays positive definite.
    Stops when the max-norm of the gradient is below ``gtol`` or the relative decrease of ``f``
    falls below ``ftol``.
    """
    x = np.array(x0, dtype=np.float64)
    f, g = fun(x)
    evaluations = 1
    s_list: list[np.ndarray] = []
    y_list: list[np.ndarray] = []
    converged = False
    iteration = 0
    for iteration in range(1, max_iter + 1):
        if np.abs(g).max() < gtol:
            converged = True
            iteration -= 1
            break
        # two-loop recursion: d = -H g
        q = g.copy()
        alphas = []
        for s, y in zip(reversed(s_list), reversed(y_list)):
            rho = 1.0 / float(y @ s)
            a = rho * float(s @ q)
            alphas.append((rho, a))
            q -= a * y
        if s_list:
            q *= float(s_list[-1] @ y_list[-1]) / float(y_list[-1] @ y_list[-1])
        else:
            q /= max(1.0, float(np.linalg.norm(g)))  # first step: a unit-length move at most
        for (s, y), (rho, a) in zip(zip(s_list, y_list), reversed(alphas)):
            b = rho * float(y @ q)
            q += (a - b) * s
        d = -q
        slope = float(g @ d)
        if slope >= 0:  # not a descent direction (numerical trouble): restart from steepest descent
            s_list.clear()
            y_list.clear()
            d = -g / max(1.0, float(np.linalg.norm(g)))
            slope = float(g @ d)
        step = 1.0
        while True:
            x_new = x + step * d
            f_new, g_new = fun(x_new)
            evaluations += 1
            if f_new <= f + 1e-4 * step * slope or step < 1e-10:
                break
            step *= 0.5
        s, y = x_new - x, g_new - g
        if float(s @ y) > 1e-10 * float(y @ y):
            s_list.append(s)
            y_list.append(y)
            if len(s_list) > memory:
                s_list.pop(0)
                y_list.pop(0)
        decrease = f - f_new
        x, f, g = x_new, f_new, g_new
        if decrease <= ftol * max(1.0, abs(f)) or step < 1e-10:
            converged = True
            break
    return LbfgsResult(
        x=x,
        f=float(f),
        iterations=iteration,
        evaluations=evaluations,
        converged=converged,
        grad_norm=float(np.abs(g).max()),
    )


# Shared helpers ----------------------------------------------------------------------------------
def _check_xy(
    z: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    z = np.asarray(z, dtype=np.float64)
    y = np.asarray(y)
    if z.ndim != 2 or len(z) == 0:
        raise KitError(f"head training needs embeddings shaped (N, D) with N > 0, got {z.shape}")
    if y.shape != (len(z),) or not np.issubdtype(y.dtype, np.integer):
        raise KitError(f"head training needs one integer label per embedding, got labels of shape {y.shape}")
    if not np.isfinite(z).all():
        raise KitError("head training: embeddings contain NaN or infinity")
    if sample_weight is None:
        w = np.ones(len(z))
    else:
        w = np.asarray(sample_weight, dtype=np.float64)
        if w.shape != (len(z),) or (w < 0).any() or w.sum() <= 0:
            raise KitError("sample_weight must be one non-negative weight per embedding, not all zero")
    return z, y.astype(np.int64), w


def balanced_weights(y: np.ndarray, n_classes: int, sample_weight: np.ndarray | None = None) -> np.ndarray:
    """Per-sample factors that give every class present the same total weight.

    Without ``sample_weight`` this is scikit-learn's ``n / (K_present * n_class)``; with it, the
    classes' *weight sums* are equalised (so down-weighted augmented copies count as such).
    """
    y = np.asarray(y, dtype=np.int64)
    w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    sums = np.bincount(y, weights=w, minlength=n_classes)
    present = int((sums > 0).sum())
    return w.sum() / (present * np.where(sums > 0, sums, 1.0)[y])


def _one_hot(y: np.ndarray, n_classes: int) -> np.ndarray:
    out = np.zeros((len(y), n_classes))
    out[np.arange(len(y)), y] = 1.0
    return out


class _Head:
    """What both heads share: the constructor/fit/predict contract of scikit-learn classifiers."""

    n_classes: int | None
    class_weight: str
    classes_: np.ndarray

    def _resolve(self, y: np.ndarray, w: np.ndarray, min_classes: int) -> tuple[int, np.ndarray]:
        if self.class_weight not in CLASS_WEIGHTS:
            raise KitError(f"class_weight must be one of {', '.join(CLASS_WEIGHTS)}, not '{self.class_weight}'")
        k = max(int(self.n_classes or 0), int(y.max()) + 1, min_classes)
        if y.min() < 0:
            raise KitError("head training: labels must be non-negative class indices")
        if self.class_weight == "balanced":
            w = w * balanced_weights(y, k, w)
        self.classes_ = np.arange(k)
        return k, w / w.sum()

    def decision_function(self, z: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict_proba(self, z: np.ndarray) -> np.ndarray:
        """Class probabilities (N, K)."""
        return softmax(self.decision_function(z))

    def predict(self, z: np.ndarray) -> np.ndarray:
        """Most probable class index per row."""
        return np.argmax(self.decision_function(z), axis=1)

    def score(self, z: np.ndarray, y: np.ndarray) -> float:
        """Accuracy on (z, y), as scikit-learn's ``score``."""
        return float(np.mean(self.predict(z) == np.asarray(y)))


# Softmax regression -----------------------------------------------------------------------------
class SoftmaxHead(_Head):
    """Multinomial logistic regression on embeddings, L2-anchored, fitted by full-batch L-BFGS.

    ``warm_start=(coef (K0, D), intercept (K0,))`` starts from an existing head; classes beyond
    K0 get zero rows and the old classes' mean bias. ``l2`` pulls rows (towards the anchor,
    see the module docstring), ``l2_new`` (default: ``l2``) the rows beyond K0. ``n_classes``
    fixes K (else the largest label + 1, at least K0). ``seed`` is accepted for a uniform
    interface; the fit itself uses no randomness.
    """

    def __init__(
        self,
        l2: float = 1e-2,
        *,
        l2_new: float | None = None,
        anchor: str = "init",
        class_weight: str = "balanced",
        warm_start: tuple[np.ndarray, np.ndarray] | None = None,
        n_classes: int | None = None,
        max_iter: int = 500,
        tol: float = 1e-5,
        seed: int = 0,
    ) -> None:
        self.l2 = l2
        self.l2_new = l2_new
        self.anchor = anchor
        self.class_weight = class_weight
        self.warm_start = warm_start
        self.n_classes = n_classes
        self.max_iter = max_iter
        self.tol = tol
        self.seed = seed

    def get_params(self) -> dict:
        """Hyper-parameters as JSON-ready values (recorded in a bundle's history)."""
        return {
            "head": "softmax",
            "l2": self.l2,
            "l2_new": self.l2_new,
            "anchor": self.anchor,
            "class_weight": self.class_weight,
            "warm_start": self.warm_start is not None,
            "max_iter": self.max_iter,
            "tol": self.tol,
            "seed": self.seed,
        }

    def _initial(self, k: int, d: int) -> tuple[np.ndarray, np.ndarray]:
        coef, intercept = np.zeros((k, d)), np.zeros(k)
        if self.warm_start is not None:
            w0 = np.asarray(self.warm_start[0], dtype=np.float64)
            b0 = np.asarray(self.warm_start[1], dtype=np.float64).reshape(-1)
            if w0.ndim != 2 or w0.shape[1] != d or len(b0) != len(w0):
                raise KitError(
                    f"warm start head of shape {w0.shape} / {b0.shape} does not fit embeddings of dimension {d}"
                )
            if len(w0) > k:
                raise KitError(f"warm start head has {len(w0)} classes, more than the {k} being trained")
            coef[: len(w0)], intercept[: len(w0)] = w0, b0
            # appended classes start with the old classes' mean bias, so they neither dominate nor vanish
            intercept[len(w0) :] = b0.mean() if len(b0) else 0.0
        return coef, intercept

    def fit(self, z: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> "SoftmaxHead":
        """Fit on embeddings ``z`` (N, D) and class indices ``y`` (N,); returns self."""
        if self.anchor not in ANCHORS:
            raise KitError(f"anchor must be one of {', '.join(ANCHORS)}, not '{self.anchor}'")
        if self.l2 < 0:
            raise KitError(f"l2 must be non-negative, got {self.l2}")
        z, y, w = _check_xy(z, y, sample_weight)
        k0 = len(self.warm_start[0]) if self.warm_start is not None else 0
        k, w = self._resolve(y, w, k0)
        d = z.shape[1]
        coef0, intercept0 = self._initial(k, d)
        anchor_w = coef0 if self.anchor == "init" else np.zeros_like(coef0)
        targets = _one_hot(y, k)
        lam = np.full((k, 1), float(self.l2))
        if self.l2_new is not None:
            lam[k0:] = float(self.l2_new)
        # Optimise on centred embeddings: W z + b = W (z - mu) + (b + W mu) is the same objective
        # (the penalty is on W only), but post-ReLU embeddings are all positive, which couples W
        # and b and made L-BFGS take ~4x more iterations.
        mu = w @ z
        zc = z - mu

        def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
            W, b = theta[: k * d].reshape(k, d), theta[k * d :]
            logits = zc @ W.T + b
            logits -= logits.max(axis=1, keepdims=True)
            log_norm = np.log(np.exp(logits).sum(axis=1))
            log_p = logits - log_norm[:, None]
            diff = W - anchor_w
            f = -float(w @ log_p[np.arange(len(y)), y]) + 0.5 * float((lam * diff * diff).sum())
            residual = (np.exp(log_p) - targets) * w[:, None]
            grad_w = residual.T @ zc + lam * diff
            grad_b = residual.sum(axis=0)
            return f, np.concatenate([grad_w.ravel(), grad_b])

        theta0 = np.concatenate([coef0.ravel(), intercept0 + coef0 @ mu])
        result = lbfgs(objective, theta0, max_iter=self.max_iter, gtol=self.tol)
        coef = result.x[: k * d].reshape(k, d)
        self.coef_ = coef.astype(np.float32)
        self.intercept_ = (result.x[k * d :] - coef @ mu).astype(np.float32)
        self.n_iter_ = result.iterations
        self.loss_ = result.f
        self.converged_ = result.converged
        return self

    def decision_function(self, z: np.ndarray) -> np.ndarray:
        """Logits (N, K) = z @ coef_.T + intercept_."""
        if not hasattr(self, "coef_"):
            raise KitError("head is not fitted yet; call fit() first")
        return np.asarray(z, dtype=np.float32) @ self.coef_.T + self.intercept_


# One-hidden-layer MLP -----------------------------------------------------------------------------
class MLPHead(_Head):
    """ReLU MLP ``z -> hidden -> K`` with L2 weight decay, fitted by full-batch L-BFGS.

    Deterministic for a given ``seed`` (He-normal initialisation drawn from
    ``np.random.default_rng(seed)``). ``warm_start`` on this head initialises nothing but is
    accepted so callers can swap heads; the linear head's knowledge cannot be mapped into it.
    Inputs are standardised with statistics of the training embeddings (stored in ``z_mean_`` and
    ``z_scale_``), which the non-linear layer needs and the linear head does not.
    """

    def __init__(
        self,
        hidden: int = 64,
        l2: float = 1e-3,
        *,
        class_weight: str = "balanced",
        warm_start: tuple[np.ndarray, np.ndarray] | None = None,
        n_classes: int | None = None,
        max_iter: int = 300,
        tol: float = 1e-5,
        seed: int = 0,
    ) -> None:
        self.hidden = hidden
        self.l2 = l2
        self.class_weight = class_weight
        self.warm_start = warm_start
        self.n_classes = n_classes
        self.max_iter = max_iter
        self.tol = tol
        self.seed = seed

    def get_params(self) -> dict:
        return {
            "head": "mlp",
            "hidden": self.hidden,
            "l2": self.l2,
            "class_weight": self.class_weight,
            "max_iter": self.max_iter,
            "tol": self.tol,
            "seed": self.seed,
        }

    def fit(self, z: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> "MLPHead":
        """Fit on embeddings ``z`` (N, D) and class indices ``y`` (N,); returns self."""
        if self.hidden < 1:
            raise KitError(f"MLP hidden size must be at least 1, got {self.hidden}")
        z, y, w = _check_xy(z, y, sample_weight)
        k0 = len(self.warm_start[0]) if self.warm_start is not None else 0
        k, w = self._resolve(y, w, k0)
        self.z_mean_ = z.mean(axis=0).astype(np.float32)
        self.z_scale_ = np.maximum(z.std(axis=0), 1e-6).astype(np.float32)
        x = (z - self.z_mean_) / self.z_scale_
        n, d, h = len(x), x.shape[1], int(self.hidden)
        rng = np.random.default_rng(self.seed)
        w1 = rng.standard_normal((h, d)) * np.sqrt(2.0 / d)
        w2 = rng.standard_normal((k, h)) * np.sqrt(1.0 / h)
        theta0 = np.concatenate([w1.ravel(), np.zeros(h), w2.ravel(), np.zeros(k)])
        targets = _one_hot(y, k)
        lam = float(self.l2)
        cuts = np.cumsum([h * d, h, k * h])

        def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
            a, b1, c, b2 = np.split(theta, cuts)
            W1, W2 = a.reshape(h, d), c.reshape(k, h)
            pre = x @ W1.T + b1
            act = np.maximum(pre, 0.0)
            logits = act @ W2.T + b2
            logits -= logits.max(axis=1, keepdims=True)
            log_p = logits - np.log(np.exp(logits).sum(axis=1))[:, None]
            f = -float(w @ log_p[np.arange(n), y]) + 0.5 * lam * (float((W1 * W1).sum()) + float((W2 * W2).sum()))
            r = (np.exp(log_p) - targets) * w[:, None]
            g_w2 = r.T @ act + lam * W2
            g_b2 = r.sum(axis=0)
            back = (r @ W2) * (pre > 0)
            g_w1 = back.T @ x + lam * W1
            g_b1 = back.sum(axis=0)
            return f, np.concatenate([g_w1.ravel(), g_b1, g_w2.ravel(), g_b2])

        result = lbfgs(objective, theta0, max_iter=self.max_iter, gtol=self.tol)
        a, b1, c, b2 = np.split(result.x, cuts)
        self.hidden_coef_ = a.reshape(h, d).astype(np.float32)
        self.hidden_intercept_ = b1.astype(np.float32)
        self.coef_ = c.reshape(k, h).astype(np.float32)
        self.intercept_ = b2.astype(np.float32)
        self.n_iter_ = result.iterations
        self.loss_ = result.f
        self.converged_ = result.converged
        return self

    def decision_function(self, z: np.ndarray) -> np.ndarray:
        """Logits (N, K)."""
        if not hasattr(self, "coef_"):
            raise KitError("head is not fitted yet; call fit() first")
        x = (np.asarray(z, dtype=np.float32) - self.z_mean_) / self.z_scale_
        act = np.maximum(x @ self.hidden_coef_.T + self.hidden_intercept_, 0.0)
        return act @ self.coef_.T + self.intercept_


HEADS = {"softmax": SoftmaxHead, "mlp": MLPHead}


def make_head(kind: str, **params) -> SoftmaxHead | MLPHead:
    """A configured, unfitted head of kind ``softmax`` or ``mlp`` (the CLI's ``--head``)."""
    cls = HEADS.get(kind)
    if cls is None:
        raise KitError(f"--head: unknown head '{kind}' (choose from {', '.join(HEADS)})")
    return cls(**params)
