"""Run an int8 TFLite graph the way TensorFlow Lite Micro does, op by op, in integers.

Why a simulator when TFLM has a Python wheel: the wheel is not installable everywhere the kit runs
(and is not a device requirement), it reports nothing per layer, and it runs one clip at a time.
This interpreter takes the parsed ``Model``, quantises float features with the input tensor's own
scale/zero point (AffineQuantize), runs every operator with ``kernels.KERNELS`` on a batch of clips,
and returns the raw int8 outputs by name (``logits``, ``embedding``), which the tests compare with
TFLM's byte for byte; ``run_float`` dequantises them.
"""

from __future__ import annotations

import time

import numpy as np

from deploy.runtime.errors import KitError

from .kernels import KERNELS
from .model import Model, load_model
from .quant import dequantize, quantize_float


def unsupported_ops(model: Model) -> list[str]:
    return sorted({op.opcode for op in model.operators if op.opcode not in KERNELS})


class Interpreter:
    """``Interpreter(model_or_path).run(features) -> {output name: int8 (N, ...)}``."""

    def __init__(self, model: Model | str | bytes) -> None:
        self.model = load_model(model).require_int8()
        missing = unsupported_ops(self.model)
        if missing:
            raise KitError(
                f"{self.model.name}: firmware_sim does not support the operator(s) {', '.join(missing)} "
                f"(supported: {', '.join(sorted(KERNELS))})"
            )
        self.input = self.model.tensors[self.model.inputs[0]]
        self.layer_seconds: list[float] = [0.0] * len(self.model.operators)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.input.shape[1:])

    @property
    def output_names(self) -> list[str]:
        return list(self.model.output_names)

    def quantize_input(self, features: np.ndarray) -> np.ndarray:
        """Float features (N, *input) or (*input) -> int8 with the input tensor's parameters."""
        x = np.asarray(features)
        if x.shape == self.input_shape:
            x = x[None]
        if tuple(x.shape[1:]) != self.input_shape:
            raise KitError(
                f"{self.model.name}: features have shape {tuple(np.shape(features))}; the model needs "
                f"(N, {', '.join(map(str, self.input_shape))})"
            )
        if x.dtype == np.int8:
            return x
        if not np.isfinite(x).all():
            raise KitError(f"{self.model.name}: features contain NaN or infinite values")
        return quantize_float(x, self.input.scale, self.input.zero_point)

    def run(self, features: np.ndarray) -> dict[str, np.ndarray]:
        """Raw int8 outputs by name, one row per clip (int8 input is used as it is)."""
        values: dict[int, np.ndarray] = {self.model.inputs[0]: self.quantize_input(features)}
        remaining = {}
        for op in self.model.operators:  # last use of each tensor, so memory is freed as on the MCU
            for t in op.inputs:
                remaining[t] = op.index
        for op in self.model.operators:
            start = time.perf_counter()
            args = [values.get(t) if t >= 0 else None for t in op.inputs]
            if args and args[0] is None and self.model.tensors[op.inputs[0]].data is not None:
                args[0] = self.model.tensors[op.inputs[0]].data[None]
            values[op.outputs[0]] = KERNELS[op.opcode](self.model, op, args)
            for t in op.inputs:
                if remaining.get(t) == op.index and t not in self.model.outputs:
                    values.pop(t, None)
            self.layer_seconds[op.index] += time.perf_counter() - start
        return {name: values[t] for name, t in zip(self.model.output_names, self.model.outputs)}

    def run_float(self, features: np.ndarray) -> dict[str, np.ndarray]:
        """``run`` dequantised with each output tensor's scale and zero point."""
        raw = self.run(features)
        out = {}
        for name, t in zip(self.model.output_names, self.model.outputs):
            tensor = self.model.tensors[t]
            out[name] = (
                raw[name]
                if tensor.dtype.startswith("float")
                else dequantize(raw[name], tensor.scale, tensor.zero_point)
            )
        return out
