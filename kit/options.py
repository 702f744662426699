"""Parsing the comma-separated lists users type: seeds, sizes, budgets.

Why a library module (not under ``kit.commands``): the ``kit`` commands, the experiments and the
benchmarks' argparse front-ends all take the same lists (``--seeds 0-4``, ``--ipcs 1,10,50``,
``--budgets 20,40``) and must read them alike and refuse them alike; a benchmark importing a CLI
module for this would point upward across the layers. Only the standard library and the
runtime's ``KitError`` are used, so any layer may import it. Every error is one line naming the
option, as the CLI prints it.
"""

from __future__ import annotations

import re

from deploy.runtime.errors import KitError

#: what a user types for "no values" where an option allows none (``--tiny none``)
NONE_WORDS = ("", "none")


def _parts(text: str) -> list[str]:
    return [p.strip() for p in str(text).split(",") if p.strip()]


def parse_seeds(text: str, option: str = "--seeds") -> list[int]:
    """``"0,1,2"`` or ``"0-4"`` -> list of distinct non-negative ints in the order given."""
    seeds: list[int] = []
    for part in _parts(text):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not match:
            raise KitError(f"{option}: expected non-negative integers like 0,1,2 or 0-4, got '{text}'")
        low, high = int(match[1]), int(match[2] or match[1])
        seeds.extend(range(low, high + 1))
    if not seeds:
        raise KitError(f"{option}: give at least one seed")
    return list(dict.fromkeys(seeds))


def parse_floats(text: str, option: str) -> tuple[float, ...]:
    """``"20,30,40"`` -> (20.0, 30.0, 40.0), duplicates dropped; empty or ``none`` -> ()."""
    if str(text).strip().lower() in NONE_WORDS:
        return ()
    try:
        return tuple(dict.fromkeys(float(p) for p in _parts(text)))
    except ValueError:
        raise KitError(f"{option}: expected comma-separated numbers like 20,30,40,60, got '{text}'") from None


def parse_ints(text: str, option: str, *, allow_none: bool = False) -> tuple[int, ...]:
    """``"1,10,50"`` -> (1, 10, 50): positive integers, duplicates dropped, order kept.

    ``allow_none``: empty text or ``none`` means no values (``--tiny none``) instead of an error.
    """
    if allow_none and str(text).strip().lower() in NONE_WORDS:
        return ()
    values = []
    for part in _parts(text):
        if not part.isdigit() or int(part) < 1:
            raise KitError(f"{option}: expected positive integers like 1,10,50, got '{text}'")
        values.append(int(part))
    if not values:
        raise KitError(f"{option}: give at least one value")
    return tuple(dict.fromkeys(values))
