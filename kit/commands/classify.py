"""``kit classify MODEL CLIP.wav``: top-k keywords for one recording.

Runs the device path (``deploy.runtime.classify.KeywordClassifier``: stdlib WAV reader, numpy
front-end). An ``.onnx`` model runs in onnxruntime; a ``.kit`` model artifact runs in PyTorch
through the same front-end, so both can be checked before and after export.
"""

from __future__ import annotations

from pathlib import Path

import typer

from deploy.runtime.classifier import Classifier
from deploy.runtime.classify import KeywordClassifier
from deploy.runtime.models import open_model
from deploy.runtime.safeio import require_regular_file

_ZIP_MAGIC = b"PK\x03\x04"


def _load_model(path: Path) -> Classifier:
    require_regular_file(path, "model")  # "no such" only when missing; a folder/FIFO is said to be one
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if magic == _ZIP_MAGIC:
        from kit.models import TorchPredictor  # lazy: pulls in torch

        return TorchPredictor(path)

    return open_model(path)


def classify_command(
    model_path: Path = typer.Argument(..., metavar="MODEL", help="Exported .onnx or .tflite model, or a .kit model."),
    clip: Path = typer.Argument(..., metavar="CLIP", help="A WAV recording (any rate; channels are averaged)."),
    top_k: int = typer.Option(3, "--top-k", "-k", help="How many labels to print."),
) -> None:
    """Print the top-k labels and probabilities for one WAV clip."""
    classifier = KeywordClassifier(_load_model(model_path))
    results = classifier.classify_file(clip, top_k=min(top_k, len(classifier.classes)) if top_k >= 1 else top_k)
    width = max(len(label) for label, _ in results)
    for label, probability in results:
        print(f"{label:<{width}}  {probability:.4f}")


def register(app: typer.Typer) -> None:
    app.command("classify")(classify_command)
