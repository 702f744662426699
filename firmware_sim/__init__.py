"""firmware_sim: the int8 keyword model as a microcontroller runs it (numpy + the standard library only).

``load_model(path_or_bytes)`` parses a ``.tflite`` (or a bundle's int8 TFLite member);
``Interpreter(model).run(features)`` runs it with TensorFlow Lite Micro's integer arithmetic;
``plan_arena(model)`` plans the tensor arena like TFLM's GreedyMemoryPlanner; ``estimate(model,
target)`` gives cycles and ms per target; ``check_budget(model, budget_for(target, hop_ms))`` says
in one line what does not fit. See docs/FIRMWARE_SIM.md.
"""

from __future__ import annotations

from .budget import Budget, Verdict, budget_for, check_budget
from .cost import TARGETS, Estimate, estimate, target_names
from .interpreter import Interpreter, unsupported_ops
from .memory import (
    ARENA_TOLERANCE,
    ArenaPlan,
    code_bytes,
    flash_bytes,
    layer_table,
    plan_arena,
)
from .model import Model, load_model, parse_model
from .report import report

__all__ = [
    "ARENA_TOLERANCE",
    "TARGETS",
    "ArenaPlan",
    "Budget",
    "Estimate",
    "Interpreter",
    "Model",
    "Verdict",
    "budget_for",
    "check_budget",
    "code_bytes",
    "estimate",
    "flash_bytes",
    "layer_table",
    "load_model",
    "parse_model",
    "plan_arena",
    "report",
    "target_names",
    "unsupported_ops",
]
