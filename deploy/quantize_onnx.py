"""Static int8 quantisation of an exported fp32 ONNX model, calibrated on the coreset.

Why this shape: onnxruntime's ``quantize_static`` in QDQ format (QuantizeLinear/DequantizeLinear
pairs around each quantised op) keeps the graph a plain ONNX graph that any runtime can execute,
while onnxruntime fuses the pairs into integer kernels (QLinearConv, QGemm) at load time.
Weights are int8 per output channel (symmetric), activations per tensor, min/max calibrated on
the normalised coreset features, the same data the TFLite int8 export is calibrated on. Ops the
quantiser has no integer kernel for (InstanceNormalization of the ConvNet) stay float between a
Dequantize and a Quantize; ``deploy.model_report`` lists them.

Activation type, by measurement (ConvNet width 32, onnxruntime 1.31, one thread, AMD EPYC with
AVX512-VNNI; ``bench/quantization.py``, results in ``bench/results/quantization_*.md``): with
asymmetric per-tensor activations, uint8 and int8 codes are the same grid shifted by 128, and the
two files gave identical outputs (same max |diff| to fp32, same predictions, 100 % top-1 agreement
with fp32 on the 300 FSDD test clips of a 99.7 %-accurate model). uint8 activations (U8S8) ran
about 25-30 % faster per clip (0.143 vs 0.195 ms in the benchmark, 1.00 vs 1.30 ms in an
interleaved rerun under load), so uint8 is the default. onnxruntime documents one caveat: on x86
CPUs with AVX2 but without VNNI its U8S8 kernels may saturate; if a model loses accuracy there,
pass ``activation_type="int8"`` (S8S8). The TFLite export is int8 throughout (TFLite's only
full-integer scheme).

The kit ``metadata_props`` of the fp32 file are copied over and ``kit.quantization`` is added;
both outputs (``logits``, ``embedding``) stay float32, so callers see the same interface.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from deploy.runtime.artifact import atomic_write_bytes
from deploy.runtime.errors import KitError
from deploy.runtime.safeio import require_regular_file

INPUT_NAME = "features"
OUTPUT_NAMES = ("logits", "embedding")
ACTIVATION_TYPES = ("int8", "uint8")
CALIBRATION_BATCH = 16


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """onnxruntime.quantization logs advice through the root logger; keep the CLI output clean."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def _reader(calibration: np.ndarray) -> Any:
    from onnxruntime.quantization import CalibrationDataReader  # lazy: onnxruntime only when used

    class CoresetReader(CalibrationDataReader):
        """Feeds the calibration features in batches (the graph has a dynamic batch)."""

        def __init__(self) -> None:
            self._batches = iter(
                [
                    {INPUT_NAME: calibration[i : i + CALIBRATION_BATCH]}
                    for i in range(0, len(calibration), CALIBRATION_BATCH)
                ]
            )

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._batches, None)

    return CoresetReader()


def _session(data: bytes) -> Any:
    import onnxruntime as ort  # lazy: onnxruntime only when used

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def per_channel_weights(model: Any) -> dict[str, int]:
    """Conv/Gemm weight name -> number of scales of its DequantizeLinear (1 = per tensor)."""
    from onnx import numpy_helper  # lazy: onnx only when used

    inits = {t.name: t for t in model.graph.initializer}
    producers = {out: node for node in model.graph.node for out in node.output}
    found = {}
    for node in model.graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul") or len(node.input) < 2:
            continue
        dq = producers.get(node.input[1])
        if dq is None or dq.op_type != "DequantizeLinear" or dq.input[1] not in inits:
            continue
        found[dq.input[0]] = int(numpy_helper.to_array(inits[dq.input[1]]).size)
    return found


