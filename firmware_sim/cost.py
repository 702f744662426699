"""Latency estimates per MCU target: cycles per MAC by op kind, with and without CMSIS-NN, and
Arm Ethos-U NPUs through Arm's own compiler (``ethos-u-vela``) when it is installed.

These are ESTIMATES, not measurements: real cycles depend on memory wait states, caches, the
compiler and the exact CMSIS-NN release. The figures below are end-to-end cycles per MAC
(kernel loop + im2col/requantisation overhead), chosen so that known results are reproduced:

* MLPerf Tiny v0.5/v1.0 keyword spotting (Banbury et al., "MLPerf Tiny Benchmark", arXiv:2106.07597;
  results at mlcommons.org): DS-CNN (~2.7 M MACs) takes ~180 ms on a Cortex-M4 at 120 MHz
  (NUCLEO-L4R5ZI, TFLM + CMSIS-NN) -> ~8 cycles/MAC overall on a depthwise-heavy graph, and
  ~75-100 ms on faster M4/M7 boards.
* CMSIS-NN (Lai, Suda, Chandra, "CMSIS-NN: Efficient Neural Network Kernels for Arm Cortex-M CPUs",
  arXiv:1801.06601): 4.6x throughput over the baseline (reference) kernels on Cortex-M7; SIMD
  SMLAD does 2 int16 MACs/cycle on M4/M7/M33, so dense convolutions reach ~2-3 cycles/MAC.
* Cortex-M55 with Helium (Arm, "Cortex-M55 ... up to 15x ML performance uplift over Cortex-M4";
  CMSIS-NN MVE kernels): ~0.5 cycles/MAC on convolutions.
* The M4/M33 CMSIS-NN figures (4 cycles/MAC on CONV_2D, 8 on DEPTHWISE_CONV_2D) put MLPerf's DS-CNN at
  ~4.5 cycles/MAC, ~100 ms at 120 MHz: inside the published 75-180 ms range, not at its fast end.
* Without CMSIS-NN (TFLM reference kernels, C loops, int32 MACs with offset adds): ~10-16
  cycles/MAC on M4/M33, ~6-8 on M7/M55 (dual issue).
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from deploy.runtime.errors import KitError

from .memory import macs
from .model import Model

MAC_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
#: cycles per byte moved by data-movement ops (RESHAPE/TRANSPOSE/PAD/pools/MEAN/ADD...), and per op call
MOVE_CYCLES_PER_BYTE = {"cmsis": 2.0, "reference": 4.0}
OP_OVERHEAD_CYCLES = 1500


@dataclass(frozen=True)
class CpuTarget:
    name: str
    clock_mhz: float
    board: str  # the part the clock is taken from
    cmsis: dict[str, float]  # op -> cycles per MAC with CMSIS-NN
    reference: dict[str, float]  # op -> cycles per MAC with TFLM reference kernels
    sram_bytes: int
    flash_bytes: int


TARGETS: dict[str, CpuTarget] = {
    "cortex-m4f": CpuTarget(
        "cortex-m4f",
        80.0,
        "STM32L4 class (80 MHz)",
        {"CONV_2D": 4.0, "DEPTHWISE_CONV_2D": 8.0, "FULLY_CONNECTED": 3.0},
        {"CONV_2D": 14.0, "DEPTHWISE_CONV_2D": 16.0, "FULLY_CONNECTED": 10.0},
        sram_bytes=256 * 1024,
        flash_bytes=1024 * 1024,
    ),
    "cortex-m7": CpuTarget(
        "cortex-m7",
        216.0,
        "STM32F746 (216 MHz, as in the CMSIS-NN paper)",
        {"CONV_2D": 1.6, "DEPTHWISE_CONV_2D": 4.0, "FULLY_CONNECTED": 1.4},
        {"CONV_2D": 7.0, "DEPTHWISE_CONV_2D": 8.0, "FULLY_CONNECTED": 5.0},
        sram_bytes=320 * 1024,
        flash_bytes=1024 * 1024,
    ),
    "cortex-m33": CpuTarget(
        "cortex-m33",
        64.0,
        "nRF5340 application core (64 MHz)",
        {"CONV_2D": 4.0, "DEPTHWISE_CONV_2D": 8.0, "FULLY_CONNECTED": 3.0},
        {"CONV_2D": 14.0, "DEPTHWISE_CONV_2D": 16.0, "FULLY_CONNECTED": 10.0},
        sram_bytes=512 * 1024,
        flash_bytes=1024 * 1024,
    ),
    "cortex-m55": CpuTarget(
        "cortex-m55",
        160.0,
        "Alif Ensemble high-efficiency core (160 MHz)",
        {"CONV_2D": 0.5, "DEPTHWISE_CONV_2D": 1.2, "FULLY_CONNECTED": 0.5},
        {"CONV_2D": 6.0, "DEPTHWISE_CONV_2D": 8.0, "FULLY_CONNECTED": 5.0},
        sram_bytes=256 * 1024,
        flash_bytes=2048 * 1024,
    ),
}
#: Ethos-U targets: vela accelerator configuration and the host CPU's SRAM/flash of a typical part
NPU_TARGETS: dict[str, str] = {"ethos-u55": "ethos-u55-128", "ethos-u65": "ethos-u65-256"}


@dataclass(frozen=True)
class Estimate:
    target: str
    cmsis_nn: bool
    clock_mhz: float
    cycles: int
    macs: int
    source: str  # "cycles-per-MAC model" or "vela"
    cpu_ops: int = 0  # ops vela leaves on the CPU (NPU targets)

    @property
    def ms(self) -> float:
        return self.cycles / (self.clock_mhz * 1e3)

    def duty_cycle(self, hop_ms: float) -> float:
        """Fraction of the time the core computes when one inference runs every ``hop_ms``."""
        return self.ms / hop_ms


def target_names() -> list[str]:
    return sorted(TARGETS) + sorted(NPU_TARGETS)


def op_cycles(model: Model, target: CpuTarget, cmsis_nn: bool) -> list[int]:
    """Estimated cycles of each operator."""
    table = target.cmsis if cmsis_nn else target.reference
    per_byte = MOVE_CYCLES_PER_BYTE["cmsis" if cmsis_nn else "reference"]
    out = []
    for op in model.operators:
        if op.opcode in MAC_OPS:
            cycles = macs(model, op) * table[op.opcode]
        else:
            moved = sum(model.tensors[t].nbytes for t in op.inputs if t >= 0 and model.tensors[t].data is None)
            cycles = moved * per_byte
        out.append(int(cycles + OP_OVERHEAD_CYCLES))
    return out


def estimate(model: Model, target: str, *, cmsis_nn: bool = True) -> Estimate:
    """ms per inference of ``model`` on ``target`` (a Cortex-M by the cycle model, an Ethos-U by vela)."""
    total_macs = sum(macs(model, op) for op in model.operators)
    if target in NPU_TARGETS:
        return vela_estimate(model, target)
    if target not in TARGETS:
        raise KitError(f"unknown target '{target}' (choose from {', '.join(target_names())})")
    cpu = TARGETS[target]
    return Estimate(
        target, cmsis_nn, cpu.clock_mhz, sum(op_cycles(model, cpu, cmsis_nn)), total_macs, "cycles-per-MAC model"
    )


def _vela_command() -> list[str]:
    beside = Path(sys.executable).with_name("vela")
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("vela")
    if found:
        return [found]
    raise KitError("Ethos-U estimates need ethos-u-vela (pip install 'audio-distill-kit[mcu]')")


def vela_estimate(model: Model, target: str, timeout_s: float = 300.0) -> Estimate:
    """Compile with vela for the NPU in a temp dir and read its summary CSV (cycles, clock, CPU ops)."""
    accelerator = NPU_TARGETS[target]
    with tempfile.TemporaryDirectory(prefix="fwsim-vela-") as tmp:
        src = Path(tmp) / "model.tflite"
        src.write_bytes(model.data)
        cmd = _vela_command() + [str(src), "--accelerator-config", accelerator, "--output-dir", str(Path(tmp) / "out")]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise KitError(f"{model.name}: vela did not run for {target} ({exc})") from None
        summaries = sorted((Path(tmp) / "out").glob("*summary*.csv"))
        if done.returncode != 0 or not summaries:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise KitError(f"{model.name}: vela failed for {target}: {tail[0]}")
        with summaries[0].open(newline="") as f:
            row = next(csv.DictReader(f))
        cpu_ops = 0
        for line in done.stdout.splitlines():
            if line.strip().startswith("CPU operators"):
                cpu_ops = int(line.split("=")[1].split()[0])
    clock_mhz = float(row["core_clock"]) / 1e6
    cycles = round(float(row["inference_time"]) * float(row["core_clock"]))
    return Estimate(target, False, clock_mhz, cycles, int(float(row["nn_macs"])), f"vela {accelerator}", cpu_ops)
