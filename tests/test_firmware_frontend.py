"""The firmware's C front-end computes the model input the Python front-end computes, on real clips."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from deploy.runtime.coreset import Normalizer
from deploy.runtime.errors import KitError
from deploy.runtime.features import FeatureConfig, extract_features, fix_length
from deploy.runtime.wavio import read_wav
from firmware_sim.c_emit import C_SOURCES
from firmware_sim.c_frontend import frontend_source, input_index
from firmware_sim.c_run import pcm_bytes

DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include "kws_frontend.h"
extern const kws_frontend_config kws_frontend_config_data;
int main(void) {
  const kws_frontend_config *c = &kws_frontend_config_data;
  const int total = c->channels * c->coeffs * c->n_frames;
  int16_t *ring = calloc(c->n_samples, 2);
  float *scratch = calloc(2 * c->n_fft + c->n_mels + total, sizeof(float));
  int8_t *out = calloc(total, 1);
  int start = 0;
  if (fread(&start, 4, 1, stdin) != 1 || fread(ring, 2, c->n_samples, stdin) != (size_t)c->n_samples) return 1;
  kws_frontend_run(c, ring, start, scratch, out);
  fwrite(out, 1, total, stdout);
  return 0;
}
"""


def _clips(data_dir: Path, n: int = 12) -> list[Path]:
    words = ("yes", "no", "stop", "go")
    return [p for w in words for p in sorted((data_dir / "speech_commands" / w).glob("*.wav"))[: n // len(words)]]


@pytest.mark.parametrize("kind", ["log_mel", "mfcc", "fd_mfcc"])
def test_the_c_front_end_gives_the_python_model_input_on_real_clips(kind: str, data_dir: Path, tmp_path: Path) -> None:
    if shutil.which("cc") is None:
        pytest.skip("no C compiler")
    config = FeatureConfig(kind=kind)
    clips = [fix_length(read_wav(p)[0], config.n_samples) for p in _clips(data_dir)]
    features = np.stack([extract_features(y, config) for y in clips])
    normalizer = Normalizer.fit(features)
    scale, zero_point = 0.04, -5
    (tmp_path / "data.c").write_text(frontend_source(config, normalizer, scale, zero_point, (1, 2, 0), "test"))
    (tmp_path / "driver.c").write_text(DRIVER)
    binary = tmp_path / "frontend"
    subprocess.run(
        [
            "cc",
            "-std=c99",
            "-O2",
            "-I",
            str(C_SOURCES),
            "-o",
            str(binary),
            str(tmp_path / "driver.c"),
            str(C_SOURCES / "kws_frontend.c"),
            str(tmp_path / "data.c"),
            "-lm",
        ],
        check=True,
    )
    equal = worst = 0
    for y, f in zip(clips, features, strict=True):
        # the window starts half-way through the ring, as in a running stream
        start = config.n_samples // 2
        ring = np.roll(y, start)
        out = subprocess.run(
            [str(binary)], input=np.int32(start).tobytes() + pcm_bytes(ring), capture_output=True, check=True
        ).stdout
        got = np.frombuffer(out, np.int8).reshape(config.shape[1], config.shape[2], config.shape[0]).astype(int)
        x = normalizer.transform(f[None])[0]
        want = np.clip(np.round(x / scale) + zero_point, -128, 127).astype(int).transpose(1, 2, 0)
        equal += int((got == want).sum())
        worst = max(worst, int(np.abs(got - want).max()))
    total = len(clips) * int(np.prod(config.shape))
    assert worst <= 1 and equal / total >= 0.999, (worst, equal / total)


def test_the_input_index_places_each_feature_where_the_model_layout_wants_it() -> None:
    x = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    index = input_index(x.shape, (1, 2, 0))
    flat = np.empty(x.size, int)
    flat[index] = x.reshape(-1)
    assert np.array_equal(flat.reshape(3, 4, 2), x.transpose(1, 2, 0))


def test_lpcc_has_no_c_front_end_and_says_so() -> None:
    config = FeatureConfig(kind="lpcc")
    norm = Normalizer(np.zeros(config.shape[:2], np.float32), np.ones(config.shape[:2], np.float32))
    with pytest.raises(KitError, match=r"^b\.kit: the firmware front-end has no C port of 'lpcc'"):
        frontend_source(config, norm, 0.1, 0, (1, 2, 0), "b.kit")
