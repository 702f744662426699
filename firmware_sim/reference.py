"""The real runtimes firmware_sim is checked against: TensorFlow Lite Micro and LiteRT BUILTIN_REF.

Why both and why not LiteRT's default: TFLM is what runs on the MCU; LiteRT with the BUILTIN_REF
op resolver runs the same reference kernels on a desktop, while its default XNNPACK path rounds
differently (up to 2 LSB, measured in issue 14), so it is not a reference for "what the MCU
computes". Both wheels are optional (extra ``mcu``/``test``): everything here imports them lazily
and says in one line when they are missing. Nothing in here runs on a device.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

import numpy as np

from deploy.runtime.errors import KitError

from .model import Model


def have_tflm() -> bool:
    try:
        import tflite_micro  # noqa: F401
    except ImportError:
        return False
    return True


def _tflm(model: Model, arena_size: int | None = None) -> Any:
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError:
        raise KitError("comparing with TensorFlow Lite Micro needs tflite-micro "
                       "(pip install 'audio-distill-kit[mcu]')") from None
    size = arena_size or (len(model.data) * 10 + (1 << 20))
    try:
        return runtime.Interpreter.from_bytes(model.data, arena_size=size)
    except RuntimeError as exc:
        raise KitError(f"{model.name}: TensorFlow Lite Micro refused the model ({str(exc).splitlines()[0]})") from None


@contextlib.contextmanager
def _captured_fd(fd: int) -> Iterator[list[str]]:
    """Capture what C code writes to ``fd`` (TFLM prints its allocation report with printf)."""
    out: list[str] = []
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), fd)
        try:
            yield out
        finally:
            with contextlib.suppress(Exception):
                ctypes.CDLL(None).fflush(None)
            os.dup2(saved, fd)
            os.close(saved)
            sink.seek(0)
            out.append(sink.read().decode("utf-8", "replace"))


def tflm_arena(model: Model) -> dict[str, int]:
    """TFLM's recorded arena: total, head (planned tensors) and tail (persistent), bytes."""
    interpreter = _tflm(model)
    with _captured_fd(1) as out1, _captured_fd(2) as out2:
        interpreter.print_allocations()
    text = "".join(out1 + out2)
    found = {k: re.search(rf"Arena allocation {k} (\d+) bytes", text) for k in ("total", "head", "tail")}
    if not all(found.values()):
        raise KitError(f"{model.name}: could not read TFLM's allocation report")
    return {k: int(m.group(1)) for k, m in found.items() if m}


def tflm_run(model: Model, x_int8: np.ndarray) -> dict[str, np.ndarray]:
    """Raw int8 outputs of TFLM for each clip of ``x_int8`` (N, *input), by output name."""
    interpreter = _tflm(model)
    rows: dict[str, list[np.ndarray]] = {name: [] for name in model.output_names}
    for clip in x_int8:
        interpreter.set_input(np.ascontiguousarray(clip[None]), 0)
        interpreter.invoke()
        for k, name in enumerate(model.output_names):
            rows[name].append(np.array(interpreter.get_output(k))[0])
    return {name: np.stack(v) for name, v in rows.items()}


def litert_ref_run(model: Model, x_int8: np.ndarray) -> dict[str, np.ndarray]:
    """Raw int8 outputs of LiteRT with the BUILTIN_REF (reference-kernel) op resolver."""
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError:
        raise KitError("comparing with LiteRT needs ai-edge-litert") from None
    interpreter = Interpreter(model_content=model.data, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]["index"]
    outs = interpreter.get_output_details()
    rows: dict[str, list[np.ndarray]] = {name: [] for name in model.output_names}
    for clip in x_int8:
        interpreter.set_tensor(inp, np.ascontiguousarray(clip[None]))
        interpreter.invoke()
        for name, detail in zip(model.output_names, outs):
            rows[name].append(interpreter.get_tensor(detail["index"])[0])
    return {name: np.stack(v) for name, v in rows.items()}


def compare(ours: dict[str, np.ndarray], theirs: dict[str, np.ndarray]) -> dict[str, Any]:
    """Per clip: bit-identical on every output? Plus the largest LSB difference."""
    n = len(next(iter(ours.values())))
    same = np.ones(n, bool)
    worst = 0
    for name, a in ours.items():
        b = theirs[name].reshape(a.shape)
        diff = np.abs(a.astype(np.int64) - b.astype(np.int64)).reshape(n, -1)
        same &= diff.max(1) == 0
        worst = max(worst, int(diff.max()))
    return {"clips": n, "identical": int(same.sum()), "max_lsb_diff": worst}
