"""The demo's device half: coreset -> MCU model -> int8 bundle -> a held-out stream on the device runtime.

Why as ``kit`` commands in subprocesses: the demo shows the path a user types, command by command
(each printed before it runs), and the stream step runs the numpy-only runtime exactly as
``kit live`` does on a device. Why a *sequence* of held-out clips rather than one: a detector is
judged on a stream (words among silence, each reported once, nothing reported in between), which
one clip cannot show; the sequence holds one unseen test clip per class in a seeded order, and the
step prints each word next to what the device heard.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
from rich.console import Console
from rich.table import Table

from deploy.runtime.errors import KitError
from deploy.runtime.wavio import write_wav
from firmware_sim.c_run import require_tools

#: quiet room noise between the words (dBFS): digital silence is not what a microphone hears
ROOM_DBFS = -55.0
#: epochs of the device model's training in the demo (FSDD: 96 % of the test clips after 18 s on 2 cores)
DEVICE_EPOCHS = 10


def run_kit(args: list[str], console: Console, step: str) -> str:
    """Run one ``kit`` command as a user would type it (printed first); its stdout, or a one-line error."""
    console.print(f"$ kit {' '.join(args)}", highlight=False)
    proc = subprocess.run([sys.executable, "-m", "kit", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise KitError(f"demo {step} step: kit {args[0]} failed: {last[0]}")
    return proc.stdout


@dataclass(frozen=True)
class Word:
    """One held-out clip in the demo stream: its label and where it starts and ends (s)."""

    label: str
    path: str
    start_s: float
    end_s: float


def held_out_sequence(
    clips: list[Any], rate: int, out: Path, seed: int, gap_s: float = 1.0, lead_s: float = 0.8
) -> list[Word]:
    """One whole test clip per class (seeded pick and order), ``gap_s`` of room noise between them,
    written to ``out`` as 16-bit WAV at the model's ``rate``. Returns where each word is."""
    from kit.audio import load_audio  # lazy: pulls in soundfile

    rng = np.random.default_rng(seed)
    by_label: dict[str, list[Any]] = {}
    for clip in clips:
        if clip.offset_s == 0.0 and clip.duration_s is None:
            by_label.setdefault(clip.label, []).append(clip)
    if not by_label:
        raise KitError("demo stream step: the test split has no whole-file clip to stream; use --no-stream")
    labels = sorted(by_label)
    picked = [by_label[label][int(rng.integers(len(by_label[label])))] for label in labels]
    parts = [np.zeros(int(lead_s * rate), np.float32)]
    words: list[Word] = []
    t = lead_s
    for i in rng.permutation(len(picked)):
        clip = picked[int(i)]
        y = load_audio(clip.path, rate)
        words.append(Word(clip.label, str(clip.path), round(t, 3), round(t + len(y) / rate, 3)))
        parts += [y, np.zeros(int(gap_s * rate), np.float32)]
        t += len(y) / rate + gap_s
    audio = np.concatenate(parts)
    audio = audio + rng.normal(0.0, 10 ** (ROOM_DBFS / 20), len(audio)).astype(np.float32)
    write_wav(out, audio, rate)
    return words


def match_detections(words: list[Word], detections: list[dict[str, Any]], late_s: float = 1.0) -> dict[str, Any]:
    """Pair detections with words: a detection counts for the first unmatched word it falls in
    ``[start, end + late_s]`` of (the smoothing window reports a word a little after it ends);
    the benchmark's rule (``bench/streaming.py``). Everything else is a false accept."""
    used: set[int] = set()
    rows, false_accepts = [], []
    for det in detections:
        hit = next(
            (i for i, w in enumerate(words) if i not in used and w.start_s <= det["time_s"] <= w.end_s + late_s), None
        )
        if hit is None:
            false_accepts.append(det)
        else:
            used.add(hit)
            rows.append((hit, det))
    heard = {i: det for i, det in rows}
    correct = sum(1 for i, det in heard.items() if det["label"] == words[i].label)
    return {
        "words": len(words),
        "correct": correct,
        "wrong_label": len(heard) - correct,
        "missed": len(words) - len(heard),
        "false_accepts": len(false_accepts),
        "heard": {str(i): det for i, det in heard.items()},
        "false_accept_events": false_accepts,
    }


