"""Synthetic clips of a spoken word from the text-to-speech engines a device may have (espeak-ng, flite).

Why: a user who adds a keyword on the device records 5-10 clips in one voice. The same word in many
synthetic voices (accents, speeds, pitches) shows the head which differences between speakers do not
matter. On the Speech Commands fine-tune benchmark, clips like these moved the new-word / old-class
trade-off by about 3-5 points (``bench/results/kws12_full_training.md``). They are extra examples of
the new class, never a substitute for the user's own recordings.

How: each engine runs as a subprocess, with the text as one argument (no shell), a timeout (a hung
engine must not hang the fine-tune) and a size cap on what it writes. Its WAV goes through the
runtime's own strict reader. Voices are drawn from a seeded generator, so one seed gives the same
clips on every run with the same engine versions. Numpy and the standard library only: this runs
on the device, and espeak-ng and flite are ordinary Debian / Raspberry Pi OS packages.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import KitError
from .wavio import read_wav

ENGINES = ("espeak-ng", "flite")
#: English accents of espeak-ng (all ship with espeak-ng >= 1.49)
ESPEAK_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd", "en-029")
#: espeak-ng voice variants that sound like people; robotic, whispered and croaking ones are left out
ESPEAK_VARIANTS = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5",
    "adam", "Andy", "Annie", "antonio", "belinda", "benjamin", "caleb", "david", "john", "linda",
    "max", "michel", "paul", "quincy", "rob", "robert", "steph", "travis", "victor", "zac",
)  # fmt: skip
#: flite's built-in voices at 16 kHz (the 8 kHz "kal" is left out; the ones a build lacks are skipped)
FLITE_VOICES = ("kal16", "awb", "rms", "slt")
#: every sixth clip comes from flite when both engines are present (espeak-ng has far more voices)
FLITE_SHARE = 1 / 6
MAX_CLIPS = 1000
MAX_TEXT = 64
#: a spoken word is well under a second; anything near this is an engine gone wrong
MAX_OUTPUT_BYTES = 4 << 20
_TEXT = re.compile(r"[A-Za-z][A-Za-z' -]*")


@dataclass(frozen=True)
class SyntheticClip:
    """One synthetic utterance: float32 mono samples in [-1, 1], their rate, and the voice that spoke it."""

    audio: np.ndarray
    rate: int
    voice: str


def engines_available() -> list[str]:
    """The text-to-speech engines on ``PATH``, in ``ENGINES`` order."""
    return [name for name in ENGINES if shutil.which(name)]


def check_text(text: str) -> str:
    """The text to speak, or a one-line error: English letters, spaces, hyphens and apostrophes, at most
    ``MAX_TEXT`` characters, starting with a letter (so an engine never reads it as an option)."""
    text = " ".join(str(text).split())
    if not text or len(text) > MAX_TEXT or not _TEXT.fullmatch(text):
        raise KitError(
            f"--synthetic: cannot speak {text[:MAX_TEXT]!r}: give the keyword as words of English letters "
            f"(spaces, hyphens and apostrophes allowed, at most {MAX_TEXT} characters), e.g. --spoken 'hey kit'"
        )
    return text


def synthesize(
    text: str,
    n: int,
    *,
    seed: int = 0,
    engines: Sequence[str] | None = None,
    timeout_s: float = 20.0,
) -> list[SyntheticClip]:
    """``n`` clips of ``text``, each in a voice drawn with ``seed``, peak-normalised to a random 0.3-0.9.

    ``engines`` defaults to every installed one; none installed is a one-line error that says what
    to install.
    """
    text = check_text(text)
    if not 0 < int(n) <= MAX_CLIPS:
        raise KitError(f"--synthetic: {n} clips; choose 1 to {MAX_CLIPS}")
    chosen = list(engines_available() if engines is None else engines)
    unknown = [name for name in chosen if name not in ENGINES]
    if unknown:
        raise KitError(f"--synthetic: unknown engine '{unknown[0]}' (choose from {', '.join(ENGINES)})")
    chosen = [name for name in chosen if shutil.which(name)]
    if not chosen:
        raise KitError(
            "--synthetic: no text-to-speech engine found; install espeak-ng or flite "
            "(sudo apt-get install espeak-ng flite)"
        )
    flite_voices = _flite_voices(timeout_s) if "flite" in chosen else []
    rng = np.random.default_rng(int(seed))
    clips: list[SyntheticClip] = []
    with tempfile.TemporaryDirectory(prefix="kit-tts-") as scratch:
        out = Path(scratch) / "clip.wav"
        for _ in range(int(n)):
            use_flite = bool(flite_voices) and ("espeak-ng" not in chosen or rng.random() < FLITE_SHARE)
            if use_flite:
                argv, voice = _flite_argv(text, out, flite_voices, rng)
            else:
                argv, voice = _espeak_argv(text, out, rng)
            audio, rate = _run(argv, out, voice, timeout_s)
            peak = float(np.max(np.abs(audio)))
            if peak <= 0:
                raise KitError(f"--synthetic: {voice} produced silence for {text!r}")
            clips.append(SyntheticClip((audio * (rng.uniform(0.3, 0.9) / peak)).astype(np.float32), rate, voice))
    return clips


def _espeak_argv(text: str, out: Path, rng: np.random.Generator) -> tuple[list[str], str]:
    accent = ESPEAK_ACCENTS[rng.integers(len(ESPEAK_ACCENTS))]
    variant = ESPEAK_VARIANTS[rng.integers(len(ESPEAK_VARIANTS))]
    speed, pitch = int(rng.integers(120, 201)), int(rng.integers(25, 76))
    voice = f"espeak-ng {accent}+{variant} speed {speed} pitch {pitch}"
    return ["espeak-ng", "-v", f"{accent}+{variant}", "-s", str(speed), "-p", str(pitch), "-w", str(out), text], voice


def _flite_argv(text: str, out: Path, voices: list[str], rng: np.random.Generator) -> tuple[list[str], str]:
    name = voices[rng.integers(len(voices))]
    stretch, f0 = round(float(rng.uniform(0.8, 1.4)), 2), int(rng.integers(80, 201))
    voice = f"flite {name} stretch {stretch} f0 {f0}"
    argv = ["flite", "-voice", name, "--setf", f"duration_stretch={stretch}", "--setf", f"int_f0_target_mean={f0}"]
    return [*argv, "-t", text, "-o", str(out)], voice


def _flite_voices(timeout_s: float) -> list[str]:
    """The ``FLITE_VOICES`` this flite build has (``flite -lv``)."""
    listing = _call(["flite", "-lv"], "flite", timeout_s).stdout.decode("utf-8", "replace")
    have = set(listing.replace(":", " ").split())
    return [name for name in FLITE_VOICES if name in have]


def _run(argv: list[str], out: Path, voice: str, timeout_s: float) -> tuple[np.ndarray, int]:
    out.unlink(missing_ok=True)
    _call(argv, voice, timeout_s)
    if not out.is_file() or out.stat().st_size == 0:
        raise KitError(f"--synthetic: {voice} wrote no audio")
    if out.stat().st_size > MAX_OUTPUT_BYTES:
        raise KitError(f"--synthetic: {voice} wrote {out.stat().st_size} bytes for one word; refusing it")
    return read_wav(out)


def _call(argv: list[str], what: str, timeout_s: float) -> subprocess.CompletedProcess:
    try:
        done = subprocess.run(argv, capture_output=True, timeout=timeout_s, check=False, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise KitError(f"--synthetic: {what} did not finish within {timeout_s:g} s") from None
    except OSError as exc:
        raise KitError(f"--synthetic: cannot run {argv[0]} ({exc.strerror or exc})") from None
    if done.returncode != 0:
        reason = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise KitError(f"--synthetic: {what} failed (exit {done.returncode}: {reason[-1] if reason else 'no message'})")
    return done
