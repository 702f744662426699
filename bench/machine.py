"""A record of the machine a benchmark ran on and of the command that ran it, stored beside every result."""

from __future__ import annotations

import os
import platform
import shlex
import sys

import numpy


def machine_info() -> dict:
    """CPU model, core count, memory and library versions: what a reader needs to compare figures."""
    import torch  # lazy: torch only when used

    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory_gb = None
    try:
        with open("/proc/meminfo") as handle:
            memory_gb = round(int(handle.readline().split()[1]) / 1024**2, 1)
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": memory_gb,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def command_line(module: str, argv: list[str] | None = None) -> str:
    """``python -m bench.MODULE ARGS`` as a shell would need it typed: arguments such as
    ``--arch-kwargs '{"size": "small"}'`` are quoted, so the recorded command can be pasted back."""
    args = sys.argv[1:] if argv is None else argv
    return shlex.join(["python", "-m", module, *args])
