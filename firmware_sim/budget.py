"""Does it fit? Flash, SRAM and time per hop of a model against a target profile, in one line.

Why one line: the answer a user needs before flashing a board is "no: arena 41.2 KB > 32.0 KB SRAM
(+9.2 KB)", not a table; ``check_budget`` gives that line (and ``Verdict.raise_if_over`` turns it
into the kit's one-line ``KitError``). Profiles default to a target's part (``cost.TARGETS``) with
the inference allowed the whole hop; any limit can be tightened (e.g. the issue's 64 KB flash,
32 KB arena, 50 ms targets).
"""

from __future__ import annotations

from dataclasses import dataclass

from deploy.runtime.errors import KitError

from .cost import TARGETS, Estimate, estimate
from .memory import flash_bytes, plan_arena
from .model import Model


@dataclass(frozen=True)
class Budget:
    name: str
    flash_bytes: int
    sram_bytes: int
    max_ms: float  # per inference (the hop, or less to leave the core time for other work)


def budget_for(
    target: str,
    hop_ms: float = 20.0,
    *,
    flash_bytes: int | None = None,
    sram_bytes: int | None = None,
    max_ms: float | None = None,
) -> Budget:
    """The profile of ``target`` (its part's flash and SRAM, the hop as time limit), overridable."""
    if hop_ms <= 0:
        raise KitError(f"--hop-ms must be positive (got {hop_ms})")
    cpu = TARGETS.get(target)
    if cpu is None and (flash_bytes is None or sram_bytes is None):
        raise KitError(
            f"no budget profile for target '{target}' (choose from {', '.join(sorted(TARGETS))}, "
            "or give flash and SRAM limits)"
        )
    return Budget(
        target,
        flash_bytes if flash_bytes is not None else cpu.flash_bytes,  # type: ignore[union-attr]
        sram_bytes if sram_bytes is not None else cpu.sram_bytes,  # type: ignore[union-attr]
        max_ms if max_ms is not None else hop_ms,
    )


def _kb(n: float) -> str:
    return f"{n / 1024:.1f} KB"


@dataclass(frozen=True)
class Verdict:
    fits: bool
    line: str
    flash_bytes: int
    arena_bytes: int
    ms: float

    def raise_if_over(self) -> Verdict:
        if not self.fits:
            raise KitError(self.line)
        return self


def check_budget(model: Model, budget: Budget, *, cmsis_nn: bool = True, cost: Estimate | None = None) -> Verdict:
    """One-line verdict: what does not fit (flash, SRAM arena, ms per inference) and by how much."""
    flash = flash_bytes(model)
    arena = plan_arena(model).total_bytes
    cost = cost or estimate(model, budget.name, cmsis_nn=cmsis_nn) if budget.name in TARGETS else cost
    ms = cost.ms if cost is not None else 0.0
    over = []
    if flash > budget.flash_bytes:
        over.append(f"flash {_kb(flash)} > {_kb(budget.flash_bytes)} (+{_kb(flash - budget.flash_bytes)})")
    if arena > budget.sram_bytes:
        over.append(f"arena {_kb(arena)} > {_kb(budget.sram_bytes)} SRAM (+{_kb(arena - budget.sram_bytes)})")
    if cost is not None and ms > budget.max_ms:
        over.append(f"{ms:.1f} ms per inference > {budget.max_ms:g} ms (+{ms - budget.max_ms:.1f} ms)")
    if over:
        line = f"{model.name}: does not fit {budget.name}: " + "; ".join(over)
    else:
        line = (
            f"{model.name}: fits {budget.name}: flash {_kb(flash)} of {_kb(budget.flash_bytes)}, arena "
            f"{_kb(arena)} of {_kb(budget.sram_bytes)}" + (f", {ms:.1f} of {budget.max_ms:g} ms" if cost else "")
        )
    return Verdict(not over, line, flash, arena, ms)
