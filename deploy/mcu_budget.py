"""Measured microcontroller cost of an architecture: int8 TFLite flash bytes and TFLM arena bytes.

Why measured and not estimated: the flash is the int8 flatbuffer as ``kit export --int8`` writes
it (weights, graph, quantisation parameters and the kit metadata), and the arena is what TFLM's
memory planner actually allocates for it (``firmware_sim.reference``); both depend on the converter's graph,
which a formula would only guess. The numbers do not depend on the weights' values, so a randomly
initialised network calibrated on random features gives them. An export takes seconds, so results
are cached in a JSON file keyed by architecture, arguments, input shape, classes and the versions
of the converter, quantiser and TFLM.
"""

from __future__ import annotations

import json
import os
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from deploy.model_report import model_report
from deploy.runtime.artifact import atomic_write_bytes
from deploy.runtime.errors import KitError

#: bump when what is measured changes
BUDGET_VERSION = 1
#: networks with more weights are no microcontroller model: not exported (a minute each, for nothing)
MAX_MCU_PARAMS = 2_000_000
CALIBRATION_CLIPS = 8
TOOLS = ("litert-torch", "ai-edge-quantizer", "tflite-micro")


def _versions() -> dict[str, str]:
    out = {}
    for tool in TOOLS:
        try:
            out[tool] = metadata.version(tool)
        except metadata.PackageNotFoundError:
            out[tool] = "absent"
    return out


def budget_key(arch: str, arch_kwargs: dict[str, Any], in_shape: Sequence[int], n_classes: int) -> str:
    """Cache key of one measurement (JSON, sorted)."""
    return json.dumps(
        {
            "v": BUDGET_VERSION,
            "arch": arch,
            "kwargs": arch_kwargs,
            "shape": list(in_shape),
            "classes": int(n_classes),
            "tools": _versions(),
        },
        sort_keys=True,
    )


def measure_budget(model: Any) -> dict[str, Any]:
    """Export ``model`` (a KitModel) to int8 TFLite and measure it: flash, arena, ops, MCU-ready op set.

    ``arena_bytes`` is None with a ``note`` when tflite-micro is not installed or cannot load the graph.
    """
    from deploy.edge_graph import mcu_op_violations  # lazy: pulls in torch
    from deploy.export_tflite import export_tflite  # lazy: pulls in torch
    from firmware_sim.reference import TflmModel, have_tflm  # lazy: the optional TFLM wheel

    calibration = np.random.default_rng(0).standard_normal((CALIBRATION_CLIPS, *model.in_shape)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        path = export_tflite(
            model, Path(tmp) / "model.int8.tflite", int8=True, calibration=calibration, min_agreement=0.0
        )
        data = path.read_bytes()
    report = model_report(data, "tflite")
    row: dict[str, Any] = {
        "int8_flash_bytes": len(data),
        "arena_bytes": None,
        "ops": report.ops,
        "mcu_ops_only": not mcu_op_violations(report.ops),
        "layout": model.tflite_layout,
    }
    if not have_tflm():
        row["note"] = "tflite-micro not installed (pip install tflite-micro): no arena"
        return row
    try:
        row["arena_bytes"] = TflmModel(data, f"{model.arch} int8").arena_bytes()
    except KitError as exc:
        row["note"] = str(exc)
    return row


class BudgetCache:
    """A JSON file of measurements; ``None`` path keeps them in memory only."""

    def __init__(self, path: str | os.PathLike | None) -> None:
        self.path = Path(path) if path is not None else None
        self.entries: dict[str, dict[str, Any]] = {}
        if self.path is not None and self.path.is_file():
            try:
                loaded = json.loads(self.path.read_text())
            except (OSError, json.JSONDecodeError):
                loaded = {}  # a broken cache is rebuilt, never fatal
            self.entries = loaded if isinstance(loaded, dict) else {}

    def get(self, model: Any) -> dict[str, Any]:
        """The measurement for ``model`` (from the cache, else measured and stored)."""
        from kit.models import count_parameters  # lazy: pulls in torch

        if count_parameters(model) > MAX_MCU_PARAMS:
            return {
                "int8_flash_bytes": None,
                "arena_bytes": None,
                "note": f"> {MAX_MCU_PARAMS / 1e6:.0f} M weights: not exported",
            }
        key = budget_key(model.arch, model.arch_kwargs, model.in_shape, model.n_classes)
        if key not in self.entries:
            try:
                self.entries[key] = measure_budget(model)
            except (KitError, RuntimeError) as exc:  # e.g. a graph the converter cannot take
                self.entries[key] = {
                    "int8_flash_bytes": None,
                    "arena_bytes": None,
                    "note": f"int8 export failed: {' '.join(str(exc).split())[:120]}",
                }
            if self.path is not None:
                atomic_write_bytes(self.path, json.dumps(self.entries, indent=1, sort_keys=True).encode())
        return dict(self.entries[key])
