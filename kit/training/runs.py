"""Run directories: ``config.json`` + ``metrics.json`` written atomically.

Why atomic: benchmark scripts and reports read run folders while other runs are still writing;
a rename-into-place write means a reader sees either the old file or the complete new one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from deploy.runtime.artifact import atomic_write_text


def _to_json(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def write_run(run_dir: str | os.PathLike, config: dict[str, Any], metrics: dict[str, Any]) -> Path:
    """Create ``run_dir`` and write its config.json and metrics.json; returns the directory."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    for name, payload in (("config.json", config), ("metrics.json", metrics)):
        atomic_write_text(run_dir / name, json.dumps(payload, indent=2, sort_keys=True, default=_to_json) + "\n")
    return run_dir
