"""Name -> distiller class, and the one factory the CLI and the benchmarks use.

Why a factory: ``kit distill --method NAME`` and the benchmark grids name methods as strings;
unknown names and unknown parameters become one-line ``KitError``s listing what is valid,
instead of a ``KeyError`` or ``TypeError`` traceback.
"""
from __future__ import annotations

from typing import Any

from deploy.runtime.errors import KitError

from .base import Distiller
from .dm import DM
from .gradient_matching import DC, DSA
from .mtt import MTT
from .rfad import RFAD
from .selection import HerdingSelector, KCenterSelector, RandomSelector

METHODS: dict[str, type[Distiller]] = {
    "random": RandomSelector,
    "herding": HerdingSelector,
    "kcenter": KCenterSelector,
    "rfad": RFAD,
    "dc": DC,
    "dsa": DSA,
    "dm": DM,
    "mtt": MTT,
}


def make_distiller(method: str, ipc: int, seed: int = 0, **params: Any) -> Distiller:
    """A configured, unfitted distiller of kind ``method``."""
    cls = METHODS.get(method)
    if cls is None:
        raise KitError(f"unknown distillation method '{method}' (choose from {', '.join(METHODS)})")
    valid = set(cls.param_names()) - {"ipc", "seed"}
    unknown = sorted(set(params) - valid)
    if unknown:
        raise KitError(f"method '{method}' has no parameter {', '.join(unknown)} (valid: {', '.join(sorted(valid))})")
    return cls(ipc=ipc, seed=seed, **params)
