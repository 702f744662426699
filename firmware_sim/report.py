"""Everything ``python -m firmware_sim report`` prints, as data: layers, arena, flash, cost, verdict.

Why a data function apart from the CLI: ``kit firmware report`` and ``bench/firmware.py`` need the
same numbers as JSON, and the CLI only renders them.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from .budget import Budget, check_budget
from .cost import TARGETS, estimate, op_cycles
from .memory import code_bytes, flash_bytes, layer_table, plan_arena
from .model import Model


def report(model: Model, target: str, budget: Budget, *, cmsis_nn: bool = True) -> dict[str, Any]:
    """The per-layer table (op, output shape, MACs, bytes read/written, live arena, est. cycles) and totals."""
    plan = plan_arena(model)
    layers = layer_table(model, plan)
    cost = estimate(model, target, cmsis_nn=cmsis_nn)
    cycles = op_cycles(model, TARGETS[target], cmsis_nn) if target in TARGETS else [0] * len(layers)
    verdict = check_budget(model, budget, cmsis_nn=cmsis_nn, cost=cost)
    return {
        "model": model.name,
        "target": target,
        "cmsis_nn": cmsis_nn if target in TARGETS else None,
        "clock_mhz": cost.clock_mhz,
        "cost_source": cost.source,
        "layers": [{**asdict(layer), "cycles": c} for layer, c in zip(layers, cycles)],
        "macs": cost.macs,
        "cycles": cost.cycles,
        "ms_per_inference": cost.ms,
        "hop_ms": budget.max_ms,
        "duty_cycle": cost.duty_cycle(budget.max_ms),
        "npu_cpu_ops": cost.cpu_ops,
        "flatbuffer_bytes": model.flash_bytes,
        "code_bytes_estimate": code_bytes(model),
        "flash_bytes": flash_bytes(model),
        "arena_head_bytes": plan.head_bytes,
        "arena_tail_bytes": plan.tail_bytes,
        "arena_bytes": plan.total_bytes,
        "peak_live_bytes": max((layer.live_bytes for layer in layers), default=0),
        "ops": model.op_counts(),
        "fits": verdict.fits,
        "verdict": verdict.line,
        "budget": asdict(budget),
    }
