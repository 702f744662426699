"""WAV reading for the device: stdlib ``wave`` plus a small RIFF parser, numpy only.

Why not soundfile: libsndfile is not on every device image, and a KWS device only ever reads
WAV. ``wave`` decodes integer PCM (8/16/24/32-bit); for what it refuses in Python 3.11,
IEEE-float (format tag 3) and WAVE_FORMAT_EXTENSIBLE (0xFFFE) files, the RIFF chunks are read
here directly. Samples are scaled exactly as libsndfile does (int / 2**(bits-1), 8-bit is
unsigned around 128), so training (soundfile) and the device see identical waveforms. Every
problem is a one-line ``KitError`` naming the file.
"""

from __future__ import annotations

import io
import os
import struct
import wave
from pathlib import Path

import numpy as np

from .artifact import atomic_write_bytes
from .errors import KitError
from .safeio import open_regular

# The one set of audio limits, for training (kit.audio), the device and every command: a rate
# outside [MIN_RATE, MAX_RATE] is a broken header, not audio; a clip under MIN_CLIP_S holds no word.
MIN_RATE = 4000
MAX_RATE = 384000
MIN_CLIP_S = 0.1

WAVE_FORMAT_PCM = 0x0001
WAVE_FORMAT_IEEE_FLOAT = 0x0003
WAVE_FORMAT_EXTENSIBLE = 0xFFFE


def check_rate(rate: float, where: str) -> int:
    """Refuse a sample rate no microphone or file of speech has (1 Hz, 1e9 Hz, 0, negative)."""
    if not (MIN_RATE <= rate <= MAX_RATE) or int(rate) != rate:
        raise KitError(f"{where}: sample rate {rate:g} Hz is outside {MIN_RATE}..{MAX_RATE} Hz")
    return int(rate)


def check_length(frames: int, rate: int, where: str) -> None:
    """The one minimum clip length: shorter clips are refused everywhere (classify, train, fine-tune)."""
    if frames < MIN_CLIP_S * rate:
        raise KitError(f"{where}: clip is too short ({frames / rate:.3f} s; at least {MIN_CLIP_S} s needed)")


def check_wav_chunks(path: Path, head: bytes, size: int) -> None:
    """Refuse a WAV whose ``data`` chunk claims more bytes than the file holds (a truncated download).

    ``head`` is the start of the file (at least up to the data chunk header), ``size`` its length.
    """
    offset = 12
    while offset + 8 <= len(head):
        chunk_id, length = head[offset : offset + 4], struct.unpack_from("<I", head, offset + 4)[0]
        if chunk_id == b"data":
            have = size - offset - 8
            if length > have and length != 0xFFFFFFFF:  # 0xFFFFFFFF: a streaming writer's "unknown"
                raise KitError(
                    f"{path}: WAV data chunk claims {length} bytes but the file holds {have} (truncated download?)"
                )
            return
        offset += 8 + length + (length & 1)


