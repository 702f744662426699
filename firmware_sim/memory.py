"""Where the bytes go on the MCU: tensor lifetimes, TFLM's greedy arena plan, the persistent tail,
flash, and a per-layer table.

Why a replica of TFLM's planner rather than "sum of the two biggest tensors": the arena TFLM asks
for is what decides whether a model fits, and it depends on the exact placement rule
(tensorflow/lite/micro/memory_planner/greedy_memory_planner.cc): buffers sorted by size (largest
first; equal sizes in reverse tensor order, as its tail-filled id array and stable bubble sort
leave them), each put at the lowest offset where it overlaps no simultaneously-live buffer, every
size rounded up to 16 bytes (MicroArenaBufferAlignment). Lifetimes follow micro_allocation_info.cc:
graph inputs live from step 0, op i's outputs from step i+1 to their last reader, graph outputs to
the end, kernel scratch buffers (MEAN's accumulators) only during their op.

TFLM's arena = this "head" (planned activations) + a "tail" of persistent allocations (one
TfLiteEvalTensor per tensor, one NodeAndRegistration per op, per-channel requantisation arrays and
kernel op data, the interpreter's I/O tensors, allocator bookkeeping). The tail is estimated from
the sizes TFLM's RecordingMicroAllocator reports (``print_allocations``); the tests hold the total
within ``ARENA_TOLERANCE`` of TFLM's recorded arena on real exports.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .model import Model, Operator

ALIGNMENT = 16
#: relative tolerance of ``plan_arena(model).total_bytes`` against TFLM's recorded arena (tests hold it)
ARENA_TOLERANCE = 0.10
#: persistent-tail sizes, bytes (RecordingMicroAllocator, tflite-micro 2026 wheel, 64-bit host)
EVAL_TENSOR_BYTES = 24
NODE_BYTES = 64
IO_TENSOR_BYTES = 64 + 32  # persistent TfLiteTensor + its quantisation data, per graph input/output
ALLOCATOR_OVERHEAD_BYTES = 688  # MicroAllocator, SubgraphAllocations, scratch handles (measured, fixed)
#: kernel op data in the persistent tail, bytes (besides 2 x int32 per output channel for conv/dw/fc)
OP_DATA_BYTES = {
    "CONV_2D": 64,
    "DEPTHWISE_CONV_2D": 64,
    "FULLY_CONNECTED": 48,
    "MEAN": 48,
    "ADD": 96,
    "SOFTMAX": 48,
    "QUANTIZE": 32,
    "DEQUANTIZE": 32,
    "AVERAGE_POOL_2D": 32,
    "MAX_POOL_2D": 32,
    "PAD": 48,
    "PADV2": 48,
}
#: code-size estimate of a TFLM binary with the kernels a model uses, bytes. Stated estimate: TFLM's
#: own figures (micro_speech ~ 40-50 KB of code on Cortex-M4 with the reference op resolver holding 4
#: ops; the interpreter core ~ 20 KB), CMSIS-NN kernels ~ 2-6 KB each.
CODE_CORE_BYTES = 24 * 1024
CODE_PER_OP_BYTES = {
    "CONV_2D": 6 * 1024,
    "DEPTHWISE_CONV_2D": 6 * 1024,
    "FULLY_CONNECTED": 3 * 1024,
    "SOFTMAX": 3 * 1024,
    "MEAN": 3 * 1024,
    "ADD": 3 * 1024,
}
CODE_DEFAULT_OP_BYTES = 2 * 1024


def align(n: int) -> int:
    return (n + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


@dataclass(frozen=True)
class Buffer:
    """One planned arena buffer: a tensor (``tensor`` >= 0) or a kernel scratch buffer (-1)."""

    name: str
    tensor: int
    size: int  # aligned bytes
    first: int  # allocation scope (0 = before the first op, op i runs at scope i + 1)
    last: int
    offset: int = -1


def scratch_requests(model: Model, op: Operator) -> list[int]:
    """Arena scratch bytes a TFLM reference kernel requests in Prepare (only MEAN among ours)."""
    if op.opcode in ("MEAN", "SUM"):
        out, inp = model.tensors[op.outputs[0]], model.tensors[op.inputs[0]]
        axes = model.tensors[op.inputs[1]].size
        return [4 * out.size, 4 * len(inp.shape), 4 * axes]
    return []


def lifetimes(model: Model) -> list[Buffer]:
    """The arena buffers with their lifetimes, in TFLM's requirement order (tensors, then scratch)."""
    n_ops = len(model.operators)
    first: dict[int, int] = {}
    last: dict[int, int] = {}

    def created(t: int, scope: int) -> None:
        first.setdefault(t, scope)

    def used(t: int, scope: int) -> None:
        last[t] = max(last.get(t, scope), scope)

    for t in model.inputs:
        created(t, 0)
        used(t, 0)
    scratch: list[Buffer] = []
    for i, op in enumerate(model.operators):
        scope = i + 1
        for t in op.outputs:
            created(t, scope)
        for t in op.inputs:
            if t >= 0:
                used(t, scope)
        for t in op.outputs:
            used(t, scope)
        for k, size in enumerate(scratch_requests(model, op)):
            scratch.append(Buffer(f"op{i}:{op.opcode}:scratch{k}", -1, align(size), scope, scope))
    for t in model.outputs:
        created(t, n_ops)
        used(t, n_ops)
    buffers = []
    for tensor in model.tensors:
        if tensor.data is not None or tensor.is_variable or tensor.nbytes == 0 or tensor.index not in first:
            continue
        buffers.append(
            Buffer(
                tensor.name or f"t{tensor.index}",
                tensor.index,
                align(tensor.nbytes),
                first[tensor.index],
                last.get(tensor.index, first[tensor.index]),
            )
        )
    return buffers + scratch


