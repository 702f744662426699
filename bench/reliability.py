"""``python -m bench.reliability``: issue 17's figures, measured (bench/results/reliability.{json,md}).

Three measurements:
- the counts from running every case of ``bench/bad_inputs.py`` (cases, errors, warnings,
  tracebacks, silent acceptances, hangs, side effects);
- the peak RSS of ``kit inspect`` on the decompression bomb (a bundle whose replay member inflates
  to ~600 MB), in a fresh process (``ru_maxrss`` of the child), beside ``kit inspect`` of a good bundle;
- a ``kit live --input -`` soak: an hour of 16-bit PCM made from real clips and noise, streamed to
  the process's stdin as fast as it reads, with its RSS sampled at the start and the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from bench.bad_inputs import CASES, REPO, Env, bomb, build_env, counts, run_case

RESULTS = REPO / "bench" / "results"


def run_catalogue(env: Env, work: Path) -> tuple[dict[str, int], list[dict]]:
    outcomes = []
    for index, case in enumerate(CASES):
        outcome = run_case(case, env, work / f"case{index:03d}")
        outcomes.append(outcome)
        flag = "" if outcome.result == case.outcome else "   <-- UNEXPECTED"
        print(f"{outcome.result:>11}  {case.name:<45} {outcome.message[:110]}{flag}", flush=True)
    rows = [
        {
            "case": o.case,
            "category": o.category,
            "result": o.result,
            "exit": o.code,
            "message": o.message,
            "seconds": round(o.seconds, 3),
        }
        for o in outcomes
    ]
    return counts(outcomes), rows


def _child_peak_rss(argv: list[str]) -> tuple[int, float, str]:
    """(peak RSS in MiB, seconds, last stderr line) of one fresh ``python -m kit`` process."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    script = (
        "import resource, runpy, sys\n"
        f"sys.argv = ['kit', *{argv!r}]\n"
        "try:\n    runpy.run_module('kit', run_name='__main__')\n"
        "finally:\n    print('PEAK_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
    )
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    seconds = time.perf_counter() - started
    peak = next(int(line.split()[1]) for line in proc.stderr.splitlines() if line.startswith("PEAK_KB"))
    message = next((line for line in proc.stderr.splitlines() if line.startswith("error")), f"exit {proc.returncode}")
    return peak // 1024, seconds, message


def bomb_rss(env: Env, work: Path) -> dict:
    path = bomb(work / "bomb.kit", 600 << 20)
    peak, seconds, message = _child_peak_rss(["inspect", str(path)])
    base, _, _ = _child_peak_rss(["inspect", str(env.bundle)])
    return {
        "file_kib": path.stat().st_size // 1024,
        "inflates_to_mib": 600,
        "peak_rss_mib": peak,
        "good_bundle_inspect_peak_rss_mib": base,
        "seconds": round(seconds, 2),
        "message": message,
    }


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def soak(env: Env, seconds: float) -> dict:
    """Stream ``seconds`` of real audio (FSDD digits, Speech Commands words, ESC-10 noise, looped) to
    ``kit live --input -`` as fast as it reads; sample its RSS once it has started and at the end."""
    from kit.audio import load_audio  # lazy: pulls in soundfile

    rate = 8000  # the bundle's model rate (FSDD)
    sources = sorted((env.data_dir / "fsdd").rglob("*.wav"))[:60]
    sources += sorted((env.data_dir / "esc10").rglob("*.ogg"))[:5] + sorted((env.data_dir / "esc10").rglob("*.wav"))[:5]
    pieces = []
    for path in sources:
        try:
            pieces.append(load_audio(path, rate)[: rate * 5])
        except Exception:  # noqa: BLE001 - a soak source that does not decode is just left out
            continue
    loop = np.concatenate(pieces)
    loop = (np.clip(loop / max(float(np.abs(loop).max()), 1e-6) * 0.8, -1, 1) * 32767).astype("<i2").tobytes()
    total = int(seconds * rate) * 2
    env_vars = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "kit", "live", str(env.bundle), "--input", "-", "--json"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env_vars,
    )
    detections = 0
    lines: list[bytes] = []

    def read_out() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line) if len(lines) < 3 else None
            if b'"detection"' in line or b'"event": "detection"' in line:
                nonlocal detections
                detections += 1

    reader = threading.Thread(target=read_out, daemon=True)
    reader.start()
    started = time.perf_counter()
    sent, rss_start, samples = 0, None, []
    while sent < total:
        block = loop[: min(len(loop), total - sent)]
        proc.stdin.write(block)  # type: ignore[union-attr]
        sent += len(block)
        if rss_start is None and sent >= 60 * rate * 2:  # after the first minute of audio: imports and model loaded
            rss_start = _rss_mib(proc.pid)
        if len(samples) < 1000:
            samples.append((sent / (2 * rate), _rss_mib(proc.pid)))
    rss_end = _rss_mib(proc.pid)
    proc.stdin.close()  # type: ignore[union-attr]
    err = proc.stderr.read().decode(errors="replace")  # type: ignore[union-attr]
    code = proc.wait()
    reader.join(timeout=10)
    wall = time.perf_counter() - started
    return {
        "audio_s": seconds,
        "rate": rate,
        "wall_s": round(wall, 1),
        "speed_x_realtime": round(seconds / wall, 1),
        "rss_after_first_minute_mib": round(rss_start or float("nan"), 1),
        "rss_end_mib": round(rss_end, 1),
        "exit": code,
        "stderr_tail": err.strip().splitlines()[-1:] if err.strip() else [],
        "sources": len(pieces),
        "loop_s": round(len(loop) / 2 / rate, 1),
    }