def read_wav(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Decode a WAV file to float32 mono in [-1, 1] (channels averaged) and its sample rate."""
    path = Path(path)
    with open_regular(path, "audio") as handle:  # never blocks on a FIFO; refuses folders and devices
        if os.fstat(handle.fileno()).st_size == 0:
            raise KitError(f"{path}: empty file (0 bytes)")
        head = handle.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            raise KitError(f"{path}: not a WAV file (no RIFF/WAVE header); the edge runtime reads .wav only")
        handle.seek(0)
        check_wav_chunks(path, handle.read(1 << 16), os.fstat(handle.fileno()).st_size)
        handle.seek(0)
        try:
            with wave.open(handle, "rb") as reader:
                channels, width, rate = reader.getnchannels(), reader.getsampwidth(), reader.getframerate()
                data = reader.readframes(reader.getnframes())
            samples = _decode_pcm(path, data, width, channels)
        except wave.Error as exc:
            if "unknown format" not in str(exc):
                raise KitError(f"{path}: corrupt WAV file ({exc})") from None
            handle.seek(0)
            samples, rate = _read_riff(path, handle.read())
        except (EOFError, struct.error) as exc:
            raise KitError(f"{path}: corrupt or truncated WAV file ({type(exc).__name__})") from None
    return _finish(path, samples, rate)


def _finish(path: Path, samples: np.ndarray, rate: int) -> tuple[np.ndarray, int]:
    check_rate(rate, str(path))
    if samples.size == 0:
        raise KitError(f"{path}: WAV file has no audio samples")
    check_length(len(samples), rate, str(path))
    return mono_finite(path, samples), int(rate)


def mono_finite(path: Path, samples: np.ndarray) -> np.ndarray:
    """Average (frames, channels) to mono float32 and zero isolated NaN/inf samples.

    Shared by the device reader and training's soundfile reader so both treat odd files alike;
    a file with no finite sample at all is refused, since it would poison every statistic.
    """
    y = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
    finite = np.isfinite(y)
    if not finite.any():
        raise KitError(f"{path}: every sample is NaN or infinite")
    if not finite.all():
        y = np.where(finite, y, 0.0)
    return np.ascontiguousarray(y, dtype=np.float32)


def _decode_pcm(path: Path, data: bytes, width: int, channels: int) -> np.ndarray:
    """Little-endian integer PCM bytes -> float (frames, channels)."""
    if channels < 1:
        raise KitError(f"{path}: WAV header gives {channels} channels")
    frame_bytes = width * channels
    data = data[: len(data) - len(data) % frame_bytes]  # a truncated last frame is dropped
    raw = np.frombuffer(data, dtype=np.uint8)
    if width == 1:
        x = (raw.astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        x = raw.view("<i2").astype(np.float32) / 32768.0
    elif width == 3:
        b = raw.reshape(-1, 3).astype(np.int32)
        ints = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        ints = np.where(ints >= 1 << 23, ints - (1 << 24), ints)
        x = ints.astype(np.float32) / float(1 << 23)
    elif width == 4:
        x = (raw.view("<i4").astype(np.float64) / 2147483648.0).astype(np.float32)
    else:
        raise KitError(f"{path}: unsupported WAV sample width ({8 * width}-bit PCM)")
    return x.reshape(-1, channels)


def _decode_float(path: Path, data: bytes, width: int, channels: int) -> np.ndarray:
    if width not in (4, 8):
        raise KitError(f"{path}: unsupported WAV float width ({8 * width}-bit)")
    frame_bytes = width * channels
    data = data[: len(data) - len(data) % frame_bytes]
    x = np.frombuffer(data, dtype="<f4" if width == 4 else "<f8").astype(np.float32)
    return x.reshape(-1, channels)


def _read_riff(path: Path, blob: bytes) -> tuple[np.ndarray, int]:
    """Walk the RIFF chunks for ``fmt `` and ``data`` (float and extensible files)."""
    offset, fmt, data = 12, None, None
    while offset + 8 <= len(blob):
        chunk_id, size = blob[offset : offset + 4], struct.unpack_from("<I", blob, offset + 4)[0]
        body = blob[offset + 8 : offset + 8 + size]
        if chunk_id == b"fmt ":
            fmt = body
        elif chunk_id == b"data":
            data = body  # may be shorter than ``size`` in a truncated file
            break
        offset += 8 + size + (size & 1)
    if fmt is None or len(fmt) < 16:
        raise KitError(f"{path}: corrupt WAV file (no valid 'fmt ' chunk)")
    if data is None:
        raise KitError(f"{path}: corrupt WAV file (no 'data' chunk)")
    tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", fmt)
    if tag == WAVE_FORMAT_EXTENSIBLE and len(fmt) >= 26:
        tag = struct.unpack_from("<H", fmt, 24)[0]  # first two bytes of the sub-format GUID
    if channels < 1:
        raise KitError(f"{path}: WAV header gives {channels} channels")
    if tag == WAVE_FORMAT_PCM:
        return _decode_pcm(path, data, (bits + 7) // 8, channels), rate
    if tag == WAVE_FORMAT_IEEE_FLOAT:
        return _decode_float(path, data, (bits + 7) // 8, channels), rate
    raise KitError(
        f"{path}: unsupported WAV encoding (format tag {tag:#06x}); use PCM 8/16/24/32-bit or 32/64-bit float"
    )


def write_wav(path: str | os.PathLike, y: np.ndarray, rate: int) -> Path:
    """Write mono float samples in [-1, 1] as 16-bit PCM WAV, atomically (a reader never sees half a file).

    The inverse of ``read_wav`` up to 16-bit rounding: what a recorder or ``arecord`` would produce,
    so a file the kit writes (a demo stream, a benchmark window) plays and reads everywhere."""
    rate = check_rate(rate, str(path))  # before the writer opens: its close would mask the error
    pcm = (np.clip(np.asarray(y, dtype=np.float64), -1.0, 1.0) * 32767.0).round().astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(pcm.tobytes())
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)
