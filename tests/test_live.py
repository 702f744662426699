"""``kit live`` / ``python -m deploy.runtime listen`` end to end, in subprocesses as a user runs them:
a WAV file, raw PCM piped on stdin, and a real PortAudio microphone stream backed by an ALSA
``file`` PCM (a fake microphone that plays a raw recording), plus the one-line errors for a
machine without a capture device or without sounddevice."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from streaming_helpers import SAMPLE_RATE, background, kws_bundle, paste, pcm16, recognised_clips

from deploy.runtime.bundle import Bundle, BundleClassifier

REPO = Path(__file__).resolve().parents[1]
LINE = re.compile(r"^t=(\d+\.\d\d)s (\S+) (\d\.\d\d)$")


@pytest.fixture(scope="module")
def kws(tmp_path_factory, data_dir: Path) -> dict:
    return kws_bundle(tmp_path_factory, data_dir)


@pytest.fixture(scope="module")
def recording(kws, data_dir: Path) -> dict:
    """3 s of held-out real noise with a held-out speaker's "yes" at 1.0 s and 5 s with "stop" at 3.0 s."""
    classifier = BundleClassifier(Bundle.load(kws["bundle"]))
    yes, stop = (
        recognised_clips(classifier, data_dir, "yes", 1)[0],
        recognised_clips(classifier, data_dir, "stop", 1)[0],
    )
    short = background(data_dir, "exercise_bike", 3.0)
    paste(short, yes, 1.0)
    long = background(data_dir, "dude_miaowing", 5.0)
    paste(long, stop, 3.0)
    return {"short": np.clip(short, -1, 1), "long": np.clip(long, -1, 1)}


