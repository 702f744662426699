"""``python -m <runtime> listen BUNDLE``: live keyword spotting from a microphone, stdin or a file.

Why plain text and no rich: this runs on a Raspberry Pi or in a phone shell with numpy and an
inference runtime only. On a terminal one status line (top scores as bars) is redrawn every hop
with ANSI codes, and each detection is printed on its own line as ``t=12.30s yes 0.93``; when
stdout is not a terminal only the detection lines are printed, and ``--json`` prints one JSON
event per line (start, detection, optional per-hop scores, end) for headless use.

The audio pipeline (source -> ring buffer -> front-end -> model -> head -> recogniser) lives in
``stream.py`` and ``audio_input.py``; this module only parses options and displays results, so
``kit live`` can reuse ``listen`` with its own display.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

import numpy as np

from .audio_input import DEFAULT_CHUNK_S, AudioSource, input_devices, limit_duration, open_source
from .bundle import Bundle, BundleClassifier
from .errors import KitError
from .recognizer import Detection, DetectorSettings, add_detector_options, detector_options
from .safeio import require_regular_file
from .stream import StreamRecognizer, StreamResult


class Display(Protocol):
    """Where ``listen`` reports: ``start`` (what is listened to), every hop's ``result``, ``end`` (a summary)."""

    def start(self, info: dict) -> None: ...

    def result(self, result: StreamResult, classes: list[str]) -> None: ...

    def end(self, summary: dict) -> None: ...


def detection_line(detection: Detection) -> str:
    """The one-line form of a detection: ``t=12.30s yes 0.93``."""
    return f"t={detection.time_s:.2f}s {detection.label} {detection.score:.2f}"


class TextDisplay:
    """Detections as lines; on a terminal also a redrawn status line with the top scores."""

    def __init__(
        self, out: TextIO | None = None, err: TextIO | None = None, live: bool | None = None, top: int = 3
    ) -> None:
        # the streams of the moment (not of import time), so a caller's redirection is honoured
        self.out, self.err = out or sys.stdout, err or sys.stderr
        self.live = self.out.isatty() if live is None else live
        self.top = top
        self._status = False

    def start(self, info: dict) -> None:
        print(
            f"listening to {info['source']} with {info['model']} ({len(info['classes'])} classes, "
            f"threshold {info['detector']['threshold']:g}); Ctrl-C stops",
            file=self.err,
            flush=True,
        )

    def _clear(self) -> None:
        if self._status:
            self.out.write("\r\033[K")
            self._status = False

    def result(self, result: StreamResult, classes: list[str]) -> None:
        if result.detection is not None:
            self._clear()
            print(detection_line(result.detection), file=self.out, flush=True)
        if self.live:
            order = np.argsort(-result.probabilities)[: self.top]
            parts = []
            for i in order:
                p = float(result.probabilities[i])
                bar = "#" * int(round(10 * p))
                parts.append(f"{classes[i]:>10} {p:4.2f} {bar:<10}")
            self.out.write(f"\r\033[K t={result.time_s:7.2f}s " + " ".join(parts))
            self.out.flush()
            self._status = True

    def end(self, summary: dict) -> None:
        self._clear()
        self.out.flush()
        dropped = (
            f" ({summary['dropped_s']:.2f} s dropped: the listener fell behind)" if summary.get("dropped_s") else ""
        )
        if summary.get("overflows"):
            dropped += f" ({summary['overflows']} input overflow(s) reported by the audio device)"
        print(
            f"listened to {summary['seconds']:.2f} s of audio: {len(summary['detections'])} detection(s){dropped}",
            file=self.err,
            flush=True,
        )


class JsonDisplay:
    """One JSON object per line on stdout: start, detection, scores (optional), end."""

    def __init__(self, out: TextIO | None = None, scores: bool = False) -> None:
        self.out, self.scores = out or sys.stdout, scores

    def _emit(self, event: dict) -> None:
        print(json.dumps(event, sort_keys=True), file=self.out, flush=True)

    def start(self, info: dict) -> None:
        self._emit({"event": "start", **info})

    def result(self, result: StreamResult, classes: list[str]) -> None:
        if self.scores:
            self._emit(
                {
                    "event": "scores",
                    "time_s": round(result.time_s, 6),
                    "scores": {c: round(float(p), 5) for c, p in zip(classes, result.probabilities)},
                }
            )
        if result.detection is not None:
            self._emit({"event": "detection", **result.detection.to_dict()})

    def end(self, summary: dict) -> None:
        event = {"event": "end", "time_s": round(summary["seconds"], 6), "detections": len(summary["detections"])}
        for key in ("dropped_s", "overflows"):
            if summary.get(key):
                event[key] = round(summary[key], 3)
        self._emit(event)


def listen(
    classifier: BundleClassifier,
    source: AudioSource,
    settings: DetectorSettings,
    display: Display,
    duration: float | None = None,
    realtime: bool = False,
) -> list[Detection]:
    """Run ``source`` through the stream recogniser, reporting to ``display``; returns the detections."""
    stream = StreamRecognizer(classifier, settings, rate=source.rate)
    info = {
        "source": source.description,
        "rate": source.rate,
        "model": classifier.model_name,
        "classes": list(classifier.classes),
        "detector": settings.to_dict(),
    }
    display.start(info)
    detections: list[Detection] = []
    started = time.monotonic()
    chunks = limit_duration(source.chunks(), source.rate, duration)
    try:
        with contextlib.closing(chunks):
            for chunk in chunks:
                for result in stream.feed(chunk):
                    display.result(result, classifier.classes)
                    if result.detection is not None:
                        detections.append(result.detection)
                if realtime:  # pace a file like a microphone would
                    ahead = stream.time_s - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)
    except KeyboardInterrupt:
        pass
    display.end(
        {
            "seconds": stream.time_s,
            "detections": detections,
            "dropped_s": getattr(source, "dropped_s", 0.0),
            "overflows": getattr(source, "overflows", 0),
        }
    )
    return detections


