"""Data ladder: what the extra Speech Commands training clips buy, rung by rung.

``python -m bench.data_ladder`` trains the same production model (``kit train speech_commands
--task kws12 --arch convnet-mcu``, the stream-robust recipe, one seed) on the speaker split's own
training clips plus ``0, 370, 750`` extra clips per keyword taken from ``speech_commands_train``
and scores each on the same speaker-split test clips. Writes ``bench/results/data_ladder.{json,md,png}``.

Why a view folder rather than a loader option: a rung is a *measurement* setting, not something a
user needs; the extra clips of a rung are whole speakers drawn in a seeded order (a speaker's
clips never split across rungs, so a rung is a superset of the one below), linked into
``<work>/extra-<n>/<word>/`` and passed as an ordinary ``--extra-train`` folder. The loader's
checks (naming, no test speaker) therefore run on every rung as they do for a user.

Resumable: a rung whose run folder already holds ``metrics.json`` for the same settings is read back.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.machine import command_line, machine_info
from bench.paths import DEFAULT_DATA_DIR, RESULTS_DIR
from deploy.runtime.artifact import atomic_write_text
from deploy.runtime.errors import KitError
from kit.report.tables import markdown_table

DEFAULT_WORK = Path(__file__).resolve().parents[1] / "runs" / "bench_data_ladder"


def speaker_of(path: Path) -> str:
    """``<speaker>_nohash_<n>.flac`` -> speaker."""
    return path.name.split("_nohash_", 1)[0]


def extra_view(source: Path, per_word: int, seed: int, work: Path) -> tuple[Path | None, dict[str, int]]:
    """A folder of links to at most ``per_word`` clips of each word of ``source``, whole speakers
    in a seeded order; ``None`` for the rung without extra clips. Returns the folder and its counts."""
    if per_word <= 0:
        return None, {}
    if not source.is_dir():
        raise KitError(f"{source}: no such folder (the extra Speech Commands training clips)")
    view = work / f"extra-{per_word}-seed{seed}"
    counts: dict[str, int] = {}
    for word_dir in sorted(p for p in source.iterdir() if p.is_dir()):
        files = sorted(p for p in word_dir.iterdir() if p.suffix.lower() in (".flac", ".wav"))
        by_speaker: dict[str, list[Path]] = {}
        for path in files:
            by_speaker.setdefault(speaker_of(path), []).append(path)
        order = sorted(by_speaker)
        np.random.default_rng(seed).shuffle(order)
        chosen: list[Path] = []
        for speaker in order:
            if len(chosen) + len(by_speaker[speaker]) > per_word:
                break  # a prefix of one seeded order: each rung holds every speaker of the rungs below
            chosen += by_speaker[speaker]
        target = view / word_dir.name
        target.mkdir(parents=True, exist_ok=True)
        wanted = {p.name for p in chosen}
        for old in target.iterdir():
            if old.name not in wanted:
                old.unlink()
        for path in chosen:
            link = target / path.name
            if not link.exists():
                link.symlink_to(path.resolve())
        counts[word_dir.name] = len(chosen)
    return view, counts


def train_rung(args: argparse.Namespace, per_word: int) -> dict[str, Any]:
    """One rung: the view folder, then ``kit train DATASET``'s own code path (or its saved metrics)."""
    from kit.commands.train_dataset import DatasetTrainOptions, train_dataset  # lazy: pulls in soundfile
    from kit.training import TrainConfig  # lazy: pulls in torch, soundfile

    view, counts = extra_view(Path(args.extra_source), per_word, args.seed, args.work)
    out = args.work / f"rung-{per_word}-{args.arch}-w{args.width}-seed{args.seed}"
    settings = {"per_word": per_word, "arch": args.arch, "width": args.width, "seed": args.seed, "epochs": args.epochs}
    saved = out / "metrics.json"
    if saved.is_file() and (out / "ladder.json").is_file():
        if json.loads((out / "ladder.json").read_text()) == settings:
            return {**settings, "extra_counts": counts, **json.loads(saved.read_text()), "reused": True}
    config = TrainConfig(
        arch=args.arch,
        arch_kwargs={"width": args.width},
        epochs=args.epochs,
        max_samples=None,  # kit train DATASET: whole epochs, no samples budget
        batch_size=128,
        threads=1,
        seed=args.seed,
    )
    options = DatasetTrainOptions(
        dataset="speech_commands",
        out=out,
        data_dir=Path(args.data_dir),
        task="kws12",
        extra_train=[view] if view else [],
        recipe={"calibration_percent": 0},  # the ladder measures accuracy and chooses no thresholds
        quiet=False,  # kit train's own progress bars: a rung takes minutes
    )
    started = time.perf_counter()
    metrics = train_dataset(options, config)
    metrics["wall_seconds"] = round(time.perf_counter() - started, 1)
    atomic_write_text(out / "ladder.json", json.dumps(settings))
    return {**settings, "extra_counts": counts, **metrics, "reused": False}


def split_counts(data_dir: Path) -> dict[str, int]:
    """Training clips per keyword of the speaker split itself (the bottom rung)."""
    from kit.data import load_dataset  # lazy: pulls in soundfile

    ds = load_dataset("speech_commands", data_dir, task="kws12")
    counts: dict[str, int] = {}
    for clip in ds.clips_in("train"):
        counts[clip.label] = counts.get(clip.label, 0) + 1
    return counts


