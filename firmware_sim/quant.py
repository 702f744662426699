"""TFLite's fixed-point requantisation, vectorised: the arithmetic every int8 kernel ends with.

Why exactly this and not ``round(acc * scale)``: an MCU never sees the float scale. TFLite converts
it once (``QuantizeMultiplier``, tensorflow/lite/kernels/internal/quantization_util.cc) into a
31-bit multiplier and a power-of-two shift, and the kernels apply them with gemmlowp's
``SaturatingRoundingDoublingHighMul`` then ``RoundingDivideByPOT`` (the double-rounding
``MultiplyByQuantizedMultiplier`` of kernels/internal/common.cc, TFLM's default build without
TFLITE_SINGLE_ROUNDING). Float rounding of the same product differs from this by one LSB on a few
percent of values, which is what "bit-exact with TFLM" rules out. numpy int64 holds every
intermediate (int32 x int32 products); C's truncating division is reproduced explicitly.
"""

from __future__ import annotations

import math

import numpy as np

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def tflite_round(x: np.ndarray | float) -> np.ndarray:
    """``std::round``: half away from zero (numpy's ``round`` is half to even)."""
    x = np.asarray(x)
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """(multiplier, shift) with real ~= multiplier * 2**(shift - 31); TFLite's QuantizeMultiplier."""
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = int(tflite_round(q * (1 << 31)))
    if q_fixed == 1 << 31:
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return q_fixed, shift


def quantize_multipliers(reals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel ``quantize_multiplier`` as int64 arrays."""
    pairs = [quantize_multiplier(float(r)) for r in np.asarray(reals, dtype=np.float64).ravel()]
    return np.array([p[0] for p in pairs], np.int64), np.array([p[1] for p in pairs], np.int64)


def _truncating_div_pow2(x: np.ndarray, bits: int) -> np.ndarray:
    """C integer division by 2**bits (rounds toward zero)."""
    return np.where(x >= 0, x >> bits, -((-x) >> bits))


def saturating_rounding_doubling_high_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """gemmlowp SaturatingRoundingDoublingHighMul on int32 values held in int64."""
    a = np.asarray(a, np.int64)
    b = np.asarray(b, np.int64)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    out = _truncating_div_pow2(ab + nudge, 31)
    return np.where((a == INT32_MIN) & (b == INT32_MIN), INT32_MAX, out)


def rounding_divide_by_pot(x: np.ndarray, exponent: np.ndarray | int) -> np.ndarray:
    """gemmlowp RoundingDivideByPOT: x / 2**exponent rounded half away from zero."""
    x = np.asarray(x, np.int64)
    exponent = np.asarray(exponent, np.int64)
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def wrap_int32(x: np.ndarray) -> np.ndarray:
    """Two's-complement wrap to int32 (what C's int32 arithmetic does on overflow)."""
    return ((np.asarray(x, np.int64) + 2**31) & 0xFFFFFFFF) - 2**31


def multiply_by_quantized_multiplier(
    x: np.ndarray, multiplier: np.ndarray | int, shift: np.ndarray | int
) -> np.ndarray:
    """TFLite MultiplyByQuantizedMultiplier (double rounding); broadcasts per-channel params."""
    shift = np.asarray(shift, np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    shifted = wrap_int32(np.asarray(x, np.int64) << left)
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(shifted, multiplier), right)


def activation_range(
    activation: str, scale: float, zero_point: int, qmin: int = -128, qmax: int = 127
) -> tuple[int, int]:
    """CalculateActivationRangeQuantized: the int8 clamp of a fused activation."""

    def quantize(value: float) -> int:
        return zero_point + int(tflite_round(np.float32(value) / np.float32(scale)))

    if activation == "RELU":
        return max(qmin, quantize(0.0)), qmax
    if activation == "RELU6":
        return max(qmin, quantize(0.0)), min(qmax, quantize(6.0))
    if activation == "RELU_N1_TO_1":
        return max(qmin, quantize(-1.0)), min(qmax, quantize(1.0))
    return qmin, qmax


def quantize_float(x: np.ndarray, scale: float, zero_point: int, dtype: str = "int8") -> np.ndarray:
    """AffineQuantize: round(x / scale) + zero_point in float32 arithmetic, clamped to ``dtype``."""
    info = np.iinfo(dtype)
    q = tflite_round(np.asarray(x, np.float32) / np.float32(scale)).astype(np.int64) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """reference_ops::Dequantize: float32(double(scale) * (q - zero_point))."""
    return (np.float64(np.float32(scale)) * (np.asarray(q, np.int64) - zero_point)).astype(np.float32)