def render(result: dict) -> str:
    c = result["counts"]
    lines = [
        "# Reliability (issue 17)",
        "",
        f"Machine: {result['machine']}. Run: `python -m bench.reliability` ({result['date']}).",
        "",
        "## Bad-input catalogue (`bench/bad_inputs.py`, also `tests/test_bad_inputs.py`)",
        "",
        "| cases | errors | documented warnings | tracebacks | silent acceptances | hangs | side effects |",
        "|---|---|---|---|---|---|---|",
        f"| {c['cases']} | {c['error']} | {c['warning']} | {c['traceback']} | {c['silent']} | {c['hang']} "
        f"| {c['side-effect']} |",
        "",
        "By category: " + ", ".join(f"{k} {v}" for k, v in sorted(result["by_category"].items())) + ".",
        "",
    ]
    b = result.get("bomb")
    if b:
        lines += [
            "## Decompression bomb",
            "",
            f"A {b['file_kib']} KiB bundle whose `arrays/replay_q.npy` inflates to {b['inflates_to_mib']} MB: "
            f"`kit inspect` peaks at **{b['peak_rss_mib']} MiB** RSS (a good bundle: "
            f"{b['good_bundle_inspect_peak_rss_mib']} MiB) and answers in {b['seconds']} s: `{b['message']}`",
            "",
        ]
    s = result.get("soak")
    if s:
        lines += [
            "## `kit live --input -` soak",
            "",
            f"{s['audio_s'] / 3600:g} h of real audio ({s['sources']} clips looped, {s['loop_s']} s loop, "
            f"{s['rate']} Hz 16-bit PCM) streamed through stdin as fast as it was read: wall {s['wall_s']} s "
            f"({s['speed_x_realtime']}x real time), RSS {s['rss_after_first_minute_mib']} MiB after the first "
            f"minute of audio, {s['rss_end_mib']} MiB at the end; exit {s['exit']}.",
            "",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("KIT_DATA_DIR", str(REPO.parent / "shared" / "data")))
    parser.add_argument("--soak-s", type=float, default=3600.0, help="seconds of audio for the live soak (0: skip)")
    parser.add_argument("--no-bomb", action="store_true")
    parser.add_argument("--out", default=str(RESULTS / "reliability"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kit-reliability-") as tmp:
        work = Path(tmp)
        os.environ.setdefault("KIT_CACHE_DIR", str(work / "cache"))
        env = build_env(work, Path(args.data_dir))
        started = time.perf_counter()
        tally, rows = run_catalogue(env, work / "cases")
        by_category: dict[str, int] = {}
        for row in rows:
            by_category[row["category"]] = by_category.get(row["category"], 0) + 1
        result = {
            "date": time.strftime("%Y-%m-%d"),
            "machine": f"{os.cpu_count()} CPU(s), {sys.platform}",
            "counts": tally,
            "by_category": by_category,
            "catalogue_s": round(time.perf_counter() - started, 1),
            "cases": rows,
        }
        if not args.no_bomb:
            result["bomb"] = bomb_rss(env, work)
            print("bomb:", result["bomb"], flush=True)
        if args.soak_s > 0:
            result["soak"] = soak(env, args.soak_s)
            print("soak:", result["soak"], flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    out.with_suffix(".md").write_text(render(result) + "\n")
    print(render(result))
    return 0 if tally["traceback"] == tally["hang"] == tally["silent"] == tally["side-effect"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