def greedy_plan(buffers: list[Buffer]) -> list[Buffer]:
    """Offsets by TFLM's GreedyMemoryPlanner (first fit, largest first); returns the placed buffers."""
    order = list(range(len(buffers)))[::-1]  # ids are written from the tail of the sort array
    order.sort(key=lambda i: -buffers[i].size)  # stable, like its ReverseSortInPlace bubble sort
    placed: list[tuple[int, int]] = []  # (offset, buffer id), kept sorted by offset
    offsets = [0] * len(buffers)
    for i in order:
        want = buffers[i]
        candidate = 0
        for offset, j in placed:
            other = buffers[j]
            if other.first > want.last or want.first > other.last:
                continue
            if offset - candidate >= want.size:
                break
            candidate = max(candidate, offset + other.size)
        offsets[i] = candidate
        placed.append((candidate, i))
        placed.sort(key=lambda p: p[0])
    return [Buffer(b.name, b.tensor, b.size, b.first, b.last, offsets[k]) for k, b in enumerate(buffers)]


def _channels(model: Model, op: Operator) -> int:
    if op.opcode in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
        out = model.tensors[op.outputs[0]]
        filt = model.tensors[op.inputs[1]]
        per_channel = filt.quant is not None and filt.quant.per_channel
        return out.shape[-1] if (per_channel or op.opcode != "FULLY_CONNECTED") else 0
    return 0


def persistent_tail(model: Model) -> dict[str, int]:
    """Estimated persistent ("tail") arena allocations, by kind, bytes."""
    op_data = sum(
        align(OP_DATA_BYTES.get(op.opcode, 0)) + 2 * align(4 * _channels(model, op)) for op in model.operators
    )
    return {
        "eval tensors": align(EVAL_TENSOR_BYTES * len(model.tensors)),
        "nodes": align(NODE_BYTES * len(model.operators)),
        "io tensors": IO_TENSOR_BYTES * (len(model.inputs) + len(model.outputs)),
        "kernel data": op_data,
        "allocator": ALLOCATOR_OVERHEAD_BYTES,
    }


@dataclass
class ArenaPlan:
    buffers: list[Buffer]
    head_bytes: int  # planned activations + scratch (TFLM "Arena allocation head")
    tail: dict[str, int] = field(default_factory=dict)

    @property
    def tail_bytes(self) -> int:
        return sum(self.tail.values())

    @property
    def total_bytes(self) -> int:
        return self.head_bytes + self.tail_bytes

    def live_bytes(self, scope: int) -> int:
        """Sum of the buffers alive at ``scope`` (op i runs at scope i + 1)."""
        return sum(b.size for b in self.buffers if b.first <= scope <= b.last)


def plan_arena(model: Model) -> ArenaPlan:
    """TFLM's arena for ``model``: greedy-planned head + estimated persistent tail."""
    placed = greedy_plan(lifetimes(model))
    head = max((b.offset + b.size for b in placed), default=0)
    return ArenaPlan(placed, align(head), persistent_tail(model))


def code_bytes(model: Model) -> int:
    """Stated estimate of the TFLM code size (interpreter core + one kernel per op type used)."""
    return CODE_CORE_BYTES + sum(CODE_PER_OP_BYTES.get(op, CODE_DEFAULT_OP_BYTES) for op in model.op_counts())


def flash_bytes(model: Model) -> int:
    """Flash: the flatbuffer (weights + graph + metadata) plus the code-size estimate."""
    return model.flash_bytes + code_bytes(model)


@dataclass(frozen=True)
class Layer:
    index: int
    opcode: str
    output_shape: tuple[int, ...]
    macs: int
    bytes_read: int  # activations + weights read
    bytes_written: int
    live_bytes: int  # arena bytes live while the op runs


def macs(model: Model, op: Operator) -> int:
    """Multiply-accumulates of one op (0 for data movement)."""
    out = model.tensors[op.outputs[0]]
    if op.opcode == "CONV_2D":
        w = model.tensors[op.inputs[1]]
        return out.size * int(np.prod(w.shape[1:]))
    if op.opcode == "DEPTHWISE_CONV_2D":
        w = model.tensors[op.inputs[1]]
        return out.size * w.shape[1] * w.shape[2]
    if op.opcode == "FULLY_CONNECTED":
        return int(model.tensors[op.inputs[1]].size) * max(1, out.size // model.tensors[op.inputs[1]].shape[0])
    if op.opcode in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        return out.size * op.options.get("filter_h", 1) * op.options.get("filter_w", 1)
    if op.opcode in ("MEAN", "SUM", "ADD", "SOFTMAX"):
        return model.tensors[op.inputs[0]].size
    return 0


def layer_table(model: Model, plan: ArenaPlan | None = None) -> list[Layer]:
    plan = plan or plan_arena(model)
    rows = []
    for i, op in enumerate(model.operators):
        read = sum(model.tensors[t].nbytes for t in op.inputs if t >= 0)
        written = sum(model.tensors[t].nbytes for t in op.outputs)
        rows.append(
            Layer(
                i,
                op.opcode,
                tuple(model.tensors[op.outputs[0]].shape),
                macs(model, op),
                read,
                written,
                plan.live_bytes(i + 1),
            )
        )
    return rows
