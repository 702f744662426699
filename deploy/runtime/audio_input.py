"""Audio sources for the live recogniser: a WAV file, raw PCM on stdin, or a microphone.

Each source has a ``rate`` and ``chunks()``, an iterator of float32 mono arrays. A WAV file is
read whole and resampled to the model's rate (``features.resample``, the same function training
uses for clips); raw PCM and the microphone deliver at their own rate, and the stream resamples
each window as a whole (see ``stream.py``), which avoids chunk-edge artefacts.

Why sounddevice for the microphone and why imported lazily: it wraps PortAudio, which exists on
Linux (ALSA/PulseAudio), macOS and Windows, but a headless device may lack the library
(Debian: ``libportaudio2``), the Python package, or any capture device. Each case is a one-line
``KitError`` with the fix, and the rest of the runtime works without it.
"""

from __future__ import annotations

import queue
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import numpy as np

from .errors import KitError
from .features import resample
from .wavio import check_rate, read_wav

DEFAULT_CHUNK_S = 0.05


class AudioSource(Protocol):
    """What the listener reads: a ``rate``, a ``description`` and ``chunks()`` of float32 mono audio.

    A source that can fall behind (the microphone) also reports ``dropped_s`` and ``overflows``.
    """

    rate: int
    description: str

    def chunks(self) -> Iterator[np.ndarray]: ...


def _chunk_size(rate: int, chunk_s: float) -> int:
    if chunk_s <= 0:
        raise KitError(f"chunk length must be positive, got {chunk_s}")
    return max(1, int(round(rate * chunk_s)))


class WavFileSource:
    """A WAV file (any rate, channels averaged) resampled to ``rate``, in chunks of ``chunk_s``."""

    def __init__(self, path: str | Path, rate: int, chunk_s: float = DEFAULT_CHUNK_S) -> None:
        self.path = Path(path)
        y, file_rate = read_wav(self.path)
        self.file_rate = file_rate
        self.rate = int(rate)
        self.audio = resample(y, file_rate, self.rate) if file_rate != self.rate else y
        self.chunk = _chunk_size(self.rate, chunk_s)
        self.description = f"{self.path} ({len(y) / file_rate:.2f} s at {file_rate} Hz"
        self.description += f", resampled to {self.rate} Hz)" if file_rate != self.rate else ")"

    def chunks(self) -> Iterator[np.ndarray]:
        for start in range(0, len(self.audio), self.chunk):
            yield self.audio[start : start + self.chunk]


class PcmStreamSource:
    """Raw signed 16-bit little-endian mono PCM from a byte stream (stdin: ``--input -``)."""

    def __init__(
        self, stream: BinaryIO | None = None, rate: int = 16000, chunk_s: float = DEFAULT_CHUNK_S, name: str = "stdin"
    ) -> None:
        check_rate(rate, "--rate")
        self.stream = stream if stream is not None else sys.stdin.buffer
        self.rate = int(rate)
        self.chunk = _chunk_size(self.rate, chunk_s)
        self.name = name
        self.description = f"{name} (raw PCM s16le mono at {self.rate} Hz)"
        self._first: bytes | None = None

    def wait_for_audio(self) -> None:
        """Block until the first bytes arrive; none at all (an empty pipe) is a one-line error before
        anything is reported, not "listened to 0.00 s"."""
        if self._first is None:
            self._first = self.stream.read(2 * self.chunk)
            if not self._first:
                raise KitError(
                    f"{self.name}: no audio arrived (0 bytes); pipe raw PCM s16le mono, e.g. "
                    "arecord -f S16_LE -c 1 -r 16000 -t raw"
                )

    def chunks(self) -> Iterator[np.ndarray]:
        """16-bit samples as they arrive. Empty input is an error (nothing was listened to); an odd
        trailing byte (half a sample: a misaligned or cut stream) is reported once on stderr."""
        carry, total = b"", 0
        first, self._first = self._first, b""
        while True:
            data = first if first else self.stream.read(2 * self.chunk - len(carry))
            first = None
            if not data:
                break
            total += len(data)
            data = carry + data
            usable = len(data) - len(data) % 2
            carry = data[usable:]
            if usable:
                yield np.frombuffer(data[:usable], dtype="<i2").astype(np.float32) / 32768.0
        if total == 0:
            raise KitError(
                f"{self.name}: no audio arrived (0 bytes); pipe raw PCM s16le mono, e.g. "
                "arecord -f S16_LE -c 1 -r 16000 -t raw"
            )
        if carry:
            print(
                f"warning: {self.name} ended with an odd trailing byte (half a 16-bit sample); it was dropped",
                file=sys.stderr,
            )


# Microphone ------------------------------------------------------------------------------------------
def _sounddevice() -> Any:
    """Import sounddevice, turning a missing package or PortAudio library into one line."""
    try:
        import sounddevice  # lazy: optional, guarded by try
    except ImportError:
        raise KitError("microphone input needs the sounddevice package (pip install sounddevice)") from None
    except OSError:
        raise KitError(
            "microphone input needs the PortAudio library, which was not found "
            "(Debian/Raspberry Pi OS: sudo apt-get install libportaudio2)"
        ) from None
    return sounddevice


def input_devices() -> list[dict]:
    """Capture devices as {index, name, channels, default_rate, hostapi, default}."""
    sd = _sounddevice()
    try:
        devices = sd.query_devices()
        hostapis = sd.query_hostapis()
        default_in = sd.default.device[0]
    except Exception as exc:  # sounddevice.PortAudioError and friends
        raise KitError(f"cannot list audio devices ({' '.join(str(exc).split())})") from None
    out = []
    for device in devices:
        if device["max_input_channels"] > 0:
            out.append(
                {
                    "index": int(device["index"]),
                    "name": str(device["name"]),
                    "channels": int(device["max_input_channels"]),
                    "default_rate": float(device["default_samplerate"]),
                    "hostapi": str(hostapis[device["hostapi"]]["name"]),
                    "default": int(device["index"]) == default_in,
                }
            )
    return out


