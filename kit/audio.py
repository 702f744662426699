"""Reading audio files for training: any rate, any channel count, wav/flac/ogg.

Why not ``deploy.runtime.read_wav``: the device reads only what its microphone path produces
(16-bit wav), while training data arrives as flac/ogg at 44.1 kHz and in stereo. Every failure
becomes a one-line ``KitError`` naming the file, because a dataset of thousands of clips with one
broken file must tell the user which one, not print a libsndfile traceback.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from deploy.runtime.errors import KitError
from deploy.runtime.features import resample as runtime_resample
from deploy.runtime.safeio import require_regular_file
from deploy.runtime.wavio import check_length, check_rate, check_wav_chunks, mono_finite

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")


@dataclass(frozen=True)
class AudioInfo:
    """Header facts of a file, read without decoding the samples."""

    sample_rate: int
    frames: int
    channels: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def is_audio_file(path: str | os.PathLike) -> bool:
    name = Path(path).name
    return not name.startswith(".") and Path(name).suffix.lower() in AUDIO_EXTENSIONS


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Sample rate, length and channels from the header (fast: no decoding)."""
    path = Path(path)
    _check_file(path)
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError, TypeError, ValueError) as exc:
        raise KitError(f"{path}: unreadable or corrupt audio file ({_reason(exc)})") from None
    check_rate(info.samplerate, str(path))
    return AudioInfo(int(info.samplerate), int(info.frames), int(info.channels))


def resample(y: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Band-limited resampling, the very function the device runtime uses.

    Why not soxr or librosa here: a model only sees on the device what it saw in training if both
    sides resample identically; a higher-quality resampler in training alone made normalised
    features differ by up to 1.7 in near-silent frames. The numpy FFT resampler is an ideal
    low-pass and runs everywhere.
    """
    return runtime_resample(y, orig_rate, target_rate)


def load_audio(
    path: str | os.PathLike,
    sample_rate: int,
    offset_s: float = 0.0,
    duration_s: float | None = None,
) -> np.ndarray:
    """Decode ``path`` (or ``duration_s`` seconds from ``offset_s``) as float32 mono at ``sample_rate``.

    Channels are averaged. Only the requested segment is decoded, so 1-s cuts from a 95-s noise
    recording stay cheap. Isolated non-finite samples are zeroed (they would poison every
    feature statistic); a file that is entirely NaN is refused.
    """
    path = Path(path)
    _check_file(path)
    if offset_s < 0 or (duration_s is not None and duration_s <= 0):
        raise KitError(f"{path}: invalid segment (offset {offset_s} s, duration {duration_s} s)")
    try:
        with sf.SoundFile(str(path)) as handle:
            rate = int(handle.samplerate)
            start = int(round(offset_s * rate))
            if start:
                if handle.frames and start >= handle.frames:
                    raise KitError(
                        f"{path}: offset {offset_s:.3f} s lies beyond the end of the file "
                        f"({handle.frames / rate:.3f} s)"
                    )
                handle.seek(start)
            frames = -1 if duration_s is None else int(round(duration_s * rate))
            data = handle.read(frames=frames, dtype="float32", always_2d=True)
    except KitError:
        raise
    except (sf.LibsndfileError, RuntimeError, OSError, TypeError, ValueError) as exc:
        raise KitError(f"{path}: unreadable or corrupt audio file ({_reason(exc)})") from None
    if data.size == 0:
        raise KitError(f"{path}: empty audio (0 samples)")
    check_rate(rate, str(path))
    if offset_s == 0 and duration_s is None:
        check_length(len(data), rate, str(path))  # a whole clip: the same minimum as the device's
    return resample(mono_finite(path, data), rate, int(sample_rate))


def _reason(exc: BaseException) -> str:
    """libsndfile messages repeat the path and span lines; keep one short line without the path."""
    text = getattr(exc, "error_string", None) or str(exc)
    text = " ".join(str(text).split())
    if text.startswith("Error opening ") and "': " in text:
        text = text.split("': ", 1)[1]
    return text.rstrip(".") or type(exc).__name__


def _check_file(path: Path) -> None:
    require_regular_file(path, "audio")  # a FIFO would block libsndfile forever; a folder is not "missing"
    size = path.stat().st_size
    if size == 0:
        raise KitError(f"{path}: empty file (0 bytes)")
    with path.open("rb") as handle:
        head = handle.read(1 << 16)
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        check_wav_chunks(path, head, size)  # the device's rule: a truncated data chunk is refused
    elif path.suffix.lower() == ".wav":
        # libsndfile would try other decoders (mpg123 prints to stderr before failing): refuse here
        raise KitError(f"{path}: unreadable or corrupt audio file (not a WAV file: no RIFF/WAVE header)")