def _run(
    args: list[str], *, module: str = "kit", stdin: bytes | None = None, env: dict | None = None, timeout: int = 120
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        input=stdin,
        capture_output=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def _detections(stdout: bytes) -> list[tuple[float, str, float]]:
    lines = [LINE.match(line) for line in stdout.decode().splitlines()]
    assert all(lines), f"unexpected output: {stdout.decode()!r}"
    return [(float(m[1]), m[2], float(m[3])) for m in lines]


def _one_line_error(result: subprocess.CompletedProcess, *needles: str) -> str:
    err = result.stderr.decode().strip()
    assert result.returncode == 2, (result.returncode, err)
    assert "Traceback" not in err and err.startswith("error:") and len(err.splitlines()) == 1, err
    assert all(n in err for n in needles), err
    return err


# Files and stdin ----------------------------------------------------------------------------------
def test_kit_live_on_a_wav_file_prints_one_line_per_detection(kws, recording, tmp_path: Path) -> None:
    wav = tmp_path / "kitchen.wav"
    sf.write(wav, recording["long"], SAMPLE_RATE, subtype="PCM_16")
    result = _run(["live", str(kws["bundle"]), "--input", str(wav)])
    assert result.returncode == 0, result.stderr.decode()
    found = _detections(result.stdout)
    assert [label for _, label, _ in found] == ["stop"], found
    assert 3.5 <= found[0][0] <= 4.6 and found[0][2] >= 0.5
    assert "listened to 5.00 s of audio: 1 detection(s)" in result.stderr.decode()


def test_listen_reads_raw_pcm_from_stdin_with_json_events(kws, recording) -> None:
    """``--input -``: s16le mono on stdin; once at the model's rate via ``kit live``, once at 22.05 kHz
    via the device's ``python -m deploy.runtime listen --rate 22050`` (each window resampled)."""
    from deploy.runtime.features import resample

    result = _run(["live", str(kws["bundle"]), "--input", "-", "--json"], stdin=pcm16(recording["short"]))
    assert result.returncode == 0, result.stderr.decode()
    events = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert events[0]["event"] == "start" and events[0]["rate"] == SAMPLE_RATE and "stdin" in events[0]["source"]
    assert events[-1] == {"event": "end", "time_s": 3.0, "detections": 1}
    (hit,) = [e for e in events if e["event"] == "detection"]
    assert hit["label"] == "yes" and 1.5 <= hit["time_s"] <= 2.6 and hit["score"] >= 0.5

    other_rate = resample(recording["short"], SAMPLE_RATE, 22050)
    device = _run(
        ["listen", str(kws["bundle"]), "--input", "-", "--rate", "22050", "--json", "--scores"],
        module="deploy.runtime",
        stdin=pcm16(other_rate),
    )
    assert device.returncode == 0, device.stderr.decode()
    events = [json.loads(line) for line in device.stdout.decode().splitlines()]
    scores = [e for e in events if e["event"] == "scores"]
    assert len(scores) == 21 and set(scores[0]["scores"]) == {"_silence_", "_unknown_", "stop", "yes"}
    assert events[0]["rate"] == 22050 and [e["label"] for e in events if e["event"] == "detection"] == ["yes"]


def test_listen_errors_are_one_line(kws, tmp_path: Path) -> None:
    _one_line_error(
        _run(["live", str(kws["bundle"]), "--input", str(tmp_path / "nothing.wav")]),
        "nothing.wav",
        "no such audio file",
    )
    text = tmp_path / "notes.wav"
    text.write_text("not audio\n")
    _one_line_error(
        _run(["listen", str(kws["bundle"]), "--input", str(text)], module="deploy.runtime"),
        "notes.wav",
        "not a WAV file",
    )
    _one_line_error(_run(["live", str(kws["coreset"]), "--input", str(text)]), "coreset.kit", "expected bundle")
    _one_line_error(_run(["live", str(kws["bundle"]), "--input", "-", "--duration", "-1"], stdin=b""), "--duration")
    # detector options: the one bounds check, naming the flag, on the kit and on the device alike
    _one_line_error(
        _run(["live", str(kws["bundle"]), "--input", "-", "--threshold", "1.5"], stdin=b""),
        "--threshold must be in [0, 1], got 1.5",
    )
    _one_line_error(
        _run(["listen", str(kws["bundle"]), "--input", "-", "--hop", "0"], module="deploy.runtime", stdin=b""),
        "--hop must be > 0, got 0.0",
    )


def test_kit_live_passes_its_options_to_the_runtime_as_settings(kws, recording, tmp_path: Path) -> None:
    """In-process ``kit live --json`` with detector options: the runtime listens with the bundle's settings
    overridden by exactly the options given (no argv round trip)."""
    from typer.testing import CliRunner

    from kit.cli import app

    wav = tmp_path / "kitchen.wav"
    sf.write(wav, recording["long"], SAMPLE_RATE, subtype="PCM_16")
    result = CliRunner().invoke(
        app,
        [
            "live",
            str(kws["bundle"]),
            "--input",
            str(wav),
            "--json",
            "--hop",
            "0.25",
            "--minimum-count",
            "1",
            "--duration",
            "4",
        ],
    )
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    expected = Bundle.load(kws["bundle"]).detector.with_(hop_s=0.25, minimum_count=1).to_dict()
    assert events[0]["event"] == "start" and events[0]["detector"] == expected
    assert events[-1] == {"event": "end", "time_s": 4.0, "detections": len(events) - 2}


# The microphone, for real: PortAudio -> ALSA -> a `file` PCM that plays a raw recording -------------
def _alsa_config(tmp_path: Path, raw: Path | None) -> Path:
    """An ALSA configuration whose default PCM captures from ``raw`` (S16_LE mono 16 kHz) through a
    ``file`` plugin on a ``null`` slave; with ``raw=None`` the default PCM can only play."""
    capture = (
        f"""
  capture.pcm {{
    type plug
    slave {{
      pcm {{
        type file
        slave.pcm {{ type null }}
        file "/dev/null"
        infile "{raw}"
        format "raw"
      }}
      format S16_LE
      rate {SAMPLE_RATE}
      channels 1
    }}
  }}"""
        if raw is not None
        else ""
    )
    path = tmp_path / ("asound-mic.conf" if raw is not None else "asound-no-capture.conf")
    path.write_text(f"pcm.!default {{\n  type asym\n  playback.pcm {{ type null }}{capture}\n}}\n")
    return path


def test_microphone_stream_through_an_alsa_file_pcm_detects_the_keyword(kws, recording, tmp_path: Path) -> None:
    raw = tmp_path / "mic.raw"
    raw.write_bytes(pcm16(recording["short"]))
    env = {"ALSA_CONFIG_PATH": str(_alsa_config(tmp_path, raw))}
    listing = _run(["live", "--list-devices"], env=env)
    assert listing.returncode == 0, listing.stderr.decode()
    assert re.search(r"\*\s+\d+\s+default\s+\(ALSA, \d+ ch", listing.stdout.decode()), listing.stdout.decode()

    result = _run(["live", str(kws["bundle"]), "--input", "mic", "--duration", "3"], env=env)
    assert result.returncode == 0, result.stderr.decode()
    assert "microphone" in result.stderr.decode() and "default" in result.stderr.decode()
    found = _detections(result.stdout)
    assert [label for _, label, _ in found] == ["yes"], found
    assert 1.5 <= found[0][0] <= 2.6

    by_name = _run(
        ["listen", str(kws["bundle"]), "--input", "mic", "--device", "default", "--duration", "3", "--json"],
        module="deploy.runtime",
        env=env,
    )
    assert by_name.returncode == 0, by_name.stderr.decode()
    events = [json.loads(line) for line in by_name.stdout.decode().splitlines()]
    assert [e["label"] for e in events if e["event"] == "detection"] == ["yes"]
    assert events[-1]["time_s"] == 3.0


def test_missing_capture_device_or_sounddevice_is_a_one_line_error(kws, tmp_path: Path) -> None:
    env = {"ALSA_CONFIG_PATH": str(_alsa_config(tmp_path, None))}
    listing = _run(["live", "--list-devices"], env=env)
    assert listing.returncode == 0 and "no audio input devices found" in listing.stdout.decode()
    _one_line_error(
        _run(["live", str(kws["bundle"]), "--input", "mic", "--duration", "1"], env=env), "no audio input device found"
    )
    raw = tmp_path / "quiet.raw"
    raw.write_bytes(bytes(2 * SAMPLE_RATE))
    mic_env = {"ALSA_CONFIG_PATH": str(_alsa_config(tmp_path, raw))}
    _one_line_error(_run(["live", str(kws["bundle"]), "--input", "mic", "--device", "99"], env=mic_env), "--device 99")

    # sounddevice not installed: Python's own "blocked import" (sys.modules entry None) in the child
    code = (
        "import sys; sys.modules['sounddevice'] = None; from deploy.runtime.__main__ import main; "
        f"sys.exit(main(['listen', {str(kws['bundle'])!r}, '--input', 'mic']))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, timeout=120)
    _one_line_error(result, "sounddevice package")


def test_kit_live_rich_display_reports_the_runtime_detections(kws, recording, tmp_path: Path, capsys) -> None:
    """``kit live`` on a terminal: the runtime's ``listen`` with the rich display (in-process)."""
    from deploy.runtime.audio_input import WavFileSource
    from deploy.runtime.live import listen
    from kit.commands.live import RichDisplay

    wav = tmp_path / "kitchen.wav"
    sf.write(wav, recording["long"], SAMPLE_RATE, subtype="PCM_16")
    bundle = Bundle.load(kws["bundle"])
    found = listen(BundleClassifier(bundle), WavFileSource(wav, SAMPLE_RATE), bundle.detector, RichDisplay())
    out = capsys.readouterr()
    assert [d.label for d in found] == ["stop"] and 3.5 <= found[0].time_s <= 4.6
    assert f"t={found[0].time_s:.2f}s stop {found[0].score:.2f}" in out.out
    assert "1 detection(s)" in out.err
