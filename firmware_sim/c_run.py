"""Build a generated firmware project and run it: on the host, or on QEMU's emulated Cortex-M4F board.

Why here and not in the tests: ``kit firmware run``, the benchmark and the tests all need the same
three steps (make, feed PCM or int8 inputs, parse the printed lines), and each must fail with one
line that says what is missing (the Debian packages of the ARM toolchain, say) rather than a
``FileNotFoundError``.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deploy.runtime.errors import KitError

#: Debian packages that provide the Cortex-M toolchain and the emulator.
ARM_PACKAGES = "gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm"
#: Wall-clock limit for one emulated run (QEMU -icount runs about 100-300 M instructions/s here).
QEMU_TIMEOUT_S = 600

_DETECTION = re.compile(r"^t=(\d+(?:\.\d+)?)s (.+) (\d+(?:\.\d+)?)$")
_COST = re.compile(r"^per inference: (\d+) ([a-z ]+?) (?:model, (\d+) front-end, over (\d+) windows )?\((.*)\)$")


@dataclass
class FirmwareOutput:
    """What one run printed, parsed: detections, int8 outputs (KWSF inputs) and the cost line."""

    lines: list[str]
    detections: list[tuple[float, str, float]] = field(default_factory=list)
    logits: list[list[int]] = field(default_factory=list)
    embeddings: list[list[int]] = field(default_factory=list)
    model_cost: int | None = None
    frontend_cost: int | None = None
    cost_unit: str = ""
    cost_note: str = ""


def parse_output(text: str) -> FirmwareOutput:
    lines = [line for line in text.splitlines() if line.strip()]
    out = FirmwareOutput(lines)
    for line in lines:
        if line.startswith("error:"):
            raise KitError(f"firmware: {line[len('error:') :].strip()}")
        if match := _DETECTION.match(line):
            out.detections.append((float(match[1]), match[2], float(match[3])))
        elif line.startswith("logits"):
            out.logits.append([int(v) for v in line.split()[1:]])
        elif line.startswith("embedding"):
            out.embeddings.append([int(v) for v in line.split()[1:]])
        elif match := _COST.match(line):
            out.model_cost, out.cost_unit, out.cost_note = int(match[1]), match[2], match[5]
            out.frontend_cost = int(match[3]) if match[3] else None
    return out


def target_of(project: Path) -> str:
    record = project / "firmware.json"
    if not record.is_file():
        raise KitError(f"{project}: not a firmware project (no firmware.json); make one with kit firmware build")
    return json.loads(record.read_text())["target"]["name"]


def require_tools(target: str) -> None:
    """One line naming the packages to install when a tool the target needs is missing."""
    needed = ["make", "cc"] if target == "host" else ["make", "arm-none-eabi-gcc", "arm-none-eabi-size"]
    if target == "cortex-m4f":
        needed.append("qemu-system-arm")
    missing = [tool for tool in needed if shutil.which(tool) is None]
    if missing:
        packages = "build-essential" if target == "host" else ARM_PACKAGES
        raise KitError(f"firmware ({target}): {', '.join(missing)} not found; install the Debian packages {packages}")


def build(project: str | Path) -> Path:
    """``make`` in the project; returns the built binary."""
    project = Path(project)
    target = target_of(project)
    require_tools(target)
    binary = project / ("kws" if target == "host" else "kws.elf")
    proc = subprocess.run(["make", "-s", "-C", str(project), binary.name], capture_output=True, text=True)
    if proc.returncode != 0:
        detail = [line.strip() for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
        # the linker's "region `RAM' overflowed by N bytes" says more than make's closing line
        keys = ("overflowed", "will not fit", "static RAM leaves", "error:", "undefined reference")
        cause = next((line for key in keys for line in detail if key in line), detail[-1] if detail else "")
        raise KitError(f"{project}: build failed: {cause.split('ld: ')[-1]}")
    return binary


def section_sizes(project: str | Path) -> dict[str, int]:
    """text/data/bss of the Cortex-M binary per arm-none-eabi-size (Berkeley format)."""
    elf = build(project)
    proc = subprocess.run(["arm-none-eabi-size", "-B", str(elf)], capture_output=True, text=True, check=True)
    text, data, bss = (int(v) for v in proc.stdout.splitlines()[1].split()[:3])
    return {"text": text, "data": data, "bss": bss, "flash": text + data, "static_ram": data + bss}


def pcm_bytes(samples: np.ndarray) -> bytes:
    """float mono in [-1, 1] -> 16-bit little-endian PCM, as a WAV's samples are stored."""
    clipped = np.clip(np.round(np.asarray(samples, np.float64) * 32768.0), -32768, 32767).astype("<i2")
    return clipped.tobytes()


def feature_input_bytes(inputs: np.ndarray) -> bytes:
    """int8 model inputs (N, ...) as a KWSF file: magic, uint32 count, the inputs."""
    q = np.ascontiguousarray(inputs, dtype=np.int8)
    return b"KWSF" + struct.pack("<I", len(q)) + q.tobytes()


def run(project: str | Path, data: bytes, timeout_s: float = QEMU_TIMEOUT_S) -> FirmwareOutput:
    """Feed ``data`` (PCM or a KWSF file) to the built firmware; host: standard input, board: ./input.pcm."""
    project = Path(project)
    target = target_of(project)
    binary = build(project)
    if target == "host":
        proc = subprocess.run([str(binary.resolve())], input=data, capture_output=True, timeout=timeout_s)
    elif target == "cortex-m4f":
        with tempfile.TemporaryDirectory(prefix="kws-qemu-") as work:
            (Path(work) / "input.pcm").write_bytes(data)
            command = [
                "qemu-system-arm",
                "-M",
                "mps2-an386",
                "-nographic",
                "-monitor",
                "none",
                "-serial",
                "none",
                "-semihosting-config",
                "enable=on,target=native",
                "-icount",
                "shift=0",
                "-kernel",
                str(binary.resolve()),
            ]
            try:
                proc = subprocess.run(command, cwd=work, capture_output=True, timeout=timeout_s)
            except subprocess.TimeoutExpired:
                raise KitError(f"{project}: the emulated board did not finish within {timeout_s:.0f} s") from None
    else:
        raise KitError(f"{project}: target {target} builds but has no emulated board here; run it on hardware")
    if proc.returncode != 0:
        tail = (
            proc.stdout.decode(errors="replace").strip().splitlines()[-1:]
            or proc.stderr.decode(errors="replace").strip().splitlines()[-1:]
        )
        raise KitError(f"{project}: firmware exited with status {proc.returncode}: {' '.join(tail)}")
    return parse_output(proc.stdout.decode(errors="replace"))
