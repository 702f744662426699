"""The one interface every distiller and selector follows, in the spirit of scikit-learn.

Why this shape: the CLI, the benchmarks and the tests treat every method alike. All
hyper-parameters live in the constructor (so ``get_params()`` can write them into the coreset
artifact and a run can be reproduced from that record alone), ``fit`` takes normalised training
features and integer labels and sets the fitted attributes with a trailing underscore:

* ``features_``: (ipc * K, C, F, T) float32, class-major (all of class 0, then class 1, ...);
* ``labels_``: (ipc * K,) int64, or (ipc * K, K) float32 soft labels for methods that learn them;
* ``history_``: list of dicts (at least ``step``, ``loss`` and ``elapsed``), one per logged step.

Input validation lives here, once, so every method refuses the same bad inputs with the same
one-line ``KitError`` messages. Parameters are declared per class (``PARAMS``: name -> ``Param``,
merged along the class hierarchy, default from the constructor) and checked by
``validate_params``, which ``fit`` calls first. Why in ``fit`` and not the constructor (as
scikit-learn does): the constructor stays a plain record of what was asked, so ``get_params`` /
``set_params`` round-trip exactly and a value changed by ``set_params`` is checked like any other;
callers that want the error before loading data (the CLI) call ``validate_params()`` themselves.
"""

from __future__ import annotations

import inspect
import time
from abc import ABC, abstractmethod
from dataclasses import replace
from typing import Any, ClassVar, Sequence

import numpy as np

from deploy.runtime.errors import KitError

from .params import Param, positive_int


def class_name(index: int, class_names: Sequence[str] | None) -> str:
    """How an error message names class ``index``: its name when known, else its index."""
    if class_names is not None and 0 <= index < len(class_names):
        return f"'{class_names[index]}' (index {index})"
    return f"{index}"


