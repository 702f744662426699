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


def parameter_table(skip: tuple[str, ...] = ("ipc", "seed")) -> str:
    """Every method's declared parameters as plain text (``kit distill --help`` prints it).

    Why grouped: the iterative methods share most of their loop parameters and DSA shares DC's,
    so a row that several methods declare identically (name, type, default, help) is printed once
    under a heading naming them all, instead of five times. Built from ``Param`` declarations
    only, so the help can never disagree with what ``-p KEY=VALUE`` accepts.
    """
    groups: dict[str, list[str]] = {}  # row -> methods declaring it, in registry order
    for method, cls in METHODS.items():
        for name, spec in cls.param_specs().items():
            if name not in skip:
                row = f"  {name} ({spec.describe()}; default {spec.default_text()}): {spec.help}"
                groups.setdefault(row, []).append(method)
    by_heading: dict[tuple[str, ...], list[str]] = {}
    for row, methods in groups.items():
        by_heading.setdefault(tuple(methods), []).append(row)
    order = list(METHODS)
    headings = sorted(by_heading, key=lambda h: (order.index(h[0]), -len(h)))
    bare = [m for m in METHODS if not any(m in h for h in headings)]
    lines = [
        f"Method parameters (-p KEY=VALUE, as declared by each method; not shown: {', '.join(skip)}"
        + (f"; {', '.join(bare)} take{'s' if len(bare) == 1 else ''} no others)" if bare else ")")
    ]
    for heading in headings:
        lines.append(f"{', '.join(heading)}:")
        lines.extend(by_heading[heading])
    return "\n".join(lines)
