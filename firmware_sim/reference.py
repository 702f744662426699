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

from .model import Model, parse_model


def have_tflm() -> bool:
    try:
        import tflite_micro  # lazy: optional, guarded by try  # noqa: F401
    except ImportError:
        return False
    return True


def _tflm_runtime() -> Any:
    """TFLM's Python runtime module, or a one-line error saying how to install it."""
    try:
        from tflite_micro.python.tflite_micro import runtime  # lazy: optional wheel (extra 'mcu')
    except ImportError:
        raise KitError(
            "tflite-micro is not installed; pip install 'audio-distill-kit[mcu]' (or tflite-micro) "
            "to run models in TensorFlow Lite Micro"
        ) from None
    return runtime


def _tflm(model: Model, arena_size: int | None = None) -> Any:
    runtime = _tflm_runtime()
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


class TflmModel:
    """One int8 ``.tflite`` in TensorFlow Lite Micro: raw outputs of one input, and the arena it used."""

    def __init__(self, data: bytes | Model, name: str = "<tflite>") -> None:
        _tflm_runtime()  # the missing wheel is the first thing to report
        self.model = data if isinstance(data, Model) else parse_model(bytes(data), name)
        self.name = self.model.name
        self.interpreter = _tflm(self.model)
        self._invoked = False

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        """Raw outputs (subgraph order) for one input already in the file's dtype and layout (batch 1)."""
        self.interpreter.set_input(np.ascontiguousarray(x), 0)
        self.interpreter.invoke()
        self._invoked = True
        return [np.array(self.interpreter.get_output(k)) for k in range(len(self.model.outputs))]

    def arena_bytes(self) -> int:
        """TFLM's recorded arena total (scratch buffers are requested at the first invoke)."""
        if not self._invoked:
            tensor = self.model.tensors[self.model.inputs[0]]
            self.run(np.zeros(tensor.shape, dtype=tensor.dtype))
        return _allocations(self.interpreter, self.name)["total"]


def _allocations(interpreter: Any, name: str) -> dict[str, int]:
    with _captured_fd(1) as out1, _captured_fd(2) as out2:
        interpreter.print_allocations()
    text = "".join(out1 + out2)
    found = {k: re.search(rf"Arena allocation {k} (\d+) bytes", text) for k in ("total", "head", "tail")}
    if not all(found.values()):
        raise KitError(f"{name}: could not read TFLM's allocation report")
    return {k: int(m.group(1)) for k, m in found.items() if m}


def tflm_arena(model: Model) -> dict[str, int]:
    """TFLM's recorded arena: total, head (planned tensors) and tail (persistent), bytes."""
    return _allocations(_tflm(model), model.name)


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
        from ai_edge_litert.interpreter import Interpreter, OpResolverType  # lazy: optional, guarded by try
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
