"""Shared fixtures: where the real recordings are, and small generated audio trees.

Real data is read from ``$KIT_DATA_DIR`` or ``../shared/data`` beside the repository; tests that
need it fail loudly (not skip) when it is missing, because CI always has it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO_ROOT = Path(__file__).resolve().parents[1]


def real_data_dir() -> Path:
    return Path(os.environ.get("KIT_DATA_DIR") or REPO_ROOT.parent / "shared" / "data")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = real_data_dir()
    assert (path / "fsdd").is_dir(), f"real recordings not found at {path} (set KIT_DATA_DIR)"
    return path


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep the feature cache of a test session away from the user's own cache."""
    os.environ["KIT_CACHE_DIR"] = str(tmp_path_factory.mktemp("kit-cache"))


def tone(freq: float, rate: int, seconds: float, amplitude: float = 0.5, seed: int = 0) -> np.ndarray:
    """A sine with a little noise: a cheap stand-in for a spoken word in fixtures."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.fixture
def tone_tree(tmp_path: Path) -> Path:
    """A folder-per-class dataset of 3 classes x 8 clips of 8 kHz tones, 4 speakers per class."""
    root = tmp_path / "tones"
    for ci, (name, freq) in enumerate({"low": 300.0, "mid": 900.0, "high": 2000.0}.items()):
        (root / name).mkdir(parents=True)
        for i in range(8):
            sf.write(
                root / name / f"spk{i % 4}_{i}.wav", tone(freq * (1 + 0.02 * i), 8000, 0.8, seed=ci * 10 + i), 8000
            )
    return root
