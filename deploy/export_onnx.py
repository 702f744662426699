"""Export a trained kit model to ONNX for the numpy + onnxruntime edge runtime.

Why ONNX with metadata: the device must turn raw audio into exactly the features the model was
trained on, so the class names, the feature configuration and the normaliser travel inside the
``.onnx`` file (``metadata_props``), and ``deploy.runtime.inference.OnnxModel`` needs nothing
else. The graph has one input ``features`` (N, C, F, T) float32 with a dynamic batch and two
outputs, ``logits`` (N, K) and ``embedding`` (N, D) (for on-device kNN / fine-tuning heads).

The torch 2.x ``torch.export``-based exporter (``dynamo=True``) is used: the legacy TorchScript
exporter was measured to produce wrong outputs for BatchNorm models here (max |diff| 0.4), so
every export is checked against PyTorch in onnxruntime before the file is written.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from deploy.runtime.artifact import atomic_write_bytes
from deploy.runtime.errors import KitError

OPSET = 18
MIN_OPSET = 17
INPUT_NAME = "features"
OUTPUT_NAMES = ("logits", "embedding")
METADATA_VERSION = "1"


def onnx_metadata(model: Any, meta: dict[str, Any]) -> dict[str, str]:
    """The ``kit.*`` metadata_props (all strings, JSON where structured)."""
    props = {
        "kit.metadata_version": METADATA_VERSION,
        "kit.arch": model.arch,
        "kit.arch_kwargs": json.dumps(model.arch_kwargs, sort_keys=True),
        "kit.in_shape": json.dumps(list(model.in_shape)),
        "kit.embedding_dim": str(int(model.embedding_dim)),
    }
    if meta.get("classes") is not None:
        props["kit.classes"] = json.dumps(list(meta["classes"]))
    config = meta.get("feature_config")
    if config is not None:
        props["kit.feature_config"] = json.dumps(
            config if isinstance(config, dict) else config.to_dict(), sort_keys=True
        )
    normalizer = meta.get("normalizer")
    if normalizer is not None:
        mean = normalizer["mean"] if isinstance(normalizer, dict) else normalizer.mean
        std = normalizer["std"] if isinstance(normalizer, dict) else normalizer.std
        props["kit.normalizer"] = json.dumps(
            {"mean": np.asarray(mean, dtype=np.float32).tolist(), "std": np.asarray(std, dtype=np.float32).tolist()}
        )
    for key in ("seed", "metrics", "source"):
        if meta.get(key) is not None:
            props[f"kit.{key}"] = json.dumps(meta[key], sort_keys=True, default=str)
    return props


def _with_embedding(model: Any) -> Any:
    """Wrap ``model`` so its forward returns (logits, embedding), the two graph outputs."""
    import torch  # lazy: torch only when used

    class WithEmbedding(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.inner.forward_with_embedding(x)

    return WithEmbedding(model).eval()


def _to_onnx_proto(model: Any, opset: int) -> Any:
    """Trace with torch.export and return the ``onnx.ModelProto`` (quietly: the exporter is chatty)."""
    import torch  # lazy: torch only when used

    example = torch.zeros((2, *model.in_shape), dtype=torch.float32)
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    quiet = io.StringIO()
    onnx_logger = logging.getLogger("torch.onnx")
    level = onnx_logger.level
    onnx_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                _with_embedding(model),
                (example,),
                input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES),
                opset_version=opset,
                dynamic_shapes=({0: batch},),
                dynamo=True,
                verbose=False,
            )
    finally:
        onnx_logger.setLevel(level)
    return program.model_proto


def check_parity(onnx_bytes: bytes, model: Any, n: int = 4, seed: int = 0) -> float:
    """Max |logits_onnx - logits_torch| on random inputs (run by onnxruntime, one thread)."""
    import onnxruntime as ort  # lazy: onnxruntime only when used
    import torch  # lazy: torch only when used

    x = np.random.default_rng(seed).standard_normal((n, *model.in_shape)).astype(np.float32)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
    logits, embedding = session.run(list(OUTPUT_NAMES), {INPUT_NAME: x})
    with torch.no_grad():
        ref_logits, ref_embedding = model.forward_with_embedding(torch.from_numpy(x))
    return float(max(np.abs(logits - ref_logits.numpy()).max(), np.abs(embedding - ref_embedding.numpy()).max()))


def check_opset(opset: int) -> int:
    """An opset this onnx package knows and the kit's graphs use (checked before any work)."""
    import onnx  # lazy: onnx only when used

    highest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= highest:
        raise KitError(f"--opset {opset}: choose an ONNX opset from {MIN_OPSET} to {highest}")
    return opset


def export_onnx(
    model_or_path: Any,
    out_path: str | os.PathLike,
    meta: dict[str, Any] | None = None,
    *,
    opset: int = OPSET,
    verify_atol: float | None = 1e-4,
) -> Path:
    """Export a model artifact path (``.kit``) or a ``KitModel`` to fp32 ONNX at ``out_path``.

    ``meta`` (classes, feature_config, normalizer, ...) is read from the artifact when a path is
    given; for a module pass it yourself (without it the file lacks what the classifier needs).
    Unless ``verify_atol`` is None the export is run in onnxruntime and refused if its outputs
    differ from PyTorch by more than ``verify_atol``. The file is written atomically.
    """
    import onnx  # lazy: onnx only when used

    check_opset(opset)
    if isinstance(model_or_path, (str, os.PathLike)):
        from kit.models import load_model  # lazy: pulls in torch

        model, stored = load_model(model_or_path)
        meta = {**stored, **(meta or {})}
    else:
        model, meta = model_or_path, dict(meta or {})
    model = model.cpu().eval()
    try:
        proto = _to_onnx_proto(model, opset)
    except (RuntimeError, ValueError, NotImplementedError) as exc:  # torch.onnx: an opset it cannot target
        if opset == OPSET:
            raise
        raise KitError(
            f"--opset {opset}: torch cannot export to this opset ({' '.join(str(exc).split())[:160]})"
        ) from None
    for key, value in onnx_metadata(model, meta).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "audio-distill-kit"
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        raise KitError(
            f"--opset {opset}: the exported model does not validate ({' '.join(str(exc).split())[:160]})"
        ) from None
    data = proto.SerializeToString()
    if verify_atol is not None:
        diff = check_parity(data, model)
        if not diff <= verify_atol:
            raise KitError(f"{out_path}: ONNX export differs from PyTorch by {diff:.3g} (> {verify_atol}); not written")
    atomic_write_bytes(out_path, data)
    return Path(out_path)
