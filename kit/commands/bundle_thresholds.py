"""Per-keyword thresholds for ``kit bundle --max-fa-per-hour N``: validation stream -> detector settings.

Why a module of its own: the bundle command writes the bundle first (the thresholds are chosen
on the bundle's own default model file, the one the device runs, int8 included), then this step
scores a validation stream of training material (``kit.training.valstream``) through the device
path, chooses the thresholds (``deploy.thresholds``) and rewrites the bundle atomically with them
and the choice recorded in its provenance. torch-side imports stay inside the function.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from deploy.runtime.bundle import Bundle, BundleClassifier
from deploy.thresholds import check_budget as check
from deploy.thresholds import thresholds_for_stream


def check_budget(max_fa_per_hour: float, minutes: float) -> None:
    """Refuse, before any work, a budget the validation stream cannot tell from zero (see ``deploy.thresholds``)."""
    check(max_fa_per_hour, minutes / 60.0)


def set_thresholds(
    bundle_path: Path,
    model_path: Path,
    max_fa_per_hour: float,
    minutes: float,
    data_dir: Path | None = None,
    seed: int = 0,
    sign_key: bytes | None = None,
) -> dict[str, Any]:
    """Choose and store the thresholds; returns the choice (``deploy.thresholds.choose_thresholds``).

    ``sign_key`` re-signs the rewritten bundle (its detector settings are part of what is signed)."""
    from kit.models import load_model  # lazy: pulls in torch
    from kit.training.valstream import build_validation_stream  # lazy: pulls in torch, soundfile

    bundle = Bundle.load(bundle_path)
    _, meta = load_model(model_path)
    keywords = [c for c in bundle.classes if c not in bundle.detector.ignore]
    stream = build_validation_stream(meta, keywords, data_dir, minutes=minutes, seed=seed)
    choice = thresholds_for_stream(
        BundleClassifier(bundle), stream.audio, stream.rate, stream.events, bundle.detector, max_fa_per_hour
    )
    detector = dataclasses.replace(bundle.detector, thresholds=choice["thresholds"])
    provenance = {
        **bundle.provenance,
        "thresholds": {
            **{k: v for k, v in choice.items() if k != "thresholds"},
            "validation_minutes": minutes,
            "validation_material": stream.material,
            "seed": seed,
            "model": bundle.default_model,
        },
    }
    dataclasses.replace(bundle, detector=detector, provenance=provenance).save(bundle_path, sign_key=sign_key)
    return {**choice, "validation_material": stream.material}
