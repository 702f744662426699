"""``python -m <runtime> classify BUNDLE|MODEL CLIP.wav``: top-k keywords of one recording on the device.

A bundle classifies with its head on the model's embedding (what ``listen`` uses, including
after an on-device fine-tune); a bare ``.onnx`` / ``.tflite`` model uses its own logits and the
front-end stored in its metadata. Either way the clip goes through the training front-end.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .artifact import read_manifest
from .bundle import BUNDLE_KIND, Bundle, BundleClassifier
from .classify import KeywordClassifier
from .errors import KitError
from .models import open_model
from .safeio import open_regular, require_regular_file
from .wavio import read_wav

_ZIP_MAGIC = b"PK\x03\x04"


def _is_bundle(path: Path) -> bool:
    with open_regular(path) as handle:
        if handle.read(4) != _ZIP_MAGIC:
            return False
    kind = read_manifest(path).get("kind")
    if kind != BUNDLE_KIND:
        raise KitError(f"{path}: is a '{kind}' artifact; classify takes a bundle or an .onnx/.tflite model")
    return True


def load_classifier(path: Path, model: str | None = None, threads: int = 1) -> KeywordClassifier:
    """A ``BundleClassifier`` for a bundle, else a ``KeywordClassifier`` on an exported model file."""
    require_regular_file(path, "bundle or model")  # "no such" only when missing; a folder/FIFO is said to be one
    if _is_bundle(path):
        return BundleClassifier(Bundle.load(path), model, threads=threads)
    if model is not None:
        raise KitError("--model selects a model inside a bundle; it does not apply to a bare model file")
    return KeywordClassifier(open_model(path, threads=threads))


def main(argv: list[str] | None = None) -> int:
    """``classify BUNDLE|MODEL CLIP.wav [--top-k K] [--json]``."""
    parser = argparse.ArgumentParser(prog="classify", description="Print the top-k keywords of one WAV clip.")
    parser.add_argument(
        "model", type=Path, metavar="BUNDLE|MODEL", help="bundle (.kit) or exported model (.onnx/.tflite)"
    )
    parser.add_argument("clip", type=Path, metavar="CLIP.wav", help="a WAV recording (any rate; channels are averaged)")
    parser.add_argument("--top-k", "-k", type=int, default=3, help="how many labels to print (default 3)")
    parser.add_argument(
        "--model", dest="model_name", default=None, help="model file inside the bundle (default: its default)"
    )
    parser.add_argument("--threads", type=int, default=1, help="inference threads (default 1)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    if args.top_k < 1:
        raise KitError(f"--top-k must be at least 1, got {args.top_k}")
    classifier = load_classifier(args.model, args.model_name, args.threads)
    y, rate = read_wav(args.clip)
    results = classifier.classify_waveform(y, rate, top_k=min(args.top_k, len(classifier.classes)))
    if args.json:
        print(
            json.dumps(
                {"clip": str(args.clip), "top": [{"label": name, "probability": round(p, 6)} for name, p in results]}
            )
        )
        return 0
    width = max(len(label) for label, _ in results)
    for label, probability in results:
        print(f"{label:<{width}}  {probability:.4f}")
    return 0