def markdown(results: dict[str, Any]) -> str:
    rungs = results["rungs"]
    base = results["split_train_counts"]
    keywords = sorted(results["extra_words"])
    header = ["class", *(f"+{r['per_word']}/keyword" for r in rungs)]
    rows = [["clips per keyword (mean over the 8 with extra clips)", *(f"{r['clips_per_keyword']:.0f}" for r in rungs)]]
    rows.append(["all (test accuracy, %)", *(f"{100 * r['accuracy']:.1f}" for r in rungs)])
    for name in sorted(rungs[0]["per_class_accuracy"]):
        mark = "" if name in keywords else " (no extra clips)"
        rows.append([f"{name}{mark}", *(f"{100 * r['per_class_accuracy'].get(name, float('nan')):.1f}" for r in rungs)])
    rows.append(["training examples after the recipe", *(str(r["n_train"]) for r in rungs)])
    rows.append(["wall (s)", *(f"{r['wall_seconds']:.0f}" + (" (reused)" if r.get("reused") else "") for r in rungs)])
    machine = results["machine"]
    return "\n".join(
        [
            "# Data ladder: kws12 accuracy against extra training clips per keyword",
            "",
            f"`{results['command']}` — seed {results['seed']}, {results['finished']}, "
            f"{results['wall_s'] / 60:.1f} min wall; {machine.get('cpu', '?')}, {machine.get('cores', '?')} cores.",
            "",
            f"Model: `kit train speech_commands --task kws12 --arch {results['arch']} --arch-kwargs "
            f"'{{\"width\": {results['width']}}}' --seed {results['seed']}` with the default recipe; each rung adds "
            "whole speakers of `speech_commands_train` (seeded order, each rung a superset of the one below) "
            "as an `--extra-train` folder. Test: the 738 speaker-split kws12 test clips, the same for every rung. "
            f"The split's own training clips per keyword: {', '.join(f'{k} {base.get(k, 0)}' for k in keywords)}; "
            f"on {base.get('on', 0)}, off {base.get('off', 0)} (no extra clips exist for on and off).",
            "",
            markdown_table(header, rows),
            "",
            (
                "No calibration hold-out (the ladder chooses no detection thresholds): every training speaker "
                "was trained on. "
                if not any("clips held out for threshold calibration" in r.get("training_set", {}) for r in rungs)
                else "Each run kept the recipe's calibration hold-out (10 % of the training speakers) out of training. "
            )
            + "Class balance is by sampling (the recipe), and the short extra clips sit in training-part background "
            "noise. Accuracies are of one seed on 738 clips: a class has 50-70 test clips, so a per-class step of "
            "under about 6 points is within one or two clips' noise.",
        ]
    )


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib  # lazy: matplotlib only for the figure

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: matplotlib only for the figure

    from kit.report.plots import save_figure  # lazy: pulls in matplotlib

    rungs = results["rungs"]
    x = [r["clips_per_keyword"] for r in rungs]
    fig, ax = plt.subplots(figsize=(8.5, 4.2))
    ax.plot(x, [100 * r["accuracy"] for r in rungs], "o-", color="black", lw=2.5, label="all classes")
    for name in sorted(rungs[0]["per_class_accuracy"]):
        # matplotlib hides legend labels that start with "_": show _unknown_ as "unknown"
        label = name.strip("_")
        ax.plot(x, [100 * r["per_class_accuracy"].get(name, np.nan) for r in rungs], lw=0.9, alpha=0.7, label=label)
    ax.set_xlabel("training clips per keyword (mean over the 8 with extra clips)")
    ax.set_ylabel("kws12 test accuracy (%)")
    ax.set_title(f"Data ladder: {results['arch']} width {results['width']}, seed {results['seed']}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.data_ladder", description=__doc__.splitlines()[0])
    parser.add_argument("--rungs", default="0,370,750", help="extra clips per keyword for each rung")
    parser.add_argument("--arch", default="convnet-mcu")
    parser.add_argument("--width", type=int, default=28)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--extra-source", default=None, help="default DATA/speech_commands_train")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "data_ladder.json")
    parser.add_argument("--report-only", action="store_true", help="rewrite the .md and .png from the JSON")
    args = parser.parse_args(argv)
    if args.report_only:
        results = json.loads(args.out.read_text())
    else:
        args.extra_source = args.extra_source or str(Path(args.data_dir) / "speech_commands_train")
        if not Path(args.extra_source).is_dir():
            parser.error(f"{args.extra_source}: no such folder (the extra Speech Commands training clips)")
        per_words = sorted({int(v) for v in args.rungs.split(",")})
        started = time.time()
        base = split_counts(Path(args.data_dir))
        words = sorted(p.name for p in Path(args.extra_source).iterdir() if p.is_dir())  # the words with extra clips
        rungs = []
        for n in per_words:
            rung = train_rung(args, n)
            rung["clips_per_keyword"] = float(np.mean([base.get(w, 0) + rung["extra_counts"].get(w, 0) for w in words]))
            print(f"rung +{n}/keyword: {100 * rung['accuracy']:.1f} %", file=sys.stderr)
            rungs.append(rung)
        results = {
            "command": command_line("bench.data_ladder", argv),
            "arch": args.arch,
            "width": args.width,
            "epochs": args.epochs,
            "seed": args.seed,
            "extra_source": args.extra_source,
            "extra_words": words,
            "split_train_counts": base,
            "machine": machine_info(),
            "rungs": rungs,
            "wall_s": round(time.time() - started, 1),
            "finished": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        }
        atomic_write_text(args.out, json.dumps(results, indent=1, sort_keys=True, default=str))
    atomic_write_text(args.out.with_suffix(".md"), markdown(results) + "\n")
    plot(results, args.out.with_suffix(".png"))
    print(f"wrote {args.out}, {args.out.with_suffix('.md')}, {args.out.with_suffix('.png')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
