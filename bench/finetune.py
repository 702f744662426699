"""On-device fine-tuning benchmark: add a new keyword from 5 or 10 clips, personalise to a voice.

``python -m bench.finetune`` writes ``bench/results/finetune.json``, ``.md`` and ``.png``.

Protocol (Speech Commands, speaker-held-out):

1. Base task: kws12 with the benchmarked new words removed from ``_unknown_`` (the base model
   never hears them, not even as "unknown"). By default (``--base production``) the base is what
   ``kit train speech_commands --task kws12 --arch convnet-mcu --extra-train ...`` makes: the
   MCU ConvNet (width 28) trained with the stream-robust recipe on the split's clips plus
   ``speech_commands_train``, without FSDD hard negatives (FSDD speaks "six" and "eight");
   ``--base plain`` is the earlier ConvNet width 64 on the split's own clips. One torch thread;
   a 50-per-class herding (or random, ``--ipc``) coreset as the bundle's replay memory; an fp32
   ONNX bundle built by ``deploy.bundle_builder``. One base model per seed.
2. Add-keyword: for each seed and new word, ``shots`` clips of a seeded set of speakers are
   given to ``deploy.runtime.finetune.add_keyword`` (the device code path: WAV -> front-end ->
   frozen ONNX backbone -> numpy head); the word's clips of all *other* speakers test it.
   Old-class accuracy is measured on the base task's test split (held-out speakers), predicting
   over all classes, before and after, with and without replay. The fine-tune's wall time is
   measured on one core (onnxruntime and BLAS pinned to one thread).
3. Ablations on the same clips (same code, one option changed): the new word's class weight
   (``new_weight``; 1 = plain class balance), the new row's weight decay, no time-shift
   augmentation, and an MLP head (evaluated in memory; a bundle stores a linear head).
4. Personalisation: each test-split speaker with >= 30 keyword clips gives ``per_class`` clips
   per keyword to ``personalize``; accuracy on that speaker's remaining clips before/after, and
   on every other test speaker's clips (to check nothing else suffers).

Base models, coresets and bundles are cached under ``--work`` (keyed by their settings; the
model apart from the coreset), so a re-run with other fine-tune options or another replay memory
does not retrain.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bench.machine import command_line, machine_info
from bench.paths import DEFAULT_DATA_DIR, RESULTS_DIR
from deploy.bundle_builder import build_bundle
from deploy.runtime import finetune
from deploy.runtime.artifact import atomic_write_text
from deploy.runtime.bundle import Bundle, BundleClassifier
from deploy.runtime.synthetic_speech import engines_available
from deploy.runtime.threads import one_blas_thread
from deploy.runtime.wavio import read_wav
from kit.report.tables import markdown_table

DEFAULT_WORK = Path(__file__).resolve().parents[1] / "runs" / "bench_finetune"


# Base model, coreset and bundle per seed ---------------------------------------------------------
def _key(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]


def base_model(fs, config: dict, seed: int, work: Path, console: Console, audio=None) -> tuple[Path, dict]:
    """Train (or reuse) the base model for ``seed``. Cached apart from the coreset, so another
    replay memory (``--coreset``, ``--ipc``) reuses the same trained backbone.

    ``config["base"] == "production"`` trains it as ``kit train DATASET`` does (the recipe, the
    MCU ConvNet, the extra training clips in ``fs``), with no FSDD hard negatives: FSDD speaks
    "six" and "eight", which the base model must never have heard. ``"plain"`` is the earlier
    base (a ConvNet on the split's own clips, no recipe, a samples budget)."""
    import torch  # lazy: torch only when used

    from kit.training import Recipe, TrainConfig, train_on_dataset  # lazy: pulls in torch, soundfile

    model_config = {k: v for k, v in config.items() if k not in ("coreset", "ipc")}
    folder = work / f"model-{_key({**model_config, 'seed': seed})}"
    model_path, info_path = folder / "model.kit", folder / "model.json"
    if model_path.exists() and info_path.exists():
        return model_path, json.loads(info_path.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    production = config.get("base", "plain") == "production"
    train_config = TrainConfig(
        arch=config.get("arch", "convnet"),
        arch_kwargs=config.get("arch_kwargs") or {"width": config["width"]},
        **({"epochs": config.get("epochs") or 30} if production else {}),
        **({"lr": config["lr"]} if config.get("lr") else {}),
        max_samples=config["max_samples"],
        batch_size=config["batch_size"],
        seed=seed,
        threads=1,
    )
    # no calibration hold-out: this benchmark chooses no detection thresholds, so every speaker trains
    recipe = (
        Recipe(
            seed=seed,
            fsdd_negatives=0,
            calibration_percent=0,
            word_head=config.get("word_head") or 0.0,
            unknown_words_share=config.get("unknown_words_share"),
        )
        if production
        else None
    )
    started = time.time()
    # the library's full-data path (kit train DATASET)
    run = train_on_dataset(
        model_path,
        audio if production else None,
        fs,
        train_config,
        recipe=recipe,
        data_dir=config.get("data_dir"),
        progress=False,
    )
    trained = run.trained
    train_s = time.time() - started
    base_accuracy = trained.metrics["accuracy"]
    info = {
        "seed": seed,
        "base_test_accuracy": base_accuracy,
        "train_s": round(train_s, 1),
        "train_stats": trained.train_stats,
        "training_set": run.counts,
        "recipe": recipe.to_dict() if recipe else None,
    }
    atomic_write_text(info_path, json.dumps(info, indent=1, default=str))
    console.print(f"seed {seed}: base model {100 * base_accuracy:.1f} % on the test split (trained in {train_s:.0f} s)")
    return model_path, info


def build_base(fs, dataset_source: dict, config: dict, seed: int, work: Path, console: Console, audio=None) -> dict:
    """The base model for ``seed`` (see ``base_model``), its coreset as replay memory, and the bundle."""
    from kit.pipeline import distill_coreset  # lazy: pulls in soundfile

    folder = work / f"{_key({**config, 'seed': seed})}"
    folder.mkdir(parents=True, exist_ok=True)
    bundle_path, info_path = folder / "bundle.kit", folder / "base.json"
    if bundle_path.exists() and info_path.exists():
        console.print(f"seed {seed}: reusing {bundle_path}")
        return {**json.loads(info_path.read_text()), "bundle": str(bundle_path)}
    model_path, info = base_model(fs, config, seed, work, console, audio)
    coreset, _, summary = distill_coreset(fs, dataset_source, config["coreset"], config["ipc"], seed=seed)
    coreset_path = coreset.save(folder / "coreset.kit")
    build_bundle(model_path, coreset_path, bundle_path, formats=("onnx",))
    info = {**info, "coreset_fit_s": summary.get("fit_time_s"), "replay_samples": len(coreset.labels)}
    atomic_write_text(info_path, json.dumps(info, indent=1, default=str))
    return {**info, "bundle": str(bundle_path)}


# Evaluation helpers ------------------------------------------------------------------------------
def file_features(classifier, paths: list[Path]) -> np.ndarray:
    return np.stack([classifier.features(*read_wav(p)) for p in paths])


def predict(bundle, x: np.ndarray, head=None) -> np.ndarray:
    """Class predictions of a bundle's head (or of an in-memory head on the bundle's embeddings)."""
    classifier = BundleClassifier(bundle)
    if head is None:
        return classifier.logits(x).argmax(axis=1)
    return head.predict(classifier.embed(x))


#: add-keyword variants: the default and one changed option each (``fit_head`` keywords)
VARIANTS: dict[str, dict[str, Any]] = {
    "replay": {},
    "no_replay": {"replay": False},
    "new_weight=1": {"new_weight": 1.0},
    "new_weight=1.5": {"new_weight": 1.5},
    "new_weight=2": {"new_weight": 2.0},
    "new_weight=2.5": {"new_weight": 2.5},
    "new_weight=5": {"new_weight": 5.0},
    "l2_new=0.1": {"l2_new": 0.1},
    "no_shift": {"shifts": ()},
    "mlp": {"head": "mlp"},
    # text-to-speech clips of the word besides the user's (deploy/runtime/synthetic_speech.py); end to end
    "synthetic=20": {"synthetic": 20},
    "synthetic=20,new_weight=1.5": {"synthetic": 20, "new_weight": 1.5},
    "synthetic=20,new_weight=2": {"synthetic": 20, "new_weight": 2.0},
}
#: variants that go through ``add_keyword`` end to end (the others reuse ``fit_head`` on the same clips)
END_TO_END = ("replay", "no_replay")


def runs_end_to_end(variant: str) -> bool:
    return variant in END_TO_END or "synthetic" in VARIANTS[variant]


def runnable_variants() -> dict[str, dict[str, Any]]:
    """``VARIANTS`` less the synthetic-speech ones when no text-to-speech engine is installed."""
    have_tts = bool(engines_available())
    return {name: options for name, options in VARIANTS.items() if have_tts or "synthetic" not in options}


def add_keyword_runs(
    base: dict, words: dict[str, list[Path]], test: dict, args, console: Console, progress
) -> list[dict]:
    """Every (word, shots, variant) fine-tune for one base seed."""
    from bench.finetune_data import split_by_speaker  # lazy: pulls in soundfile

    bundle = Bundle.load(base["bundle"])
    seed = base["seed"]
    old_before = float(np.mean(predict(bundle, test["x"]) == test["y"]))
    classifier = BundleClassifier(bundle)
    rows = []
    variants = runnable_variants()
    for word, paths in words.items():
        for shots in args.shots:
            train, held = split_by_speaker(paths, shots, seed)
            x_held = file_features(classifier, held)
            for variant, options in variants.items():
                row = {
                    "seed": seed,
                    "word": word,
                    "shots": shots,
                    "variant": variant,
                    "n_test_new": len(held),
                    "train_speakers": sorted({p.name.split("_")[1] for p in train}),
                    "old_before": old_before,
                }
                if runs_end_to_end(variant):
                    with one_blas_thread():
                        started = time.perf_counter()
                        new = finetune.add_keyword(bundle, word, train, seed=seed, **options)
                        row["finetune_s"] = time.perf_counter() - started
                    k = len(new.classes) - 1
                    row["new_accuracy"] = float(np.mean(predict(new, x_held) == k))
                    old_pred = predict(new, test["x"])
                    row["history"] = new.history[-1]
                else:
                    x_new = file_features(classifier, train)
                    k = len(bundle.classes)
                    params = {
                        "replay": True,
                        "head": "softmax",
                        "seed": seed,
                        "l2": finetune.DEFAULT_L2,
                        "l2_new": finetune.DEFAULT_L2_NEW,
                        "shifts": finetune.DEFAULT_SHIFTS,
                        "class_weight": "balanced",
                        "new_weight": None,
                    }
                    params.update(options)
                    started = time.perf_counter()
                    with one_blas_thread():
                        head, _ = finetune.fit_head(bundle, classifier, x_new, np.full(len(x_new), k), k + 1, **params)
                    row["head_fit_s"] = time.perf_counter() - started
                    row["new_accuracy"] = float(np.mean(predict(bundle, x_held, head) == k))
                    old_pred = predict(bundle, test["x"], head)
                row["old_after"] = float(np.mean(old_pred == test["y"]))
                row["old_drop"] = row["old_before"] - row["old_after"]
                # where the drop comes from: old test clips now taken for the new word, per class
                taken = old_pred == k
                row["old_taken_by_new"] = float(np.mean(taken))
                row["old_taken_by_new_per_class"] = {
                    bundle.classes[c]: int(np.sum(taken & (test["y"] == c)))
                    for c in range(len(bundle.classes))
                    if np.any(taken & (test["y"] == c))
                }
                rows.append(row)
                progress.advance(progress.task_ids[0])
    return rows


def personalize_runs(base: dict, speakers: list[str], ds, test: dict, args, progress) -> list[dict]:
    """Per held-out speaker: adapt on ``per_class`` clips per keyword, test on the rest and on others."""
    from bench.finetune_data import personal_split  # lazy: pulls in soundfile

    bundle = Bundle.load(base["bundle"])
    classifier = BundleClassifier(bundle)
    rows = []
    for speaker in speakers:
        adapt, held = personal_split(ds, speaker, args.per_class, base["seed"])
        x_held = file_features(classifier, held)
        y_held = np.array([bundle.classes.index(p.parent.name) for p in held])
        others = test["groups"] != speaker
        for variant, options in {"replay": {}, "no_replay": {"replay": False}}.items():
            with one_blas_thread():
                started = time.perf_counter()
                tuned = finetune.personalize(bundle, adapt, seed=base["seed"], **options)
                seconds = time.perf_counter() - started
            rows.append(
                {
                    "seed": base["seed"],
                    "speaker": speaker,
                    "variant": variant,
                    "n_adapt": len(adapt),
                    "n_test": len(held),
                    "speaker_before": float(np.mean(predict(bundle, x_held) == y_held)),
                    "speaker_after": float(np.mean(predict(tuned, x_held) == y_held)),
                    "others_before": float(np.mean(predict(bundle, test["x"][others]) == test["y"][others])),
                    "others_after": float(np.mean(predict(tuned, test["x"][others]) == test["y"][others])),
                    "finetune_s": seconds,
                }
            )
            progress.advance(progress.task_ids[0])
    return rows


def timing_large_replay(base: dict, fs, words: dict[str, list[Path]], per_class: int, repeats: int = 3) -> dict:
    """Wall time of ``add_keyword`` (10 clips) with a replay memory of ``per_class`` real samples
    per class (the top of the 10-50/class range a bundle may carry), on one core."""
    from bench.finetune_data import split_by_speaker  # lazy: pulls in soundfile

    bundle = Bundle.load(base["bundle"])
    rng = np.random.default_rng(base["seed"])
    pick = np.concatenate(
        [rng.choice(np.flatnonzero(fs.y_train == c), per_class, replace=False) for c in range(len(fs.classes))]
    )
    big = dataclasses.replace(bundle, replay_features=fs.x_train[pick], replay_labels=fs.y_train[pick])
    word, paths = next(iter(words.items()))
    clips, _ = split_by_speaker(paths, 10, base["seed"])
    seconds = []
    for _ in range(repeats):
        with one_blas_thread():
            started = time.perf_counter()
            finetune.add_keyword(big, word, clips, seed=base["seed"])
            seconds.append(time.perf_counter() - started)
    return {
        "replay_per_class": per_class,
        "n_replay": int(len(pick)),
        "n_classes": len(fs.classes),
        "clips": len(clips),
        "seconds": [round(t, 3) for t in seconds],
        "seconds_max": round(max(seconds), 3),
    }


# Summaries ---------------------------------------------------------------------------------------
def _ms(values: list[float], scale: float = 100.0) -> dict:
    a = np.asarray(values, dtype=np.float64) * scale
    return {"mean": round(float(a.mean()), 2), "std": round(float(a.std()), 2), "n": int(len(a))}


def summarise(add_rows: list[dict], personal_rows: list[dict]) -> dict:
    summary: dict[str, Any] = {"add_keyword": {}, "per_word": {}, "personalize": {}}
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in add_rows:
        groups[(row["shots"], row["variant"])].append(row)
        summary["per_word"].setdefault(f"{row['word']}/{row['shots']}/{row['variant']}", []).append(row["new_accuracy"])
    for (shots, variant), rows in sorted(groups.items()):
        entry = {
            "new_accuracy": _ms([r["new_accuracy"] for r in rows]),
            "old_before": _ms([r["old_before"] for r in rows]),
            "old_after": _ms([r["old_after"] for r in rows]),
            "old_drop_points": _ms([r["old_drop"] for r in rows]),
            "old_taken_by_new": _ms([r["old_taken_by_new"] for r in rows]),
        }
        if "finetune_s" in rows[0]:
            entry["finetune_s"] = _ms([r["finetune_s"] for r in rows], 1.0)
            entry["finetune_s_max"] = round(max(r["finetune_s"] for r in rows), 3)
        summary["add_keyword"][f"{shots}/{variant}"] = entry
    summary["per_word"] = {k: _ms(v) for k, v in summary["per_word"].items()}
    by_variant: dict[str, list[dict]] = defaultdict(list)
    for row in personal_rows:
        by_variant[row["variant"]].append(row)
    for variant, rows in by_variant.items():
        summary["personalize"][variant] = {
            "speaker_before": _ms([r["speaker_before"] for r in rows]),
            "speaker_after": _ms([r["speaker_after"] for r in rows]),
            "speaker_gain_points": _ms([r["speaker_after"] - r["speaker_before"] for r in rows]),
            "others_before": _ms([r["others_before"] for r in rows]),
            "others_after": _ms([r["others_after"] for r in rows]),
            "finetune_s": _ms([r["finetune_s"] for r in rows], 1.0),
        }
    return summary


def _pm(entry: dict) -> str:
    return f"{entry['mean']:.1f} ± {entry['std']:.1f}"


VARIANT_ORDER = list(VARIANTS)


def _variant_rank(variant: str) -> int:
    return VARIANT_ORDER.index(variant) if variant in VARIANT_ORDER else len(VARIANT_ORDER)


def _verdict(summary: dict) -> str:
    """The on-device learning targets against the default (replay) fine-tune from 10 clips."""
    entry = summary["add_keyword"].get("10/replay")
    if not entry:
        return "Targets: no 10-clip replay run in these results.\n"
    new, drop = entry["new_accuracy"]["mean"], entry["old_drop_points"]["mean"]
    wall = entry.get("finetune_s_max")
    checks = [
        f"new word from 10 clips {new:.1f} % (target >= 90 %: {'met' if new >= 90 else 'not met'})",
        f"old-class drop {drop:.1f} points (target <= 2: {'met' if drop <= 2 else 'not met'})",
    ]
    if wall is not None:
        checks.append(
            f"slowest fine-tune {wall:.2f} s on one core (target <= 5 s: {'met' if wall <= 5 else 'not met'})"
        )
    return "Targets, default fine-tune: " + "; ".join(checks) + ".\n"


def markdown(results: dict) -> str:
    config, summary, machine = results["config"], results["summary"], results["machine"]
    bases = results["base_models"]
    lines = [
        "# On-device fine-tuning benchmark (Speech Commands, held-out speakers)\n",
        f"Machine: {machine.get('cpu')}, {machine.get('cores')} cores, {machine.get('memory_gb')} GB, numpy "
        f"{machine.get('numpy')}, onnxruntime {machine.get('onnxruntime')}; load average at start "
        f"{', '.join(f'{v:.1f}' for v in machine.get('loadavg') or [])} (shared machine). "
        f"Command: `{results['command']}`.\n",
        f"Base task: {', '.join(results['base_classes'])} ({config['base_task']}); {_base_words(config)}, "
        f"batch {config['batch_size']}, one torch thread; base test accuracy "
        + ", ".join(f"{100 * b['base_test_accuracy']:.1f} %" for b in bases)
        + f" (seeds {', '.join(str(b['seed']) for b in bases)}). Replay: {config['coreset']} coreset, "
        f"{config['ipc']}/class, "
        f"stored int8 in the bundle. New words: {', '.join(config['words'])}; each seed picks the fine-tune speakers, "
        "the word's clips of every other speaker test it.\n",
        "Fine-tune defaults: softmax head warm-started from the bundle head, old rows pulled towards it "
        f"(l2 = {config['l2']}), new row weight decay {config['l2_new']}, balanced class weights with the new word "
        f"weighted {config.get('few_shot_clips', 0):g} / its clips (at most replay per class / 10, "
        "at least 1) × an old "
        "class, circular time "
        f"shifts {config['shifts']} frames on the new clips (copies weigh as much as the originals together). "
        "Accuracies in %, mean ± std over seeds × words; old-class accuracy predicts over all classes "
        "(a clip taken for the new word counts as an error).\n",
        _verdict(summary),
        "## Add a keyword\n",
    ]
    rows = []
    for key, entry in sorted(
        summary["add_keyword"].items(), key=lambda kv: (int(kv[0].split("/")[0]), _variant_rank(kv[0].split("/")[1]))
    ):
        shots, variant = key.split("/")
        wall = f"{entry['finetune_s']['mean']:.2f} / {entry['finetune_s_max']:.2f}" if "finetune_s" in entry else "–"
        rows.append(
            [
                shots,
                variant,
                *(
                    _pm(entry[k])
                    for k in ("new_accuracy", "old_before", "old_after", "old_drop_points", "old_taken_by_new")
                ),
                wall,
            ]
        )
    lines.append(
        markdown_table(
            [
                "clips",
                "variant",
                "new-word accuracy",
                "old classes before",
                "old classes after",
                "old drop (points)",
                "old clips taken for the new word",
                "fine-tune wall s (mean / max)",
            ],
            rows,
        )
    )
    synthetic = any("synthetic" in key for key in summary["add_keyword"])  # results before --synthetic have none
    variants_text = (
        "Variants: `replay` = the default; `no_replay` = `--no-replay`; `new_weight=…` = a fixed weight of the "
        "new word relative to an old class instead of the default rule (`new_weight=1`: plain class balance, the "
        "default before); "
        "`no_shift` = no time-shift augmentation; `l2_new=…` = another weight decay on the new row; `mlp` = "
        "one-hidden-layer MLP head (64 units, not storable in a bundle) instead of softmax regression"
    )
    if synthetic:
        variants_text += (
            "; `synthetic=20` = `--synthetic 20`: 20 espeak-ng / flite clips of the word in seeded random voices "
            "besides the user's (`,new_weight=…` with a fixed weight as well; skipped where no engine is installed). "
            "`replay`, `no_replay` and the `synthetic` variants went through `add_keyword` end to end (wall time = "
            "WAV reading, speech synthesis, front-end, embedding of replay + clips, head fit); the other ablations "
            "reuse `fit_head` on the same clips.\n"
        )
    else:
        variants_text += (
            ". Only `replay` and `no_replay` went through `add_keyword` end to end (wall time = WAV reading, "
            "front-end, embedding of replay + clips, head fit); the ablations reuse `fit_head` on the same clips.\n"
        )
    lines += [
        "",
        variants_text,
        "## New-word accuracy per word (replay)\n",
    ]
    taken: dict[str, int] = defaultdict(int)
    for row in results["add_keyword_runs"]:
        if row["variant"] == "replay":
            for name, n in row.get("old_taken_by_new_per_class", {}).items():
                taken[name] += n
    notes = [
        "",
        "Where the old-class drop comes from (replay, all runs): old test clips predicted as the new word, "
        "per true class: " + ", ".join(f"{k} {v}" for k, v in sorted(taken.items(), key=lambda kv: -kv[1])) + ".",
        "",
        "How the defaults were chosen: time shifts, the L2 anchor and the new row's weight decay were explored "
        "on seed 0 of this very set-up and then swept over all three seeds (`l2_new` rows above); the new word's "
        "weight was swept (1, 1.5, 2, 3, 5, 8) over all three seeds with 10- and 50-per-class replay memories. "
        "So the figures for the default are tuned, not held-out, with respect to those settings; the benchmark "
        "is small (5-24 test clips per word and seed), hence the large std.",
        "",
    ]
    per_word = sorted(summary["per_word"].items(), key=lambda kv: (kv[0].split("/")[0], int(kv[0].split("/")[1])))
    lines.append(
        markdown_table(
            ["word", "clips", "accuracy"],
            [[*key.split("/")[:2], _pm(entry)] for key, entry in per_word if key.split("/")[2] == "replay"],
        )
    )
    lines += notes
    timing = results.get("timing_large_replay")
    if timing:
        lines += [
            "Wall time with a larger replay memory "
            f"({timing['replay_per_class']}/class = {timing['n_replay']} samples, "
            f"{timing['n_classes']} classes, {timing['clips']} new clips, one core): "
            + ", ".join(f"{t:.2f}" for t in timing["seconds"])
            + " s.",
            "",
        ]
    lines += ["", f"## Personalisation ({config['per_class']} clips per keyword of one held-out speaker)\n"]
    personal = sorted(summary["personalize"].items(), key=lambda kv: _variant_rank(kv[0]))
    lines.append(
        markdown_table(
            [
                "variant",
                "speaker before",
                "speaker after",
                "gain (points)",
                "other speakers before",
                "other speakers after",
                "wall s",
            ],
            [
                [
                    variant,
                    *(
                        _pm(entry[k])
                        for k in (
                            "speaker_before",
                            "speaker_after",
                            "speaker_gain_points",
                            "others_before",
                            "others_after",
                        )
                    ),
                    f"{entry['finetune_s']['mean']:.2f}",
                ]
                for variant, entry in personal
            ],
        )
    )
    lines.append("")
    return "\n".join(lines)


DROP_AXIS_MAX = 15.0


def new_weight_frontier(summary: dict, shots: int, prefix: str = "") -> list[tuple[float, float, float]]:
    """(new word's weight, old-class drop in points, new-word accuracy in %) of the ``new_weight=…``
    variants for ``shots`` clips, by weight: the trade-off one number sets, which the plot draws.
    ``prefix`` picks another family, e.g. ``"synthetic=20,"`` for ``synthetic=20,new_weight=…``."""
    points = []
    for key, entry in summary.items():
        n, variant = key.split("/")
        if int(n) == shots and variant.startswith(prefix + "new_weight="):
            weight = float(variant.split("new_weight=", 1)[1])
            points.append((weight, entry["old_drop_points"]["mean"], entry["new_accuracy"]["mean"]))
    return sorted(points)


def plot(results: dict, path: Path) -> None:
    """New-word accuracy and old-class drop per variant and number of clips, and the trade-off
    between the two that the new word's weight sets (against the targets' corner)."""
    import matplotlib  # lazy: matplotlib only when used

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: matplotlib only when used

    summary = results["summary"]["add_keyword"]
    variants = sorted({k.split("/")[1] for k in summary}, key=_variant_rank)
    shots = sorted({int(k.split("/")[0]) for k in summary})
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2), gridspec_kw={"width_ratios": [1, 1, 0.8]})
    width = 0.8 / len(shots)
    for j, n in enumerate(shots):
        xs = np.arange(len(variants)) + j * width
        for ax, metric in zip(axes, ("new_accuracy", "old_drop_points")):
            means = [summary[f"{n}/{v}"][metric]["mean"] for v in variants]
            stds = [summary[f"{n}/{v}"][metric]["std"] for v in variants]
            ax.bar(xs, means, width, yerr=stds, capsize=3, label=f"{n} clips")
            if metric == "old_drop_points":  # no-replay forgets everything: clip the axis, print the value
                for x, m in zip(xs, means):
                    if m > DROP_AXIS_MAX:
                        ax.text(x, DROP_AXIS_MAX * 0.97, f"{m:.0f}", ha="center", va="top", fontsize=8, rotation=90)
        for prefix, style, what in (("", "o-", ""), ("synthetic=20,", "s--", " + 20 synthetic")):
            frontier = new_weight_frontier(summary, n, prefix)
            if len(frontier) < 2:
                continue
            _, drops, accs = zip(*frontier)
            axes[2].plot(drops, accs, style, label=f"{n} clips{what}")
            for weight, drop, acc in frontier:
                axes[2].annotate(f"{weight:g}", (drop, acc), textcoords="offset points", xytext=(4, -10), fontsize=7)
    # the on-device learning targets: >= 90 % on the new word from 10 clips, <= 2 points lost on the old ones
    axes[0].axhline(90, color="k", ls="--", lw=1, label="target 90 % (10 clips)")
    axes[1].axhline(2, color="k", ls="--", lw=1, label="target ≤ 2 points")
    axes[1].set_ylim(0, DROP_AXIS_MAX)
    axes[2].axhline(90, color="k", ls="--", lw=1)
    axes[2].axvline(2, color="k", ls="--", lw=1)
    axes[2].fill_between([0, 2], 90, 100, color="tab:green", alpha=0.12, label="targets (10 clips)")
    axes[2].set_xlim(left=0)
    axes[2].set_xlabel("old-class drop (points)")
    axes[2].set_ylabel("new-word accuracy (%)")
    axes[2].set_title("trade-off set by the new word's weight")
    axes[2].grid(alpha=0.3)
    axes[2].legend(fontsize=8)
    for ax, title in zip(axes, ("new-word accuracy (%)", "old-class accuracy drop (points)")):
        ax.set_xticks(np.arange(len(variants)) + (len(shots) - 1) * width / 2, variants, rotation=30, ha="right")
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Adding a keyword on the device (Speech Commands, held-out speakers)")
    fig.tight_layout()
    from kit.report.plots import save_figure  # lazy: pulls in matplotlib

    save_figure(fig, path, dpi=110)