def resolve_device(device: str | int | None) -> int:
    """A capture device index from an index, a (part of a) name, or None for the default."""
    devices = input_devices()
    if not devices:
        raise KitError(
            "no audio input device found (no microphone, or PortAudio sees no capture device); "
            "use --input FILE.wav or --input - instead"
        )
    if device is None or device == "":
        default = [d for d in devices if d["default"]]
        return (default or devices)[0]["index"]
    text = str(device).strip()
    if text.lstrip("-").isdigit():
        index = int(text)
        if any(d["index"] == index for d in devices):
            return index
        raise KitError(f"--device {index}: no input device with that index (see --list-devices)")
    exact = [d for d in devices if d["name"] == text]
    matches = exact or [d for d in devices if text.lower() in d["name"].lower()]
    if not matches:
        raise KitError(f"--device '{text}': no input device matches (see --list-devices)")
    if len(matches) > 1:
        names = ", ".join(f"{d['index']}: {d['name']}" for d in matches)
        raise KitError(f"--device '{text}' matches several input devices ({names}); give the index")
    return matches[0]["index"]


class MicrophoneSource:
    """A PortAudio capture device yielding mono float32 chunks, opened at the model's rate when the device allows
    it (else at the device's default rate; the stream resamples each window).

    Why a callback and a queue rather than blocking reads: PortAudio's own buffer is a fraction of
    a second, so one slow model call on a busy Raspberry Pi would overflow it and lose audio. The
    callback only copies each block into a queue holding up to ``max_buffer_s`` seconds; when the
    listener falls further behind than that, new blocks are dropped and counted (``dropped_s``),
    never silently spliced in the middle of what is queued.

    Samples are captured as 16-bit integers and scaled by 1/32768, exactly like WAV files and raw
    PCM (every microphone offers int16; float capture through ALSA's ``plug`` conversion was
    measured to garble an ALSA ``file`` capture stream, which int16 reads back bit-exactly).
    """

    def __init__(
        self,
        rate: int,
        device: str | int | None = None,
        chunk_s: float = DEFAULT_CHUNK_S,
        max_buffer_s: float = 10.0,
        stall_s: float = 5.0,
    ) -> None:
        self._sd = _sounddevice()
        self.device = resolve_device(device)
        info = next(d for d in input_devices() if d["index"] == self.device)
        self.rate = int(rate)
        try:
            self._sd.check_input_settings(device=self.device, channels=1, dtype="int16", samplerate=self.rate)
        except Exception:
            self.rate = int(round(info["default_rate"]))
        self.chunk = _chunk_size(self.rate, chunk_s)
        self.max_blocks = max(1, int(max_buffer_s / chunk_s))
        self.stall_s = stall_s
        self.dropped_s = 0.0
        self.overflows = 0
        self.description = f"microphone {self.device}: {info['name']} ({info['hostapi']}, {self.rate} Hz)"

    def chunks(self) -> Iterator[np.ndarray]:
        blocks: queue.Queue = queue.Queue(maxsize=self.max_blocks)

        def callback(indata, frames, _time, status) -> None:  # PortAudio's thread: copy and return
            if status.input_overflow:
                self.overflows += 1
            try:
                blocks.put_nowait(indata[:, 0].astype(np.float32) / 32768.0)
            except queue.Full:
                self.dropped_s += frames / self.rate

        try:
            stream = self._sd.InputStream(
                device=self.device,
                channels=1,
                samplerate=self.rate,
                dtype="int16",
                blocksize=self.chunk,
                callback=callback,
            )
        except Exception as exc:
            raise KitError(f"cannot open input device {self.device} ({' '.join(str(exc).split())})") from None
        with stream:
            while True:
                try:
                    yield blocks.get(timeout=self.stall_s)
                except queue.Empty:
                    raise KitError(f"input device {self.device} delivered no audio for {self.stall_s:g} s") from None


def open_source(
    spec: str,
    rate: int,
    *,
    pcm_rate: int | None = None,
    device: str | int | None = None,
    chunk_s: float = DEFAULT_CHUNK_S,
    stdin: BinaryIO | None = None,
) -> AudioSource:
    """``--input``: "mic" (microphone), "-" (raw PCM s16le mono on stdin at ``pcm_rate``), or a WAV path."""
    if spec == "mic":
        return MicrophoneSource(rate, device=device, chunk_s=chunk_s)
    if spec == "-":
        source = PcmStreamSource(stdin, rate=rate if pcm_rate is None else pcm_rate, chunk_s=chunk_s)
        source.wait_for_audio()
        return source
    path = Path(spec)
    if path.suffix.lower() not in (".wav", ".wave") and not path.exists():
        raise KitError(f"--input '{spec}': not a WAV file, 'mic' or '-'")
    return WavFileSource(path, rate, chunk_s=chunk_s)


def limit_duration(chunks: Iterator[np.ndarray], rate: int, seconds: float | None) -> Iterator[np.ndarray]:
    """Stop after ``seconds`` of audio (stream time, not wall-clock time); None = no limit."""
    if seconds is None:
        yield from chunks
        return
    if seconds <= 0:
        raise KitError(f"--duration must be positive, got {seconds}")
    remaining = int(round(seconds * rate))
    try:
        for chunk in chunks:
            if remaining <= 0:
                break
            part = chunk[:remaining]
            remaining -= len(part)
            yield part
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:  # stop the source now (e.g. close the microphone stream)
            close()