def validate_training_set(
    x: Any,
    y: Any,
    n_classes: int | None = None,
    ipc: int | None = None,
    class_names: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Check and convert a training set; returns (x float32 (N,C,F,T), y int64 (N,), n_classes).

    Refuses, with a message naming the problem: a non-4-D ``x``, non-integer or out-of-range
    labels, ``x``/``y`` length mismatch, a class without samples, and an ``ipc`` larger than the
    smallest class (selecting or initialising from real samples needs ``ipc`` distinct samples).
    """
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim != 4:
        raise KitError(f"training features must be shaped (N, C, F, T), got shape {x.shape}")
    if y.ndim != 1:
        raise KitError(f"training labels must be a 1-D array of class indices, got shape {y.shape}")
    if len(x) != len(y):
        raise KitError(f"training set has {len(x)} feature maps but {len(y)} labels")
    if len(y) == 0:
        raise KitError("training set is empty")
    if not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(np.equal(np.mod(y, 1), 0)):
            y = y.astype(np.int64)
        else:
            raise KitError(f"training labels must be integer class indices, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if not np.all(np.isfinite(x)):
        raise KitError("training features contain NaN or infinite values")
    if y.min() < 0:
        raise KitError(f"training labels must be >= 0, found {int(y.min())}")
    if n_classes is None:
        n_classes = int(y.max()) + 1 if class_names is None else len(class_names)
    n_classes = int(n_classes)
    if y.max() >= n_classes:
        raise KitError(f"training label {int(y.max())} is out of range for {n_classes} classes")
    counts = np.bincount(y, minlength=n_classes)
    empty = np.flatnonzero(counts == 0)
    if len(empty):
        raise KitError(f"class {class_name(int(empty[0]), class_names)} has no training samples")
    if ipc is not None:
        if int(ipc) != ipc or ipc < 1:
            raise KitError(f"--ipc must be a positive integer, got {ipc}")
        smallest = int(np.argmin(counts))
        if ipc > counts[smallest]:
            raise KitError(
                f"--ipc {ipc} is larger than class {class_name(smallest, class_names)}, "
                f"which has only {int(counts[smallest])} training samples"
            )
    return np.ascontiguousarray(x, dtype=np.float32), y, n_classes


class Distiller(ABC):
    """Base class: constructor = hyper-parameters, ``fit`` = the work, ``*_`` = the result.

    Subclasses call ``super().__init__(ipc=ipc, seed=seed)``, store every other constructor
    argument under the same attribute name (that is what ``get_params`` reads) and implement
    ``_fit(x, y, n_classes)``, which must set ``features_``, ``labels_`` and ``history_``.
    """

    #: registry name, written into the coreset artifact as ``method``
    method: str = ""
    #: declared parameters of this class (a subclass lists only its own; ``param_specs`` merges)
    PARAMS: ClassVar[dict[str, Param]] = {
        "ipc": positive_int("samples per class in the coreset"),
        # numpy's and torch's seeding accept more, but derived seeds (seed * 1_000_003 + ...) must fit in 64 bits
        "seed": Param("int", "seed of selection, initialisation and random networks", low=0, high=2**32 - 1),
    }

    def __init__(self, ipc: int = 1, seed: int = 0) -> None:
        self.ipc = ipc
        self.seed = seed

    # Parameters ---------------------------------------------------------------------------------
    @classmethod
    def param_specs(cls) -> dict[str, Param]:
        """Every constructor parameter's declaration, in constructor order, default filled in.

        A parameter without a declaration is a bug in the class (the common checks test for it).
        """
        declared: dict[str, Param] = {}
        for klass in reversed(cls.__mro__):
            declared.update(vars(klass).get("PARAMS", {}))
        signature = inspect.signature(cls.__init__).parameters
        missing = [name for name in cls.param_names() if name not in declared]
        if missing:
            raise TypeError(f"{cls.__name__} declares no Param for {', '.join(missing)}")
        return {name: replace(declared[name], default=signature[name].default) for name in cls.param_names()}

    def validate_params(self) -> None:
        """One-line ``KitError`` naming the method and the parameter for the first bad value.

        Declared constraints first (type, range, choices), then the class's ``_check_params`` for
        what one declaration cannot say (combinations, architecture names, augmentation lists).
        """
        specs = self.param_specs()
        for name, value in self.get_params().items():
            specs[name].check(self.method, name, value)
        self._check_params()

    def _check_params(self) -> None:  # noqa: B027 (an optional hook, not abstract)
        """Checks across parameters, after the declared ones passed (one-line KitErrors)."""

    @classmethod
    def param_names(cls) -> list[str]:
        """Constructor argument names, i.e. the hyper-parameters (as scikit-learn derives them)."""
        sig = inspect.signature(cls.__init__)
        return [
            name
            for name, p in sig.parameters.items()
            if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]

    def get_params(self) -> dict[str, Any]:
        """All hyper-parameters as a JSON-friendly dict (what a coreset records as ``params``)."""
        return {name: getattr(self, name) for name in self.param_names()}

    def set_params(self, **params: Any) -> "Distiller":
        """Change parameters (all or none: an unknown name changes nothing); checked at ``fit``."""
        valid = set(self.param_names())
        unknown = sorted(set(params) - valid)
        if unknown:
            raise KitError(f"{self.method}: unknown parameter '{unknown[0]}' (valid: {', '.join(sorted(valid))})")
        for name, value in params.items():
            setattr(self, name, value)
        return self

    def resolved_params(self) -> dict[str, Any]:
        """The parameters as the fit used them ("auto" values resolved); the declared ones by default."""
        return self.get_params()

    def summary(self) -> dict[str, Any]:
        """Figures of the finished fit worth recording beside the coreset (steps, losses, ...)."""
        return {}

    def selected_indices(self) -> np.ndarray | None:
        """Training rows the result was taken from (selectors), or None for synthetic samples."""
        indices = getattr(self, "indices_", None)
        return None if indices is None else np.asarray(indices, dtype=np.int64)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # Fitting ------------------------------------------------------------------------------------
    def fit(self, x: Any, y: Any, n_classes: int | None = None) -> "Distiller":
        """Distil (or select) ``ipc`` feature maps per class from normalised training data."""
        self.validate_params()
        x, y, n_classes = validate_training_set(x, y, n_classes, self.ipc)
        self.n_classes_ = n_classes
        self.history_: list[dict[str, Any]] = []
        started = time.perf_counter()
        self._fit(x, y, n_classes)
        self.fit_time_s_ = time.perf_counter() - started
        self._check_result(x.shape[1:], n_classes)
        return self

    @abstractmethod
    def _fit(self, x: np.ndarray, y: np.ndarray, n_classes: int) -> None:
        """Set ``features_``, ``labels_`` and ``history_``; inputs are already validated."""

    def _check_result(self, sample_shape: tuple[int, ...], n_classes: int) -> None:
        """Every method must honour the output contract; a violation is a bug, not a user error."""
        n = self.ipc * n_classes
        assert self.features_.shape == (n, *sample_shape), (self.features_.shape, n, sample_shape)
        assert self.features_.dtype == np.float32
        if self.labels_.ndim == 1:
            assert self.labels_.shape == (n,) and self.labels_.dtype == np.int64
        else:
            assert self.labels_.shape == (n, n_classes) and self.labels_.dtype == np.float32

    @property
    def hard_labels_(self) -> np.ndarray:
        """Class index per coreset sample, for hard or soft ``labels_`` alike."""
        return self.labels_.argmax(axis=1) if self.labels_.ndim == 2 else self.labels_


def class_major_labels(ipc: int, n_classes: int) -> np.ndarray:
    """Labels of a class-major coreset: [0]*ipc + [1]*ipc + ... as int64."""
    return np.repeat(np.arange(n_classes, dtype=np.int64), ipc)
