"""The deployable bundle: everything a device needs to listen for keywords, in one verified file.

Why one file and why these parts: a Raspberry Pi or phone gets the model(s) (ONNX and/or TFLite,
fp32 and/or int8), the exact front-end (``FeatureConfig`` + ``Normalizer``), the class names, the
detector settings, and the coreset as replay memory for on-device fine-tuning, all in a kit
artifact (zip + manifest with SHA-256 per member, ``deploy/runtime/artifact.py``) of kind
``bundle``. Shipping them separately invites a model running with another model's front-end.

The classifier head is stored outside the model graph (``head_weight`` (K, D), ``head_bias``
(K,)) and the runtime always computes ``logits = embedding @ head_weight.T + head_bias``: a
fine-tune on the device then only replaces the head, never the model files.

The replay coreset is stored as int8 with a symmetric scale per (feature channel, coefficient)
row, i.e. ``x ~= q * scale[c, f]`` with ``|x - q * scale| <= scale / 2`` (4x smaller than
float32), or as float16; the container deflates every member on top.

Loading verifies, besides the container's checksums and kind: the bundle schema version (a newer
one is refused), that the head has one row per class and one column per embedding dimension,
that every listed model file is present (with its recorded size), that the feature configuration
produces the models' input shape, that the detector window is the model's clip length, and that
replay features/labels fit; each problem is a one-line ``KitError`` naming the file. Nothing is
extracted to disk: members are read from the zip into memory.

``main(argv)`` is the device sub-command ``python -m <runtime> info BUNDLE``.
"""

from __future__ import annotations

import argparse
import json
import os
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .artifact import Artifact, configured_key, read_artifact, verify_signature, write_artifact
from .classifier import HeadClassifier
from .classify import KeywordClassifier
from .coreset import Normalizer
from .errors import KitError
from .features import FeatureConfig
from .models import RuntimeModel, open_model, runtime_installed, verify_model_bytes
from .recognizer import DetectorSettings

BUNDLE_KIND = "bundle"
#: Version of the bundle layout inside the artifact (members + meta keys); readers refuse newer.
BUNDLE_SCHEMA = 1
REPLAY_DTYPES = ("int8", "float16")
MODEL_FORMATS = {".onnx": "onnx", ".tflite": "tflite"}


def model_format(name: str) -> str:
    """ "onnx" or "tflite" from a bundle model file name such as ``model.int8.tflite``."""
    for suffix, fmt in MODEL_FORMATS.items():
        if name.endswith(suffix):
            return fmt
    raise KitError(f"bundle model file '{name}' is neither .onnx nor .tflite")


def model_precision(name: str) -> str:
    """ "int8" when the file name says so (``model.int8.onnx``), else "fp32"."""
    return "int8" if ".int8." in name else "fp32"