def _base_words(config: dict) -> str:
    """How the base model was trained, in words (older results files have no ``base`` key)."""
    if config.get("base") == "production":
        extra = " + ".join(Path(p).name for p in config.get("extra_train") or []) or "no extra clips"
        shape = (
            ", ".join(f"{k} {v}" for k, v in config["arch_kwargs"].items())
            if config.get("arch_kwargs")
            else f"width {config['width']}"
        )
        lr = f", lr {config['lr']:g}" if config.get("lr") else ""
        words = f", word head {config['word_head']:g}" if config.get("word_head") else ""
        if config.get("unknown_words_share"):
            words += f", unknown-words share {config['unknown_words_share']:g}"
        return (
            f"{config['arch']} {shape} trained as `kit train DATASET` does (recipe without "
            f"FSDD negatives; the split's training clips + {extra}; {config.get('epochs') or 30} epochs{lr}{words})"
        )
    return f"ConvNet width {config['width']}, {config['max_samples']} samples"


def _json_object(text: str) -> dict:
    """``--arch-kwargs``: a JSON object, or argparse's one-line error."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not JSON ({err.msg}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object, got {text!r}")
    return value


# Main --------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.finetune", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--words", default="eight,six,happy", help="new words (from _unknown_), kept out of the base task"
    )
    parser.add_argument("--shots", default="5,10", help="clips of the new word given to the fine-tune")
    parser.add_argument("--seeds", default="0,1,2", help="one base model, coreset and speaker draw per seed")
    parser.add_argument("--coreset", default="herding", choices=("herding", "random", "kcenter"))
    parser.add_argument("--ipc", type=int, default=50, help="coreset (replay) samples per class")
    parser.add_argument(
        "--base",
        default="production",
        choices=("production", "plain"),
        help="production: the kit train DATASET recipe on all training material (default); "
        "plain: the earlier ConvNet w64 on the split's own clips, no recipe",
    )
    parser.add_argument("--arch", default=None, help="base architecture (production: convnet-mcu, plain: convnet)")
    parser.add_argument("--width", type=int, default=None, help="base width (production: 28, plain: 64)")
    parser.add_argument(
        "--arch-kwargs",
        type=_json_object,
        default=None,
        help='production base architecture options as JSON, e.g. \'{"size": "small"}\' for dscnn-mcu (not --width)',
    )
    parser.add_argument("--lr", type=float, default=None, help="production base learning rate (default: kit train's)")
    parser.add_argument("--epochs", type=int, default=None, help="production base epochs (default 30)")
    parser.add_argument(
        "--word-head",
        type=float,
        default=None,
        help="production base: weight of the training-only word head (kit train --word-head)",
    )
    parser.add_argument(
        "--unknown-words-share",
        type=float,
        default=None,
        help="production base: share of _unknown_'s draws given to its spoken words (kit train --unknown-words-share)",
    )
    parser.add_argument(
        "--max-samples", type=int, default=None, help="plain base training budget (samples seen; default 48000)"
    )
    parser.add_argument("--batch-size", type=int, default=None, help="production: 128, plain: 64")
    parser.add_argument(
        "--extra-train",
        action="append",
        default=None,
        help="extra Speech Commands training folder for the production base (default DATA/speech_commands_train "
        "when present)",
    )
    parser.add_argument("--per-class", type=int, default=2, help="personalisation clips per keyword")
    parser.add_argument(
        "--min-speaker-clips", type=int, default=30, help="speakers with at least this many test clips are personalised"
    )
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="cache of base models and bundles")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "finetune.json")
    parser.add_argument("--report-only", action="store_true", help="rewrite the .md and .png from the JSON")
    args = parser.parse_args(argv)
    if args.report_only:
        results = json.loads(args.out.read_text())
        atomic_write_text(args.out.with_suffix(".md"), markdown(results))
        plot(results, args.out.with_suffix(".png"))
        return 0
    production = args.base == "production"
    args.arch = args.arch or ("convnet-mcu" if production else "convnet")
    args.width = args.width or (28 if production else 64)
    args.batch_size = args.batch_size or (128 if production else 64)
    if args.max_samples is None and not production:  # production trains whole epochs, as kit train DATASET
        args.max_samples = 48000
    if args.extra_train is None:
        default_extra = Path(args.data_dir) / "speech_commands_train"
        args.extra_train = [str(default_extra)] if production and default_extra.is_dir() else []
    if args.extra_train and not production:
        parser.error("--extra-train needs --base production")
    if args.word_head is not None and not 0.0 <= args.word_head <= 10.0:
        parser.error(f"--word-head must lie in [0, 10], got {args.word_head}")
    if args.unknown_words_share is not None and not 0.0 < args.unknown_words_share < 1.0:
        parser.error(f"--unknown-words-share must lie in (0, 1), got {args.unknown_words_share}")
    if not production and (args.arch_kwargs or args.lr or args.epochs or args.word_head or args.unknown_words_share):
        parser.error("--arch-kwargs, --lr, --epochs, --word-head and --unknown-words-share need --base production")
    args.shots = [int(s) for s in args.shots.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    words_list = [w.strip() for w in args.words.split(",") if w.strip()]

    from bench.finetune_data import base_dataset, personal_speakers, word_clips  # lazy: pulls in soundfile
    from kit.features import extract_clips, load_feature_set  # lazy: pulls in soundfile

    console = Console(stderr=True)
    started = time.time()
    machine = machine_info()
    machine["loadavg"] = list(os.getloadavg())
    import onnxruntime  # lazy: onnxruntime only when used

    machine["onnxruntime"] = onnxruntime.__version__
    ds = base_dataset(args.data_dir, words_list, extra_train=args.extra_train)
    fs = load_feature_set(ds, args.data_dir, extra_train=args.extra_train, progress=True)
    loader = {
        "dataset": "speech_commands",
        "data_dir": args.data_dir,
        "split": "official",
        "task": "kws12",
        "test_fold": 5,
        "feature": fs.config.kind,
        "limit_per_class": None,
        "skip_bad": False,
        "data_fingerprint": ds.fingerprint(),
        "excluded_words": words_list,
        "extra_train": args.extra_train,
    }
    config = {
        "base_task": f"kws12 without {', '.join(words_list)} in _unknown_",
        "words": words_list,
        "shots": args.shots,
        "seeds": seeds,
        "coreset": args.coreset,
        "ipc": args.ipc,
        "base": args.base,
        "arch": args.arch,
        "width": args.width,
        "arch_kwargs": args.arch_kwargs,
        "lr": args.lr,
        "epochs": args.epochs,
        "word_head": args.word_head,
        "unknown_words_share": args.unknown_words_share,
        "extra_train": args.extra_train,
        "data_dir": str(args.data_dir),
        "max_samples": args.max_samples,
        "batch_size": args.batch_size,
        "per_class": args.per_class,
        "min_speaker_clips": args.min_speaker_clips,
        "l2": finetune.DEFAULT_L2,
        "l2_new": finetune.DEFAULT_L2_NEW,
        "shifts": list(finetune.DEFAULT_SHIFTS),
        "few_shot_clips": finetune.FEW_SHOT_CLIPS,
        "data_fingerprint": ds.fingerprint(),
        "feature_config": fs.config.to_dict(),
    }
    keys = ("base_task", "coreset", "ipc", "width", "max_samples", "batch_size")
    if production:  # the earlier (plain) cache keys stay valid
        keys += ("base", "arch", "extra_train", "data_dir")
    base_config = {k: config[k] for k in keys}
    # set only when given, so the cache keys of bases trained before these options existed stay valid
    base_config.update(
        {k: config[k] for k in ("arch_kwargs", "lr", "epochs", "word_head", "unknown_words_share") if config[k]}
    )
    base_config["data"] = (
        ds.fingerprint()["sha256"] if "sha256" in ds.fingerprint() else json.dumps(ds.fingerprint(), sort_keys=True)
    )

    # test split of the base task with speaker ids, normalised like the training data
    test_clips = ds.clips_in("test")
    raw, kept = extract_clips(test_clips, fs.config, progress=False)
    test = {
        "x": fs.normalizer.transform(raw),
        "y": np.array([ds.classes.index(test_clips[i].label) for i in kept]),
        "groups": np.array([test_clips[i].group for i in kept]),
    }
    words = {w: word_clips(args.data_dir, w) for w in words_list}
    speakers = personal_speakers(ds, args.min_speaker_clips)

    bases = [build_base(fs, loader, base_config, seed, args.work, console, ds) for seed in seeds]
    total = len(seeds) * (len(words) * len(args.shots) * len(runnable_variants()) + 2 * len(speakers))
    add_rows: list[dict] = []
    personal_rows: list[dict] = []
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as progress:
        progress.add_task("fine-tunes", total=total)
        for base in bases:
            add_rows += add_keyword_runs(base, words, test, args, console, progress)
            personal_rows += personalize_runs(base, speakers, ds, test, args, progress)
    timing = timing_large_replay(bases[0], fs, words, per_class=50)
    results = {
        "command": command_line("bench.finetune", argv),
        "config": config,
        "machine": machine,
        "base_classes": list(ds.classes),
        "base_models": [{k: v for k, v in b.items() if k != "bundle"} for b in bases],
        "personal_speakers": speakers,
        "summary": summarise(add_rows, personal_rows),
        "timing_large_replay": timing,
        "add_keyword_runs": add_rows,
        "personalize_runs": personal_rows,
        "wall_s": round(time.time() - started, 1),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    atomic_write_text(args.out, json.dumps(results, indent=1, sort_keys=True, default=str))
    atomic_write_text(args.out.with_suffix(".md"), markdown(results))
    plot(results, args.out.with_suffix(".png"))
    console.print(markdown(results))
    console.print(f"wrote {args.out}, {args.out.with_suffix('.md')}, {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
