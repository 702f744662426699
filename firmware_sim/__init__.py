"""firmware_sim: the int8 keyword model as a microcontroller runs it (numpy + the standard library only).

``load_model(path_or_bytes)`` parses a ``.tflite`` (or a bundle's int8 TFLite member);
``Interpreter(model).run(features)`` runs it with TensorFlow Lite Micro's integer arithmetic;
``plan_arena(model)`` plans the tensor arena like TFLM's GreedyMemoryPlanner; ``estimate(model,
target)`` gives cycles and ms per target; ``check_budget(...)`` says what does not fit.
"""
from __future__ import annotations

from .interpreter import Interpreter, unsupported_ops
from .model import Model, load_model, parse_model

__all__ = ["Interpreter", "Model", "load_model", "parse_model", "unsupported_ops"]