# Replay quantisation -----------------------------------------------------------------------------
def quantize_replay(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per (channel, coefficient) row: returns ``q`` (N, C, F, T) int8 and ``scale`` (C, F).

    ``scale = max |x| / 127`` over clips and frames of each row, so every value is representable
    and the rounding error is at most ``scale / 2``. Normalised features have rows of very
    different ranges (c0 vs. delta-deltas), hence one scale per row rather than one per bundle.
    """
    x = np.asarray(features, dtype=np.float32)
    if x.ndim != 4:
        raise KitError(f"replay features must be (N, C, F, T), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise KitError("replay features contain NaN or infinite values")
    amax = np.abs(x).max(axis=(0, 3)) if len(x) else np.zeros(x.shape[1:3], np.float32)
    scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(x / scale[None, :, :, None]), -127, 127).astype(np.int8)
    return q, scale


def dequantize_replay(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return (q.astype(np.float32) * np.asarray(scale, np.float32)[None, :, :, None]).astype(np.float32)


# The bundle --------------------------------------------------------------------------------------
@dataclass
class Bundle:
    """A deployable bundle in memory (see the module docstring). ``replay_features`` are float32
    in memory whatever ``replay_dtype`` they are stored as."""

    classes: list[str]
    feature_config: FeatureConfig
    normalizer: Normalizer | None
    models: dict[str, bytes]
    default_model: str
    head_weight: np.ndarray  # (K, D) float32
    head_bias: np.ndarray  # (K,) float32
    replay_features: np.ndarray  # (N, C, F, T) float32, normalised
    replay_labels: np.ndarray  # (N,) int64
    detector: DetectorSettings = field(default_factory=DetectorSettings)
    provenance: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    replay_dtype: str = "int8"
    #: per model file: format, precision, in_shape, embedding_dim (recorded by the builder)
    model_info: dict[str, dict] = field(default_factory=dict)
    created: str = ""
    #: where the bundle came from (its file), to name it in errors; not stored in the file
    origin: str = field(default="bundle", compare=False)

    def __post_init__(self) -> None:
        self.classes = [str(c) for c in self.classes]
        self.head_weight = np.asarray(self.head_weight, dtype=np.float32)
        self.head_bias = np.asarray(self.head_bias, dtype=np.float32)
        self.replay_features = np.asarray(self.replay_features, dtype=np.float32)
        self.replay_labels = np.asarray(self.replay_labels).astype(np.int64, copy=False)
        self.models = {str(k): bytes(v) for k, v in self.models.items()}

    # Checks ------------------------------------------------------------------------------------
    @property
    def embedding_dim(self) -> int:
        return int(self.head_weight.shape[1]) if self.head_weight.ndim == 2 else 0

    def validate(self, where: str | os.PathLike = "bundle") -> "Bundle":
        """Raise a one-line ``KitError`` naming ``where`` if the parts do not fit together."""
        k = len(self.classes)
        if k < 2:
            raise KitError(f"{where}: a bundle needs at least 2 classes, it has {k}")
        if len(set(self.classes)) != k:
            raise KitError(f"{where}: class names are not unique ({', '.join(self.classes)})")
        if self.head_weight.ndim != 2 or self.head_weight.shape[0] != k:
            raise KitError(
                f"{where}: head has {self.head_weight.shape[0] if self.head_weight.ndim else 0} rows "
                f"(shape {self.head_weight.shape}) but the bundle lists {k} classes"
            )
        if self.head_bias.shape != (k,):
            raise KitError(f"{where}: head bias has shape {self.head_bias.shape}, expected ({k},) for {k} classes")
        if not (np.isfinite(self.head_weight).all() and np.isfinite(self.head_bias).all()):
            raise KitError(f"{where}: head weights contain NaN or infinite values")
        if not self.models:
            raise KitError(f"{where}: bundle holds no model file")
        for name in self.models:
            model_format(name)
        if self.default_model not in self.models:
            raise KitError(
                f"{where}: default model '{self.default_model}' is missing "
                f"(bundle holds {', '.join(sorted(self.models))})"
            )
        shape = tuple(self.feature_config.shape)
        for name, info in self.model_info.items():
            if name not in self.models:
                raise KitError(f"{where}: model file '{name}' listed in the bundle is missing")
            in_shape = info.get("in_shape")
            if in_shape is not None and tuple(int(v) for v in in_shape) != shape:
                raise KitError(
                    f"{where}: feature config gives feature maps of shape {shape} but model '{name}' "
                    f"expects {tuple(in_shape)}"
                )
            dim = info.get("embedding_dim")
            if dim is not None and int(dim) != self.embedding_dim:
                raise KitError(
                    f"{where}: head expects {self.embedding_dim}-dim embeddings but model '{name}' outputs {dim}"
                )
        if self.normalizer is not None:
            want = shape[:2]
            if tuple(self.normalizer.mean.shape) != want or tuple(self.normalizer.std.shape) != want:
                raise KitError(
                    f"{where}: normaliser has shape {self.normalizer.mean.shape}, the feature config needs {want}"
                )
        x, y = self.replay_features, self.replay_labels
        if x.ndim != 4 or tuple(x.shape[1:]) != shape:
            raise KitError(f"{where}: replay features have shape {x.shape}, expected (N, {', '.join(map(str, shape))})")
        if y.shape != (len(x),):
            raise KitError(f"{where}: {len(x)} replay features but replay labels of shape {y.shape}")
        if len(y) and (y.min() < 0 or y.max() >= k):
            raise KitError(f"{where}: replay labels fall outside the bundle's {k} classes (range {y.min()}..{y.max()})")
        if abs(self.detector.window_s - self.feature_config.duration_s) > 1e-6:
            raise KitError(
                f"{where}: detector window ({self.detector.window_s:g} s) differs from the model's clip length "
                f"({self.feature_config.duration_s:g} s)"
            )
        if self.replay_dtype not in REPLAY_DTYPES:
            raise KitError(f"{where}: replay dtype must be {' or '.join(REPLAY_DTYPES)}, not '{self.replay_dtype}'")
        return self

    # Serialisation -----------------------------------------------------------------------------
    def _model_info(self) -> dict[str, dict]:
        info = {}
        for name, blob in sorted(self.models.items()):
            recorded = dict(self.model_info.get(name, {}))
            recorded.setdefault("in_shape", list(self.feature_config.shape))
            recorded.setdefault("embedding_dim", self.embedding_dim)
            recorded.update({"format": model_format(name), "precision": model_precision(name), "bytes": len(blob)})
            info[name] = recorded
        return info

    def to_artifact(self) -> Artifact:
        self.validate()
        arrays: dict[str, np.ndarray] = {
            "head_weight": self.head_weight,
            "head_bias": self.head_bias,
            "replay_labels": self.replay_labels,
        }
        if self.replay_dtype == "int8":
            arrays["replay_q"], arrays["replay_scale"] = quantize_replay(self.replay_features)
        else:
            arrays["replay_f16"] = self.replay_features.astype(np.float16)
        if self.normalizer is not None:
            arrays["norm_mean"] = np.asarray(self.normalizer.mean, np.float32)
            arrays["norm_std"] = np.asarray(self.normalizer.std, np.float32)
        meta = {
            "bundle_schema": BUNDLE_SCHEMA,
            "classes": list(self.classes),
            "feature_config": self.feature_config.to_dict(),
            "default_model": self.default_model,
            "models": self._model_info(),
            "detector": self.detector.to_dict(),
            "replay": {
                "dtype": self.replay_dtype,
                "n": int(len(self.replay_features)),
                "per_class": {
                    c: int(n)
                    for c, n in zip(self.classes, np.bincount(self.replay_labels, minlength=len(self.classes)))
                },
            },
            "provenance": self.provenance,
            "history": self.history,
        }
        blobs = {f"models/{name}": blob for name, blob in self.models.items()}
        return Artifact(kind=BUNDLE_KIND, meta=meta, arrays=arrays, blobs=blobs, created=self.created)

    def save(self, path: str | os.PathLike, sign_key: bytes | None = None) -> Path:
        """Write the bundle atomically (verified first: a bundle that would not load is not written)."""
        return write_artifact(path, self.to_artifact(), sign_key=sign_key or configured_key())

    @classmethod
    def from_artifact(cls, artifact: Artifact, path: str | os.PathLike = "<memory>") -> "Bundle":
        meta, arrays = artifact.meta, artifact.arrays
        if artifact.kind != BUNDLE_KIND:
            raise KitError(f"{path}: is a '{artifact.kind}' artifact, expected a bundle")
        schema = meta.get("bundle_schema") if isinstance(meta, dict) else None
        if not isinstance(schema, int):
            raise KitError(f"{path}: not a valid bundle (no bundle schema version in its metadata)")
        if schema > BUNDLE_SCHEMA:
            raise KitError(
                f"{path}: bundle schema version {schema} is newer than this runtime reads ({BUNDLE_SCHEMA}); "
                "update the runtime"
            )
        try:
            classes = list(meta["classes"])
            config = FeatureConfig.from_dict(meta["feature_config"])
            detector = DetectorSettings.from_dict(meta.get("detector", {}))
            info = {str(k): dict(v) for k, v in meta["models"].items()}
            replay_meta = meta.get("replay", {})
            replay_dtype = replay_meta.get("dtype", "int8")
            head_weight, head_bias = arrays["head_weight"], arrays["head_bias"]
            labels = arrays["replay_labels"]
            if replay_dtype == "int8":
                q, scale = arrays["replay_q"], arrays["replay_scale"]
                if q.dtype != np.int8 or q.ndim != 4 or scale.shape != q.shape[1:3]:
                    raise KitError(f"replay int8 features {q.dtype} {q.shape} do not fit their scale {scale.shape}")
                replay = dequantize_replay(q, scale)
            elif replay_dtype == "float16":
                replay = arrays["replay_f16"].astype(np.float32)
            else:
                raise KitError(f"unknown replay dtype '{replay_dtype}'")
        except KeyError as exc:
            raise KitError(f"{path}: bundle is missing {exc.args[0]!r}") from None
        except (KitError, TypeError, ValueError, AttributeError) as exc:
            raise KitError(f"{path}: invalid bundle ({exc})") from None
        models: dict[str, bytes] = {}
        for name in info:
            blob = artifact.blobs.get(f"models/{name}")
            if blob is None:
                raise KitError(f"{path}: model file '{name}' listed in the bundle is missing")
            models[name] = blob
        normalizer = None
        if "norm_mean" in arrays or "norm_std" in arrays:
            if "norm_mean" not in arrays or "norm_std" not in arrays:
                raise KitError(f"{path}: bundle normaliser is incomplete (needs norm_mean and norm_std)")
            normalizer = Normalizer(arrays["norm_mean"].astype(np.float32), arrays["norm_std"].astype(np.float32))
        for name, entry in info.items():
            if entry.get("bytes") is not None and int(entry["bytes"]) != len(models[name]):
                raise KitError(
                    f"{path}: model file '{name}' has {len(models[name])} bytes, the bundle recorded {entry['bytes']}"
                )
        bundle = cls(
            classes=classes,
            feature_config=config,
            normalizer=normalizer,
            models=models,
            default_model=str(meta.get("default_model", "")),
            head_weight=head_weight,
            head_bias=head_bias,
            replay_features=replay,
            replay_labels=labels,
            detector=detector,
            provenance=dict(meta.get("provenance") or {}),
            history=list(meta.get("history") or []),
            replay_dtype=replay_dtype,
            model_info=info,
            created=artifact.created,
            origin=str(path),
        )
        return bundle.validate(path).verify_models()

    def verify_models(self) -> "Bundle":
        """Open every model file (not only the default one): a garbage blob with consistent checksums is
        refused when the bundle is loaded, by inspect, info and deploy alike, not later by live."""
        for name in sorted(self.models):
            if runtime_installed(model_format(name)):
                self.open_model(name)  # also checks the input shape against the feature config
            else:  # e.g. the .tflite member on an onnxruntime-only device: what can be checked here is
                verify_model_bytes(self.models[name], model_format(name), f"{self.origin} member blobs/models/{name}")
        return self

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Bundle":
        """Read and verify a bundle file (see the module docstring for what is checked); when a key is
        configured (``$KIT_BUNDLE_KEY``, ``--key``), its signature first."""
        key = configured_key()
        if key is not None:
            verify_signature(path, key)
        return cls.from_artifact(read_artifact(path, kind=BUNDLE_KIND), path)

    # Use ---------------------------------------------------------------------------------------
    def open_model(self, name: str | None = None, threads: int = 1) -> RuntimeModel:
        """A runtime model (ONNX or TFLite, from the file name) for one of the bundle's model files."""
        name = name or self.default_model
        if name not in self.models:
            raise KitError(f"{self.origin}: bundle has no model '{name}' (it holds {', '.join(sorted(self.models))})")
        label = f"{self.origin} member blobs/models/{name}"
        model = open_model(self.models[name], fmt=model_format(name), threads=threads, label=label)
        shape = tuple(self.feature_config.shape)
        if model.input_shape is not None and tuple(model.input_shape) != shape:
            raise KitError(
                f"{label}: model expects input {tuple(model.input_shape)} but the feature config gives {shape}"
            )
        return model

    def with_head(
        self,
        classes: list[str],
        weight: np.ndarray,
        bias: np.ndarray,
        history_entry: dict,
        replay_features: np.ndarray | None = None,
        replay_labels: np.ndarray | None = None,
    ) -> "Bundle":
        """A new bundle with another head (after a fine-tune); classes may only grow by appending."""
        classes = [str(c) for c in classes]
        if classes[: len(self.classes)] != list(self.classes):
            raise KitError(
                f"new classes {classes} must start with the bundle's classes {list(self.classes)} (append only)"
            )
        new = replace(
            self,
            classes=classes,
            head_weight=np.asarray(weight, np.float32),
            head_bias=np.asarray(bias, np.float32),
            history=[*self.history, dict(history_entry)],
            replay_features=self.replay_features if replay_features is None else replay_features,
            replay_labels=self.replay_labels if replay_labels is None else replay_labels,
            created="",
        )
        return new.validate("fine-tuned bundle")

    def summary(self) -> dict:
        """What ``info`` and ``kit inspect`` show (JSON-ready)."""
        config = self.feature_config
        return {
            "classes": list(self.classes),
            "default_model": self.default_model,
            "models": self._model_info(),
            "feature_config": config.to_dict(),
            "input_shape": list(config.shape),
            "embedding_dim": self.embedding_dim,
            "normalizer": self.normalizer is not None,
            "replay": {
                "n": int(len(self.replay_features)),
                "dtype": self.replay_dtype,
                "per_class": {
                    c: int(n)
                    for c, n in zip(self.classes, np.bincount(self.replay_labels, minlength=len(self.classes)))
                },
            },
            "detector": self.detector.to_dict(),
            "provenance": self.provenance,
            "history": self.history,
            "created": self.created,
        }


# Classification with a bundle --------------------------------------------------------------------
class BundleClassifier(KeywordClassifier):
    """Audio -> normalised features -> embedding (model file) -> logits (the bundle's head).

    The same front-end as training (``extract_features`` + the bundle's normaliser), so a
    device classifies exactly the features the model and head were fitted on. Everything but the
    construction (features, probabilities, top-k) is ``KeywordClassifier``'s; ``model`` is the
    runtime model of the chosen file and ``classifier`` its ``HeadClassifier``.
    """

    def __init__(self, bundle: Bundle, model_name: str | None = None, threads: int = 1) -> None:
        self.bundle = bundle
        self.model_name = model_name or bundle.default_model
        self.model = bundle.open_model(self.model_name, threads=threads)
        self.classifier = HeadClassifier(
            self.model,
            bundle.head_weight,
            bundle.head_bias,
            bundle.classes,
            bundle.feature_config,
            bundle.normalizer,
            name=self.model_name,
        )
        self._bind()


# Sizes and the ``info`` sub-command ----------------------------------------------------------------
def member_sizes(path: str | os.PathLike) -> dict[str, tuple[int, int]]:
    """{member: (bytes, compressed bytes)} from the zip directory (read only, nothing extracted)."""
    try:
        with zipfile.ZipFile(path) as zf:
            return {info.filename: (info.file_size, info.compress_size) for info in zf.infolist()}
    except (zipfile.BadZipFile, OSError) as exc:
        raise KitError(f"{path}: not a readable kit artifact ({exc})") from None


def _kib(n: int) -> str:
    return f"{n / 1024:.1f} KiB"


def describe(bundle: Bundle, path: str | os.PathLike | None = None) -> list[tuple[str, str]]:
    """(key, value) rows describing a bundle, with on-disk sizes when ``path`` is given."""
    sizes = member_sizes(path) if path is not None else {}
    config = bundle.feature_config
    rows = [("classes", f"{len(bundle.classes)}: {', '.join(bundle.classes)}")]
    for name, info in bundle._model_info().items():
        stored = sizes.get(f"blobs/models/{name}")
        extra = f", {_kib(stored[1])} compressed" if stored else ""
        mark = " (default)" if name == bundle.default_model else ""
        rows.append(
            (
                f"model {name}{mark}",
                f"{info['format']} {info['precision']}, {_kib(info['bytes'])}{extra}, "
                f"input {tuple(info['in_shape'])}, embedding {info['embedding_dim']}",
            )
        )
    rows.append(("head", f"linear {bundle.embedding_dim} -> {len(bundle.classes)}"))
    rows.append(
        (
            "front-end",
            f"{config.kind} {config.shape} @ {config.sample_rate} Hz, {config.duration_s:g} s, "
            f"window {config.window_ms:g} ms, hop {config.hop_ms:g} ms"
            + (", normalised" if bundle.normalizer is not None else ""),
        )
    )
    replay_name = "arrays/replay_q.npy" if bundle.replay_dtype == "int8" else "arrays/replay_f16.npy"
    stored = sizes.get(replay_name)
    counts = np.bincount(bundle.replay_labels, minlength=len(bundle.classes))
    per_class = ", ".join(f"{c}:{n}" for c, n in zip(bundle.classes, counts))
    rows.append(
        (
            "replay",
            f"{len(bundle.replay_features)} x {config.shape} {bundle.replay_dtype}"
            + (f", {_kib(stored[0])} ({_kib(stored[1])} compressed)" if stored else "")
            + f" [{per_class}]",
        )
    )
    rows.append(("detector", ", ".join(f"{k}={v}" for k, v in bundle.detector.to_dict().items())))
    provenance = bundle.provenance
    for key in ("model", "coreset", "method", "seed", "metrics", "checks"):
        if key in provenance:
            value = provenance[key]
            text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
            rows.append((f"provenance {key}", text if len(text) < 300 else text[:297] + "..."))
    rows.append(
        (
            "history",
            f"{len(bundle.history)} fine-tune(s)"
            + (
                ": " + "; ".join(str(h.get("op", h.get("kind", "?"))) for h in bundle.history) if bundle.history else ""
            ),
        )
    )
    if path is not None:
        rows.append(("file", f"{_kib(Path(path).stat().st_size)}, created {bundle.created or '?'}"))
    return rows


def main(argv: list[str] | None = None) -> int:
    """``info BUNDLE [--json]``: verify a bundle and print what is in it."""
    parser = argparse.ArgumentParser(
        prog="info",
        description="Verify a bundle and show its classes, models, sizes, detector settings and provenance.",
    )
    parser.add_argument("bundle", type=Path, metavar="BUNDLE", help="bundle file (.kit)")
    parser.add_argument("--json", action="store_true", help="print the verified contents as JSON")
    args = parser.parse_args(argv)
    bundle = Bundle.load(args.bundle)
    if args.json:
        summary = bundle.summary()
        summary["file_bytes"] = args.bundle.stat().st_size
        summary["members"] = {k: {"bytes": v[0], "compressed": v[1]} for k, v in member_sizes(args.bundle).items()}
        print(json.dumps(summary, indent=1, sort_keys=True))
        return 0
    rows = describe(bundle, args.bundle)
    width = max(len(k) for k, _ in rows)
    print(f"{args.bundle}: bundle (schema {BUNDLE_SCHEMA}), checksums OK")
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")
    return 0