def deploy_step(
    out: Path,
    dataset: str,
    coreset: Path,
    data_dir: Optional[Path],
    split: str,
    task: str,
    seed: int,
    console: Console,
    epochs: int = DEVICE_EPOCHS,
) -> Path:
    """The device model: ``kit train DATASET`` (convnet-mcu, the <= 64 KB model the C kernels implement, with
    the stream-robust recipe) for ``epochs``, then ``kit bundle --int8`` with ``coreset`` as replay memory.

    Why the whole training split and not the coreset: a model that listens to a stream must have heard
    words at every offset in its window, which the recipe's shifted copies give it; trained on 100
    synthetic feature maps the same network caught 3 of 10 held-out digits in the demo stream (scores
    0.50-0.62), trained on FSDD for 10 epochs (18 s on 2 cores) all 10. The coreset does what it is for
    on the device: replay memory for ``kit finetune``.
    """
    from kit.data.noise import background_noise  # lazy: pulls in soundfile

    mcu, bundle = out / "mcu", out / "mcu.bundle.kit"
    args = ["train", dataset, "--arch", "convnet-mcu", "--epochs", str(epochs), "--seed", str(seed)]
    args += [*(["--split", split] if split != "official" else []), *(["--task", task] if task != "kws10" else [])]
    args += ["--threads", "0", "--quiet", "--out", str(mcu)]
    if data_dir is not None:
        args += ["--data-dir", str(data_dir)]
    try:
        background_noise(data_dir, 16000, "train")
    except KitError as exc:  # FSDD alone: the recipe keeps its shifts and gains, without background noise
        console.print(f"[bold]device[/]: training without background noise ({exc})", highlight=False)
        args += ["--no-noise", "--quiet-silence", "0"]
    run_kit(args, console, "deploy")
    bundle_args = ["bundle", str(mcu / "model.kit"), "--coreset", str(coreset), "--format", "tflite", "--int8"]
    run_kit([*bundle_args, "--out", str(bundle)], console, "deploy")
    return bundle


def stream_step(bundle: Path, wav: Path, words: list[Word], console: Console) -> dict[str, Any]:
    """``kit live BUNDLE --input WAV`` (the numpy-only device runtime) and each word next to what it heard."""
    lines = run_kit(["live", str(bundle), "--input", str(wav), "--json"], console, "stream").splitlines()
    events = [json.loads(line) for line in lines if line.startswith("{")]
    detections = [e for e in events if e.get("event") == "detection"]
    result = match_detections(words, detections)
    table = Table(title=f"the device runtime on {wav.name}: one held-out test clip per class")
    for column in ("word at", "said", "device heard", "score", ""):
        table.add_column(column)
    for i, word in enumerate(words):
        det = result["heard"].get(str(i))
        verdict = "missed" if det is None else ("ok" if det["label"] == word.label else "wrong")
        table.add_row(
            f"{word.start_s:.2f} s",
            word.label,
            "–" if det is None else f"{det['label']} at {det['time_s']:.2f} s",
            "–" if det is None else f"{det['score']:.2f}",
            verdict,
        )
    for det in result["false_accept_events"]:
        table.add_row("–", "(nothing)", f"{det['label']} at {det['time_s']:.2f} s", f"{det['score']:.2f}", "false")
    console.print(table)
    console.print(
        f"{result['correct']}/{result['words']} words heard right, {result['wrong_label']} wrong, "
        f"{result['missed']} missed, {result['false_accepts']} false accepts",
        highlight=False,
    )
    return {**{k: v for k, v in result.items() if k != "false_accept_events"}, "wav": str(wav)}


def firmware_step(bundle: Path, wav: Path, out: Path, console: Console) -> Optional[dict[str, Any]]:
    """The same stream through the generated C firmware (host build): what a microcontroller would report."""
    try:
        require_tools("host")
    except KitError as exc:  # no C compiler: the rest of the demo stands, the firmware step says why it is skipped
        console.print(f"[bold]firmware[/]: skipped: {exc}", highlight=False)
        return {"skipped": str(exc)}
    project = out / "firmware-host"
    run_kit(["firmware", "build", str(bundle), "--target", "host", "--out", str(project)], console, "firmware")
    lines = run_kit(["firmware", "run", str(project), "--input", str(wav)], console, "firmware").strip().splitlines()
    console.print(f"the C firmware on {wav.name}:", highlight=False)
    for line in lines:
        console.print(f"  {line}", highlight=False)
    return {"project": str(project), "output": lines}