@dataclass(frozen=True)
class ListenOptions:
    """What to listen to and how: the settings object behind ``listen`` and ``kit live`` alike.

    ``detector`` maps ``DETECTOR_OPTIONS`` fields to values that override the bundle's detector
    settings (None or absent: keep the bundle's).
    """

    bundle: Path | None
    input: str = "mic"
    rate: int | None = None
    device: str | None = None
    duration: float | None = None
    model: str | None = None
    threads: int = 1
    chunk_ms: float = 1000 * DEFAULT_CHUNK_S
    realtime: bool = False
    detector: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "ListenOptions":
        return cls(
            bundle=args.bundle,
            input=args.input,
            rate=args.rate,
            device=args.device,
            duration=args.duration,
            model=args.model,
            threads=args.threads,
            chunk_ms=args.chunk_ms,
            realtime=args.realtime,
            detector=detector_options(args),
        )


def build_parser(prog: str = "listen") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Listen for the bundle's keywords and print each detection as 't=12.30s yes 0.93'."
    )
    parser.add_argument("bundle", type=Path, nargs="?", metavar="BUNDLE", help="bundle file (.kit)")
    parser.add_argument(
        "--input",
        "-i",
        default="mic",
        metavar="FILE.wav|-|mic",
        help="a WAV file, '-' for raw PCM s16le mono on stdin, or 'mic' (default)",
    )
    parser.add_argument("--rate", type=int, default=None, help="sample rate of the PCM on stdin (default: the model's)")
    parser.add_argument("--device", default=None, metavar="NAME|INDEX", help="input device for --input mic")
    parser.add_argument("--list-devices", action="store_true", help="list audio input devices and exit")
    parser.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S seconds of audio")
    parser.add_argument("--json", action="store_true", help="print JSON events, one per line")
    parser.add_argument("--scores", action="store_true", help="with --json: also print every hop's class scores")
    parser.add_argument("--realtime", action="store_true", help="pace file/stdin input at real-time speed")
    parser.add_argument("--model", default=None, help="model file in the bundle (default: the bundle's default)")
    parser.add_argument("--threads", type=int, default=1, help="inference threads (default 1)")
    parser.add_argument("--chunk-ms", type=float, default=1000 * DEFAULT_CHUNK_S, help="audio read size in ms")
    add_detector_options(parser, "detector (defaults: the bundle's settings)")
    return parser


def format_devices(devices: list[dict]) -> str:
    if not devices:
        return "no audio input devices found"
    lines = ["input devices (use --device INDEX or NAME):"]
    for d in devices:
        mark = "*" if d["default"] else " "
        lines.append(
            f" {mark}{d['index']:>3}  {d['name']}  ({d['hostapi']}, {d['channels']} ch, {d['default_rate']:g} Hz)"
        )
    return "\n".join(lines)


def device_list(as_json: bool = False) -> str:
    """``--list-devices``: the input devices as text or as one JSON event."""
    devices = input_devices()
    return json.dumps({"event": "devices", "devices": devices}, sort_keys=True) if as_json else format_devices(devices)


def prepare(options: ListenOptions) -> tuple[BundleClassifier, AudioSource, DetectorSettings]:
    """(classifier, source, detector settings) from the listen options; every bad value is a one-line error."""
    if options.bundle is None:
        raise KitError("listen: give a BUNDLE (or --list-devices)")
    if options.duration is not None and not options.duration > 0:
        raise KitError(f"--duration must be a positive number of seconds, got {options.duration}")
    if options.threads < 1:
        raise KitError(f"--threads must be at least 1, got {options.threads}")
    if not options.chunk_ms > 0:
        raise KitError(f"--chunk-ms must be positive, got {options.chunk_ms}")
    bundle_path = Path(options.bundle)
    require_regular_file(bundle_path, "bundle")  # "no such" only when missing; a folder/FIFO is said to be one
    bundle = Bundle.load(bundle_path)
    settings = bundle.detector.with_options(options.detector)
    classifier = BundleClassifier(bundle, options.model, threads=options.threads)
    source = open_source(
        options.input,
        bundle.feature_config.sample_rate,
        pcm_rate=options.rate,
        device=options.device,
        chunk_s=options.chunk_ms / 1000.0,
    )
    return classifier, source, settings


def run(options: ListenOptions, display: Display) -> list[Detection]:
    """Open the bundle and the source described by ``options`` and listen until the source ends."""
    classifier, source, settings = prepare(options)
    return listen(classifier, source, settings, display, duration=options.duration, realtime=options.realtime)


def main(argv: list[str] | None = None) -> int:
    """``listen BUNDLE [--input FILE.wav|-|mic] [--duration S] [--json] ...``."""
    args = build_parser().parse_args(argv)
    if args.list_devices:
        print(device_list(args.json))
        return 0
    display = JsonDisplay(scores=args.scores) if args.json else TextDisplay()
    run(ListenOptions.from_args(args), display)
    return 0
