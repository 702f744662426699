"""Synthetic speech for on-device learning: ``deploy.runtime.synthetic_speech`` and ``--synthetic``.

The engines are the real ones (espeak-ng, flite: ``run.sh`` installs them). The fine-tune tests use
real FSDD recordings: a digit the base never heard is learnt from a few real clips, with and without
synthetic clips of its spoken name. Only the hang and garbage-output tests put a stand-in engine on
``PATH``, because no real engine can be made to hang on demand.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from deploy.runtime import finetune
from deploy.runtime.bundle import Bundle
from deploy.runtime.errors import KitError
from deploy.runtime.synthetic_speech import ENGINES, check_text, engines_available, synthesize
from tests.test_finetune import (  # noqa: F401  (fixtures: a digits bundle trained on real FSDD clips)
    MAX_OLD_DROP,
    _kit,
    accuracy_on_files,
    added,
    bundle_path,
    clips_of,
    fsdd_base,
    held_out_clips,
    old_accuracy,
)

pytestmark = pytest.mark.skipif(
    not engines_available(), reason="no text-to-speech engine (apt-get install espeak-ng flite)"
)


def test_clips_are_seeded_varied_and_normalised() -> None:
    clips = synthesize("eight", 24, seed=5)
    again = synthesize("eight", 24, seed=5)
    other = synthesize("eight", 24, seed=6)
    assert len(clips) == 24
    for clip in clips:
        assert clip.audio.dtype == np.float32 and clip.audio.ndim == 1 and np.all(np.isfinite(clip.audio))
        assert 0.3 - 1e-6 <= float(np.max(np.abs(clip.audio))) <= 0.9 + 1e-6
        assert 8000 <= clip.rate <= 48000 and 0.2 < len(clip.audio) / clip.rate < 3.0
    assert all(np.array_equal(a.audio, b.audio) and a.voice == b.voice for a, b in zip(clips, again))
    assert [c.voice for c in clips] != [c.voice for c in other]
    assert len({c.voice.split()[1] for c in clips}) >= 8  # many accents/voices, not one voice 24 times


def test_each_engine_speaks_the_text() -> None:
    for engine in engines_available():
        short, long = (
            synthesize("go", 3, seed=0, engines=[engine]),
            synthesize("go left and then right", 3, seed=0, engines=[engine]),
        )
        assert all(c.voice.startswith(engine) for c in short + long)
        # a longer text takes longer to say, in every sampled voice: the text really reaches the engine
        assert min(len(c.audio) / c.rate for c in long) > max(len(c.audio) / c.rate for c in short)


@pytest.mark.parametrize("text", ["", "-rf /", "eight; rm -rf ~", "x" * 65, "acht\x00", "über", "--voices"], ids=repr)
def test_text_that_is_not_plain_words_is_a_one_line_error(text: str) -> None:
    with pytest.raises(KitError, match="--synthetic: cannot speak") as info:
        check_text(text)
    assert "\n" not in str(info.value)


def test_bad_counts_and_engines_are_one_line_errors(tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(KitError, match="choose 1 to"):
        synthesize("eight", 0)
    with pytest.raises(KitError, match="unknown engine 'say'"):
        synthesize("eight", 2, engines=["say"])
    monkeypatch.setenv("PATH", str(tmp_path))  # a device without any engine
    assert engines_available() == []
    with pytest.raises(KitError, match="install espeak-ng or flite"):
        synthesize("eight", 2)


def _stand_in_engine(folder: Path, body: str) -> None:
    script = folder / ENGINES[0]
    script.write_text(f"#!{sys.executable}\n{body}\n")
    script.chmod(0o755)


def test_a_hung_engine_times_out_and_garbage_output_is_refused(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    _stand_in_engine(tmp_path, "import time; time.sleep(60)")
    started = time.monotonic()
    with pytest.raises(KitError, match="did not finish within 1 s"):
        synthesize("eight", 1, engines=[ENGINES[0]], timeout_s=1.0)
    assert time.monotonic() - started < 20
    # an engine that writes something that is not a WAV file: the runtime's strict reader refuses it
    _stand_in_engine(tmp_path, "import sys; open(sys.argv[sys.argv.index('-w') + 1], 'wb').write(b'not audio' * 10)")
    with pytest.raises(KitError, match="not a WAV file"):
        synthesize("eight", 1, engines=[ENGINES[0]])
    _stand_in_engine(tmp_path, "import sys; sys.stderr.write('no voice\\n'); sys.exit(3)")
    with pytest.raises(KitError, match=r"failed \(exit 3: no voice\)"):
        synthesize("eight", 1, engines=[ENGINES[0]])


def test_synthetic_clips_help_a_keyword_learnt_from_three_real_clips(fsdd_base, added) -> None:  # noqa: F811
    """FSDD digit 8, which the base never heard, from 3 real clips of one speaker: with 40 synthetic
    clips of "eight" as well, the head recognises more of the 100 held-out real recordings. The
    synthetic clips are recorded in the history, and only the user's clips enter the replay memory."""
    ds, fs = fsdd_base
    base = added["base"]
    three = [p for p in clips_of(ds, "8", "train", 40) if p.name.split("_")[1] == "jackson"][:3]
    assert len(three) == 3
    alone = finetune.add_keyword(base, "8", three, seed=0)
    helped = finetune.add_keyword(base, "8", three, seed=0, synthetic=40, spoken="eight")
    test = held_out_clips(ds, "8")
    acc_alone, acc_helped = accuracy_on_files(alone, test, "8"), accuracy_on_files(helped, test, "8")
    print(f"digit 8 from 3 clips: {acc_alone:.3f}; with 40 synthetic clips: {acc_helped:.3f}")
    assert acc_helped > acc_alone + 0.05
    old = {name: old_accuracy(b, fs) for name, b in (("base", base), ("alone", alone), ("helped", helped))}
    print("old classes:", {k: round(v, 3) for k, v in old.items()})
    assert old["helped"] >= old["base"] - MAX_OLD_DROP
    entry = helped.history[-1]
    assert entry["n_clips"] == 3 and entry["synthetic"]["clips"] == 40 and entry["synthetic"]["text"] == "eight"
    assert len(entry["synthetic"]["voices"]) == 40
    assert entry["remembered"] == 3 and (helped.replay_labels == len(base.classes)).sum() == 3
    # the weight rule counts the user's clips only, so the class weighs what it did without them
    assert entry["new_weight"] == alone.history[-1]["new_weight"]


def test_kit_finetune_synthetic_option(fsdd_base, bundle_path, tmp_path: Path, capsys) -> None:  # noqa: F811
    ds, _ = fsdd_base
    clips = [str(p) for p in clips_of(ds, "9", "train", 5)]
    out = tmp_path / "nine.kit"
    argv = ["finetune", str(bundle_path), *clips, "--add-keyword", "9", "--synthetic", "10", "--spoken", "nine"]
    code, printed, _ = _kit([*argv, "--out", str(out)], capsys)
    assert code == 0 and "and 10 synthetic clips of 'nine'" in printed
    assert Bundle.load(out).history[-1]["synthetic"]["clips"] == 10
    for extra, message in (
        (["--personalize", "--synthetic", "3"], "--synthetic and --spoken go with --add-keyword"),
        (["--add-keyword", "9", "--synthetic", "-1"], "--synthetic must be 0 or more"),
        (["--add-keyword", "9", "--synthetic", "3", "--spoken", "-x"], "cannot speak"),
    ):
        code, _, err = _kit(["finetune", str(bundle_path), *clips, *extra, "--out", str(tmp_path / "x.kit")], capsys)
        assert code == 2 and err.startswith("error:") and message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "x.kit").exists()