def quantize_onnx(
    fp32_onnx: str | os.PathLike,
    out: str | os.PathLike,
    calibration: np.ndarray,
    *,
    activation_type: str = "uint8",
    min_agreement: float = 0.9,
) -> Path:
    """Write a QDQ int8 copy of ``fp32_onnx`` to ``out``, calibrated on ``calibration`` (N, C, F, T).

    Refuses (KitError, nothing written) when the quantised model's top-1 agrees with the fp32
    model on fewer than ``min_agreement`` of the calibration clips.
    """
    import onnx  # lazy: onnx only when used
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )  # lazy: onnxruntime only when used
    from onnxruntime.quantization.shape_inference import quant_pre_process  # lazy: onnxruntime only when used

    source = Path(fp32_onnx)
    require_regular_file(source, "model")  # "no such" only when missing; a folder/FIFO is said to be one
    if activation_type not in ACTIVATION_TYPES:
        raise KitError(f"activation type must be one of {', '.join(ACTIVATION_TYPES)}, not '{activation_type}'")
    try:
        original = onnx.load(str(source))
    except Exception as exc:
        raise KitError(f"{source}: not a valid ONNX model ({' '.join(str(exc).split())[:120]})") from None
    props = {p.key: p.value for p in original.metadata_props if p.key.startswith("kit.")}
    x = np.asarray(calibration, dtype=np.float32)
    in_shape = json.loads(props["kit.in_shape"]) if "kit.in_shape" in props else list(x.shape[1:])
    if x.ndim != 4 or list(x.shape[1:]) != list(in_shape) or len(x) == 0:
        raise KitError(
            f"calibration features have shape {x.shape}; {source.name} needs (N, "
            f"{', '.join(map(str, in_shape))}) with N >= 1"
        )
    if not np.isfinite(x).all():
        raise KitError("calibration features contain NaN or infinite values")
    x = np.ascontiguousarray(x)
    qtype = QuantType.QInt8 if activation_type == "int8" else QuantType.QUInt8
    with tempfile.TemporaryDirectory(prefix="kit-quant-") as tmp, _quiet():
        prepared, quantized = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(source), str(prepared))
        quantize_static(
            str(prepared),
            str(quantized),
            _reader(x),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=qtype,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
        model = onnx.load(str(quantized))
    outputs = [o.name for o in model.graph.output]
    if outputs[:2] != list(OUTPUT_NAMES):
        raise RuntimeError(f"quantised graph has outputs {outputs}, expected {list(OUTPUT_NAMES)}; not writing {out}")
    weights = per_channel_weights(model)
    agreement = _agreement(original.SerializeToString(), model, x)
    if agreement < min_agreement:
        raise KitError(
            f"{out}: the int8 model agrees with fp32 on only {agreement:.1%} of the {len(x)} calibration clips "
            f"(< {min_agreement:.0%}); not written (calibrate on more clips, or use fp32)"
        )
    props["kit.quantization"] = json.dumps(
        {
            "type": "int8",
            "format": "QDQ",
            "weights": "int8, per output channel, symmetric",
            "activations": f"{activation_type}, per tensor, min/max",
            "tool": "onnxruntime.quantization.quantize_static",
            "calibration_samples": int(len(x)),
            "calibration_top1_agreement": agreement,
            "per_channel_weights": weights,
        },
        sort_keys=True,
    )
    kept = [p for p in model.metadata_props if not p.key.startswith("kit.")]
    del model.metadata_props[:]
    for key, value in [(p.key, p.value) for p in kept] + sorted(props.items()):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    data = model.SerializeToString()
    _session(data)  # loads in onnxruntime (QDQ fusion happens here)
    atomic_write_bytes(out, data)
    return Path(out)


def _agreement(fp32: bytes, model: Any, x: np.ndarray) -> float:
    """Top-1 agreement of the quantised graph with the fp32 graph on ``x``, both in onnxruntime."""
    ref = _session(fp32).run([OUTPUT_NAMES[0]], {INPUT_NAME: x})[0]
    got = _session(model.SerializeToString()).run([OUTPUT_NAMES[0]], {INPUT_NAME: x})[0]
    return float((ref.argmax(1) == got.argmax(1)).mean())
