"""TensorFlow Lite Micro from Python: run an int8 ``.tflite`` as a microcontroller would, and read
the tensor arena it needs.

Why TFLM and not LiteRT for these numbers: the arena (activations, scratch buffers and the
interpreter's own structures, planned by TFLM's greedy memory planner) is what must fit in an
MCU's SRAM, and only TFLM's RecordingMicroAllocator reports it. Its int8 kernels are the reference
kernels. LiteRT with ``OpResolverType.BUILTIN_REF`` is the closest desktop match: bit-identical
for CONV_2D, DEPTHWISE_CONV_2D and AVERAGE_POOL_2D, but (ai-edge-litert 2.3) its FULLY_CONNECTED
requantises with single rounding where TFLM uses double rounding (SaturatingRoundingDoublingHighMul
then RoundingDivideByPOT), so logits at a rounding tie differ by 1 LSB (tests/test_mcu_models.py
pins TFLM's FC to the double-rounding arithmetic). LiteRT's default XNNPACK kernels differ more
(issue 14: up to 2 LSB in 55 % of the values).

PyPI ``tflite-micro`` (the ``mcu`` extra) is optional: without it ``TflmModel`` raises a one-line
``KitError`` and ``tflm_available()`` is False. The Python binding prints the allocation record
to the C-level stderr only, so ``arena_bytes`` captures file descriptor 2 around that call.
"""
from __future__ import annotations

import os
import re
import sys
import tempfile
from typing import Any

import numpy as np

from deploy.model_report import tflite_report
from deploy.runtime.errors import KitError

#: arena handed to the interpreter: generous, the recorded *use* is what is reported
MIN_ARENA = 8 << 20
_TOTAL = re.compile(r"Arena allocation total (\d+) bytes")


def tflm_available() -> bool:
    """True when the ``tflite-micro`` package can be imported."""
    try:
        from tflite_micro.python.tflite_micro import runtime  # noqa: F401
    except ImportError:
        return False
    return True


def _capture_stderr(call: Any) -> str:
    """Run ``call()`` and return what C code wrote to file descriptor 2 meanwhile."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            call()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        sink.seek(0)
        return sink.read().decode("utf-8", "replace")


class TflmModel:
    """One ``.tflite`` flatbuffer in the TFLM interpreter (``name`` is used in error messages)."""

    def __init__(self, data: bytes, name: str = "<tflite>") -> None:
        try:
            from tflite_micro.python.tflite_micro import runtime
        except ImportError:
            raise KitError("tflite-micro is not installed; pip install 'audio-distill-kit[mcu]' "
                           "(or tflite-micro) to run models in TensorFlow Lite Micro") from None
        self.name = name
        self._data = bytes(data)
        try:
            self.interpreter = runtime.Interpreter.from_bytes(self._data, arena_size=max(MIN_ARENA, 4 * len(data)))
        except (RuntimeError, ValueError) as exc:
            raise KitError(f"{name}: TensorFlow Lite Micro cannot load this model ({' '.join(str(exc).split())[:160]})") from None
        self.n_outputs = len(tflite_report(self._data, name).outputs)  # the binding has no output count
        self.input = self.interpreter.get_input_details(0)
        self._invoked = False

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        """Raw outputs (subgraph order) for one input already in the file's dtype and layout."""
        x = np.asarray(x)
        if x.dtype != self.input["dtype"] or list(x.shape) != [int(v) for v in self.input["shape"]]:
            raise KitError(f"{self.name}: TFLM input must be {np.dtype(self.input['dtype']).name}"
                           f"{[int(v) for v in self.input['shape']]}, got {x.dtype}{list(x.shape)}")
        self.interpreter.set_input(np.ascontiguousarray(x), 0)
        self.interpreter.invoke()
        self._invoked = True
        return [np.array(self.interpreter.get_output(i)) for i in range(self.n_outputs)]

    def arena_bytes(self) -> int:
        """Bytes of tensor arena the model used (TFLM's RecordingMicroAllocator total)."""
        if not self._invoked:  # scratch buffers are requested during the first invoke's prepare
            self.run(np.zeros([int(v) for v in self.input["shape"]], dtype=self.input["dtype"]))
        record = _capture_stderr(self.interpreter.print_allocations)
        match = _TOTAL.search(record)
        if match is None:
            raise RuntimeError(f"{self.name}: TFLM printed no arena total (got {record[:200]!r})")
        return int(match.group(1))
