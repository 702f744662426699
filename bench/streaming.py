"""The streaming benchmark: false accepts per hour and false-reject rate of the edge runtime.

``python -m bench.streaming [--quick]`` trains (or reuses) the models, builds held-out test
streams (``bench/stream_builder.py``), runs the device's own streaming path over them
(``deploy.runtime.stream.detect_stream``: 1-s windows every 0.1 s, the bundle's front-end, the
model file, the bundle's head, ``RecognizeCommands`` smoothing and suppression) and writes
``bench/results/streaming.{json,md,png}`` plus the streams' ground truth
(``streaming.events.json``).

Models (ConvNet width 32 unless noted, trained on the Speech Commands kws12 training split: ten keywords
plus ``_silence_`` and ``_unknown_``; the detector reports only the ten keywords):

* ``full``: the whole training split, trained as ``kit train`` would (the kit's own
  augmentation only), run as the bundle's fp32 ONNX, int8 ONNX and int8 TFLite files;
* ``full + stream training``: the same training split plus stream-like copies of every clip,
  hard negatives (FSDD training digits, ESC-10 training folds) and quiet silence (the library's
  recipe, ``kit.training.recipe``, at the settings in ``bench/stream_training.py``), ConvNet width
  ``--stream-width`` (64), run as fp32 ONNX and
  int8 TFLite: what a team shipping a listening device trains, from training material only;
* coreset models: the same network trained on a coreset of 10 and 50 clips per class from RFAD,
  herding and random selection (``distill.make_distiller``), run as fp32 ONNX.

Scoring. A detection is correct when its label is the keyword whose span ``[start, end +
tolerance]`` contains its time and that keyword has not been credited yet; every other detection
is a false accept (wrong word, second event for one word, a negative, or noise); a keyword
without a correct detection is a false reject. FA/h pools both streams (the keyword stream with
its mixed-in negatives and the negatives-only stream): every hour the detector listened to.
Per-hop probabilities are computed once per model and stream; the threshold sweep only reruns
``RecognizeCommands`` (cheap). The operating point is the lowest FRR with at most 2 FA/h.

Why one feature memo for all models: every model shares the kws12 front-end and normaliser, so
the window features are identical; computing them once per stream (keyed by the window's bytes,
so a different window can never hit) keeps the full run affordable on two shared cores. The
memo changes no number (``tests/test_bench_streaming.py`` checks equality).
"""

from __future__ import annotations

import os

from rich.console import Console

from bench.machine import command_line, machine_info
from bench.stream_builder import StreamSpec, build_stream, load_material
from deploy.bundle_builder import build_bundle
from deploy.runtime.artifact import atomic_write_text
from deploy.runtime.bundle import Bundle, BundleClassifier
from deploy.runtime.compat import require_same_space, same_front_end, same_normalizer
from deploy.runtime.coreset import Coreset
from deploy.runtime.recognizer import DetectorSettings
from deploy.runtime.stream import detect_stream, detections_from_scores

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core per process, as on the device (set before numpy loads)

import argparse
import hashlib
import json
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from bench.paths import DEFAULT_DATA_DIR, RESULTS_DIR
from deploy.runtime.errors import KitError
from kit.report.tables import markdown_table

DEFAULT_WORK_DIR = Path(__file__).resolve().parents[1] / "runs" / "bench-streaming"
#: the DET sweep; dense from 0.8 up, where the operating points at <= 2 FA/h lie (a label-smoothed
#: model's averaged scores rarely pass 0.95, so a coarse grid there jumps tens of points of FRR),
#: and past 0.99 for models trained without label smoothing, whose scores crowd towards 1
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.82, 0.84, 0.86, 0.88, 0.9, 0.91, 0.92, 0.93, 0.94, 0.95)
THRESHOLDS += (0.96, 0.97, 0.98, 0.985, 0.99, 0.993, 0.995, 0.996, 0.997, 0.998, 0.999, 0.9995, 0.9999)
MAX_FA_PER_HOUR = 2.0
#: architectures the stream-trained model can use: arch -> (arch kwargs, Adam lr, label)
STREAM_ARCHS: dict[str, tuple[dict[str, Any], float, str]] = {
    "convnet": ({}, 1e-3, "ConvNet"),  # width from --stream-width
    "dscnn": ({"size": "small"}, 2e-3, "DS-CNN small"),
}
#: issue 16: <= 10 % false rejects at <= 2 false accepts per hour (results before it recorded 0.15)
TARGET_FRR = 0.10
TOLERANCE_S = 1.0
#: how ``_attribute`` names a false accept fired during a keyword with another keyword's label
SUBSTITUTION = "keyword (other word)"


# Scoring ---------------------------------------------------------------------------------------------
@dataclass
class StreamScore:
    """Counts for one stream at one detector setting."""

    keywords: int
    correct: int
    false_accepts: int
    seconds: float
    fa_by_kind: dict[str, int] = field(default_factory=dict)
    missed: list[int] = field(default_factory=list)  # indices (into the keyword events) never credited
    substituted: int = 0  # missed keywords during which another keyword was reported (a confusion)
    per_label: dict[str, list[int]] = field(default_factory=dict)  # keyword label -> [words, missed]

    @property
    def substitutions(self) -> int:
        """False accepts fired *during* a keyword with another keyword's label."""
        return int(self.fa_by_kind.get(SUBSTITUTION, 0))

    @property
    def false_rejects(self) -> int:
        return self.keywords - self.correct

    @property
    def frr(self) -> float | None:
        return self.false_rejects / self.keywords if self.keywords else None

    @property
    def fa_per_hour(self) -> float:
        return self.false_accepts / (self.seconds / 3600.0) if self.seconds > 0 else float("nan")


def _attribute(time_s: float, label: str, events: Sequence[Any], tolerance_s: float) -> str:
    """What was playing when a false accept fired: the kind of the event whose span (plus the
    tolerance) holds it ("keyword" = a wrong word or a second event for one word), else "noise"."""
    for event in events:
        if event.start_s <= time_s <= event.end_s + tolerance_s:
            if event.kind == "keyword":
                return "keyword (same word, repeat)" if event.label == label else SUBSTITUTION
            return event.kind
    return "noise"


def score_detections(
    detections: Sequence[Any], events: Sequence[Any], duration_s: float, tolerance_s: float = TOLERANCE_S
) -> StreamScore:
    """Match detections (``label``, ``time_s``) to the stream's events (``kind``, ``label``,
    ``start_s``, ``end_s``); see the module docstring for the rule.

    A detection is credited to the earliest uncredited keyword of its label whose span holds it;
    with the builder's gaps longer than the tolerance, at most one keyword qualifies.
    """
    keywords = [e for e in events if e.kind == "keyword"]
    credited = [False] * len(keywords)
    false_accepts = 0
    by_kind: dict[str, int] = defaultdict(int)
    for detection in sorted(detections, key=lambda d: d.time_s):
        hit = None
        for i, event in enumerate(keywords):
            if credited[i] or event.label != detection.label:
                continue
            if event.start_s <= detection.time_s <= event.end_s + tolerance_s:
                hit = i
                break
        if hit is None:
            false_accepts += 1
            by_kind[_attribute(detection.time_s, detection.label, events, tolerance_s)] += 1
        else:
            credited[hit] = True
    missed = [i for i, ok in enumerate(credited) if not ok]
    wrong_times = [
        d.time_s
        for d in detections
        if any(e.start_s <= d.time_s <= e.end_s + tolerance_s and e.label != d.label for e in keywords)
    ]
    substituted = sum(
        1 for i in missed if any(keywords[i].start_s <= t <= keywords[i].end_s + tolerance_s for t in wrong_times)
    )
    per_label: dict[str, list[int]] = {}
    for i, event in enumerate(keywords):
        counts = per_label.setdefault(event.label, [0, 0])
        counts[0] += 1
        counts[1] += int(not credited[i])
    return StreamScore(
        len(keywords),
        len(keywords) - len(missed),
        false_accepts,
        float(duration_s),
        dict(by_kind),
        missed,
        substituted,
        per_label,
    )


def pooled_row(threshold: float, scores: dict[str, StreamScore]) -> dict[str, Any]:
    """One point of a DET curve: FA/h over all streams, FRR over all keywords."""
    keywords = sum(s.keywords for s in scores.values())
    rejects = sum(s.false_rejects for s in scores.values())
    accepts = sum(s.false_accepts for s in scores.values())
    substitutions = sum(s.substitutions for s in scores.values())
    substituted = sum(s.substituted for s in scores.values())
    hours = sum(s.seconds for s in scores.values()) / 3600.0
    by_kind: dict[str, int] = defaultdict(int)
    per_label: dict[str, list[int]] = {}
    for s in scores.values():
        for kind, n in s.fa_by_kind.items():
            by_kind[kind] += n
        for label, (words, missed) in s.per_label.items():
            pooled = per_label.setdefault(label, [0, 0])
            pooled[0], pooled[1] = pooled[0] + words, pooled[1] + missed
    return {
        "threshold": float(threshold),
        "false_accepts": accepts,
        "hours": round(hours, 4),
        "fa_per_hour": round(accepts / hours, 3) if hours > 0 else None,
        "keywords": keywords,
        "false_rejects": rejects,
        "frr": round(rejects / keywords, 4) if keywords else None,
        # The same detections counted the other common way: a keyword confused with another is
        # only a miss (it is already in "frr"), and false accepts are triggers while no keyword
        # was playing (negatives, noise) or repeats.
        "substituted_rate": round(substituted / keywords, 4) if keywords else None,
        "fa_per_hour_without_substitutions": round((accepts - substitutions) / hours, 3) if hours > 0 else None,
        "fa_by_kind": dict(sorted(by_kind.items())),
        "per_keyword_frr": {label: round(missed / words, 4) for label, (words, missed) in sorted(per_label.items())},
        "per_stream": {
            name: {
                "false_accepts": s.false_accepts,
                "fa_per_hour": round(s.fa_per_hour, 3),
                "keywords": s.keywords,
                "false_rejects": s.false_rejects,
            }
            for name, s in scores.items()
        },
    }


def operating_point(
    rows: Sequence[dict[str, Any]], max_fa_per_hour: float = MAX_FA_PER_HOUR, fa_key: str = "fa_per_hour"
) -> dict[str, Any] | None:
    """The row with the lowest FRR among those with at most ``max_fa_per_hour`` (ties: fewer false
    accepts, then the higher threshold); None when no threshold is quiet enough. ``fa_key`` picks
    the false-accept count: ``fa_per_hour`` (every wrong trigger, the headline) or
    ``fa_per_hour_without_substitutions`` (confusions between keywords counted only as misses)."""
    ok = [r for r in rows if r.get(fa_key) is not None and r[fa_key] <= max_fa_per_hour and r["frr"] is not None]
    if not ok:
        return None
    return min(ok, key=lambda r: (r["frr"], r[fa_key], -r["threshold"]))


# Running the device path ---------------------------------------------------------------------------
class FeatureMemo:
    """A classifier whose ``features`` are memoised by the window's bytes (see the module docstring).

    Everything else (``classes``, ``feature_config``, ``logits``) is the wrapped classifier's, so
    ``detect_stream`` runs exactly as on the device. ``share`` makes another classifier use this
    memo; it refuses a classifier with another front-end or normaliser.
    """

    def __init__(self, classifier: Any, cache: dict[bytes, np.ndarray] | None = None) -> None:
        self.inner = classifier
        self.classes = classifier.classes
        self.feature_config = classifier.feature_config
        self.cache: dict[bytes, np.ndarray] = {} if cache is None else cache
        self.hits = self.misses = 0

    def share(self, classifier: Any) -> "FeatureMemo":
        a, b = self.inner, classifier
        if not (same_front_end(a.feature_config, b.feature_config) and same_normalizer(a.normalizer, b.normalizer)):
            raise KitError(
                "feature memo: the classifiers have different front-ends or normalisers; features cannot be shared"
            )
        return FeatureMemo(classifier, self.cache)

    def features(self, y: np.ndarray, rate: int) -> np.ndarray:
        window = np.ascontiguousarray(y, dtype=np.float32)
        key = hashlib.blake2b(
            memoryview(window).cast("B"), digest_size=16, person=str(int(rate)).encode()[:16]
        ).digest()
        cached = self.cache.get(key)
        if cached is None:
            self.misses += 1
            cached = self.cache[key] = self.inner.features(window, rate)
        else:
            self.hits += 1
        return cached

    def logits(self, x: np.ndarray) -> np.ndarray:
        return self.inner.logits(x)


def sweep_thresholds(
    scores: dict[str, Any],
    streams: dict[str, Any],
    settings: Any,
    thresholds: Sequence[float] = THRESHOLDS,
    tolerance_s: float = TOLERANCE_S,
) -> list[dict[str, Any]]:
    """DET rows: rerun the recogniser on precomputed per-hop scores (``StreamScores``) at each threshold."""
    rows = []
    for threshold in thresholds:
        per_stream = {}
        for name, stream in streams.items():
            found = detections_from_scores(scores[name], settings.with_(threshold=float(threshold)))
            per_stream[name] = score_detections(found, stream.events, stream.duration_s, tolerance_s)
        rows.append(pooled_row(threshold, per_stream))
    return rows


def stream_scores(classifier: Any, streams: dict[str, Any], settings: Any) -> tuple[dict[str, Any], dict[str, float]]:
    """Per-hop ``StreamScores`` of every stream via ``detect_stream`` (the device's offline path),
    and the seconds each took."""
    scores, seconds = {}, {}
    for name, stream in streams.items():
        started = time.perf_counter()
        _, scores[name] = detect_stream(classifier, stream.audio, stream.rate, settings, return_scores=True)
        seconds[name] = round(time.perf_counter() - started, 2)
    return scores, seconds


# Models ------------------------------------------------------------------------------------------
@dataclass
class ModelSpec:
    """One curve of the DET plot: a model file inside a bundle."""

    name: str  # e.g. "full fp32 (ONNX)", "rfad 10/class fp32 (ONNX)"
    bundle: Path
    model_file: str
    training: str  # "full" or "<method>-<ipc>"
    info: dict[str, Any] = field(default_factory=dict)


def _train(x: np.ndarray, y: np.ndarray, n_classes: int, config: Any) -> tuple[Any, dict[str, Any]]:
    from kit.training import train_model  # lazy: pulls in torch, soundfile

    model = train_model(x, y, n_classes, config, progress=True)
    return model, dict(model.train_stats)


def _save_model(path: Path, model: Any, fs: Any, config: Any, accuracy: float, extra: dict[str, Any]) -> Path:
    from kit.training import save_trained  # lazy: pulls in torch, soundfile

    return save_trained(path, model, fs, config, metrics={"accuracy": accuracy, "n_test": int(len(fs.y_test))}, **extra)


def _check_coreset(coreset: Any, fs: Any, path: Path) -> None:
    """A reused coreset must live in this benchmark's input space (kws12 classes, front-end, normaliser)."""
    require_same_space(fs, coreset, path, expected_name="the Speech Commands kws12 training split's")


def bundle_spec(path: Path) -> ModelSpec:
    """A bundle built outside the benchmark (``kit bundle``): its default model, its recorded metrics."""
    bundle = Bundle.load(path)
    provenance = bundle.provenance
    metrics = provenance.get("metrics") or {}
    info = {
        "clip_accuracy_kws12_test": metrics.get("accuracy"),
        "n_train": metrics.get("n_train", "?"),
        "model": provenance.get("model", {}).get("path"),
        "arch": provenance.get("model", {}).get("arch"),
        "arch_kwargs": provenance.get("model", {}).get("arch_kwargs"),
        "calibration": provenance.get("calibration"),
    }
    return ModelSpec(f"{path.stem} ({bundle.default_model})", path, bundle.default_model, "bundle", info)


def prepare_models(args: argparse.Namespace, work: Path, log: Any) -> tuple[list[ModelSpec], dict[str, Any]]:
    """Train the full-data model and the coreset models and build their bundles (or reuse them)."""
    import torch  # lazy: torch only when used

    from kit.pipeline import distill_coreset, load_training_set  # lazy: pulls in soundfile
    from kit.training import TrainConfig, evaluate  # lazy: pulls in torch, soundfile

    torch.set_num_threads(1)
    info: dict[str, Any] = {"stages_s": {}}
    started = time.perf_counter()
    fs, loader = load_training_set("speech_commands", args.data_dir, task="kws12", progress=True)
    info["stages_s"]["features"] = round(time.perf_counter() - started, 1)
    info["dataset"] = {
        "classes": fs.classes,
        "n_train": int(len(fs.y_train)),
        "n_test": int(len(fs.y_test)),
        "description": fs.source.get("description"),
    }
    n_classes = len(fs.classes)
    arch_kwargs = {"width": args.width}
    for sub in ("models", "coresets", "bundles"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    specs: list[ModelSpec] = []
    models_info: dict[str, Any] = {}

    # Coresets: the calibration / replay set of the full model (random 10/class) and the benchmarked ones.
    # A coreset file given with --coreset replaces the distillation of its method and size.
    coresets: dict[str, Path] = {}
    for given in args.coreset or []:
        coreset = Coreset.load(given)
        _check_coreset(coreset, fs, Path(given))
        coresets[f"{coreset.method}-{coreset.ipc}"] = Path(given)
    wanted = [(m, ipc) for m in args.methods for ipc in args.ipcs]
    if ("random", 10) not in wanted:
        wanted.append(("random", 10))
    for method, ipc in wanted:
        name = f"{method}-{ipc}"
        path = work / "coresets" / f"{name}.kit"
        if name in coresets or (args.reuse and path.is_file()):
            coresets.setdefault(name, path)
            continue
        log(f"distilling {name} ({'time budget ' + str(args.rfad_budget) + ' s' if method == 'rfad' else 'selection'})")
        params: dict[str, Any] = {}
        if method == "rfad":
            params = {"time_budget_s": args.rfad_budget, "threads": 1, "progress": True}
        t0 = time.perf_counter()
        coreset, _, _ = distill_coreset(fs, loader, method, ipc, seed=args.seed, **params)
        coreset.save(path)
        coresets[name] = path
        info["stages_s"][f"distill {name}"] = round(time.perf_counter() - t0, 1)
    info["coresets"] = {name: str(path) for name, path in coresets.items()}

    def train_and_bundle(
        name: str, x: np.ndarray, y: np.ndarray, config: Any, replay: Path, formats: tuple[str, ...], int8: bool
    ) -> tuple[Path, dict[str, Any]]:
        model_path, bundle_path = work / "models" / f"{name}.kit", work / "bundles" / f"{name}.kit"
        record_path = work / "models" / f"{name}.json"
        if args.reuse and bundle_path.is_file() and record_path.is_file():
            return bundle_path, {**json.loads(record_path.read_text()), "reused": True}
        log(f"training {name} on {len(x)} clips")
        t0 = time.perf_counter()
        model, stats = _train(x, y, n_classes, config)
        accuracy = float(evaluate(model, fs.x_test, fs.y_test)["accuracy"])
        _save_model(model_path, model, fs, config, accuracy, {"coreset": {"path": str(replay)}})
        t1 = time.perf_counter()
        build_bundle(model_path, replay, bundle_path, formats=formats, int8=int8)
        record = {
            "clip_accuracy_kws12_test": round(accuracy, 4),
            "n_train": int(len(x)),
            "train_stats": stats,
            "train_config": config.to_dict(),
            "train_s": round(t1 - t0, 1),
            "bundle_s": round(time.perf_counter() - t1, 1),
            "replay_coreset": str(replay),
        }
        atomic_write_text(record_path, json.dumps(record, indent=1, default=str))
        info["stages_s"][f"train {name}"] = record["train_s"]
        info["stages_s"][f"bundle {name}"] = record["bundle_s"]
        return bundle_path, record

    full_config = TrainConfig(
        arch="convnet",
        arch_kwargs=arch_kwargs,
        epochs=args.epochs,
        batch_size=args.batch,
        max_samples=None,
        seed=args.seed,
        threads=1,
    )
    # The full model in two bundles: fp32 + int8 ONNX, and fp32 + int8 TFLite.
    onnx_bundle, record = train_and_bundle(
        "full", fs.x_train, fs.y_train, full_config, coresets["random-10"], ("onnx",), True
    )
    models_info["full"] = record
    specs.append(ModelSpec("full fp32 ONNX", onnx_bundle, "model.fp32.onnx", "full", record))
    specs.append(ModelSpec("full int8 ONNX", onnx_bundle, "model.int8.onnx", "full", record))
    tfl_bundle = work / "bundles" / "full-tflite.kit"
    if not (args.reuse and tfl_bundle.is_file()):
        t0 = time.perf_counter()
        build_bundle(work / "models" / "full.kit", coresets["random-10"], tfl_bundle, formats=("tflite",), int8=True)
        info["stages_s"]["bundle full-tflite"] = round(time.perf_counter() - t0, 1)
    specs.append(ModelSpec("full int8 TFLite", tfl_bundle, "model.int8.tflite", "full", record))
    if args.stream_training:
        # The same training split plus stream-like copies, hard negatives and quiet silence
        # (bench/stream_training.py), trained for the full number of epochs: the model a user
        # who ships a listening device trains.
        from bench.stream_training import benchmark_recipe  # lazy: pulls in torch, soundfile
        from kit.data import load_dataset  # lazy: pulls in soundfile
        from kit.training import recipe_training_set  # lazy: pulls in torch, soundfile

        t0 = time.perf_counter()
        recipe = benchmark_recipe(args.stream_copies, args.seed, args.quick)
        audio = load_dataset("speech_commands", args.data_dir, task="kws12")
        built = recipe_training_set(audio, fs, recipe, args.data_dir)
        x_st, y_st, counts = built.x, built.y, built.counts
        info["stages_s"]["stream-training features"] = round(time.perf_counter() - t0, 1)
        for arch in args.stream_archs:
            # DS-CNN (Hello Edge, batch norm, depthwise convs) learns slowly at Adam 1e-3 on this
            # data; 2e-3 is what reached 86 % clip accuracy here (ConvNet w64: 1e-3, 86.3 %).
            kwargs, lr, label = STREAM_ARCHS[arch]
            kwargs = {"width": args.stream_width} if arch == "convnet" else kwargs
            name = "full-stream" if arch == "convnet" else f"full-stream-{arch}"
            label = f"ConvNet w{args.stream_width}" if arch == "convnet" else label
            st_config = full_config.with_(arch=arch, arch_kwargs=kwargs, epochs=args.stream_epochs, lr=lr)
            st_config = recipe.train_config(st_config)
            bundle, record = train_and_bundle(name, x_st, y_st, st_config, coresets["random-10"], ("onnx",), False)
            record.update(stream_training=recipe.to_dict(), stream_training_counts=counts, arch_label=label)
            models_info[name] = record
            specs.append(
                ModelSpec(
                    f"full + stream training, {label}, fp32 ONNX", bundle, "model.fp32.onnx", "full+stream", record
                )
            )
            st_tflite = work / "bundles" / f"{name}-tflite.kit"
            if not (args.reuse and st_tflite.is_file()):
                t0 = time.perf_counter()
                build_bundle(
                    work / "models" / f"{name}.kit", coresets["random-10"], st_tflite, formats=("tflite",), int8=True
                )
                info["stages_s"][f"bundle {name}-tflite"] = round(time.perf_counter() - t0, 1)
            specs.append(
                ModelSpec(
                    f"full + stream training, {label}, int8 TFLite",
                    st_tflite,
                    "model.int8.tflite",
                    "full+stream",
                    record,
                )
            )
    # Batch 64: at the kit's 16 000-sample budget a 600-clip coreset at batch 256 got only 63 steps
    # (measured: herding 50/class 42 % clip accuracy vs 56 % at batch 64).
    coreset_config = TrainConfig(
        arch="convnet",
        arch_kwargs=arch_kwargs,
        max_samples=args.coreset_samples,
        batch_size=args.coreset_batch,
        seed=args.seed,
        threads=1,
    )
    benchmarked = [f"{m}-{i}" for m in args.methods for i in args.ipcs]
    benchmarked += [n for n in coresets if n not in benchmarked and n != "random-10"]  # --coreset files
    for name in benchmarked:
        coreset = Coreset.load(coresets[name])
        method, ipc = coreset.method, coreset.ipc
        bundle, record = train_and_bundle(
            name, coreset.features, coreset.labels, coreset_config, coresets[name], ("onnx",), False
        )
        record["coreset"] = {
            "method": coreset.method,
            "ipc": coreset.ipc,
            "n": int(len(coreset.features)),
            "soft_labels": coreset.labels.ndim == 2,
            "params": coreset.params,
        }
        models_info[name] = record
        specs.append(ModelSpec(f"{method} {ipc}/class fp32 ONNX", bundle, "model.fp32.onnx", name, record))
    info["models"] = models_info
    return specs, info


# Reporting ---------------------------------------------------------------------------------------
def _fmt(value: float | None, pct: bool = False) -> str:
    if value is None:
        return "–"
    return f"{100 * value:.1f} %" if pct else f"{value:.2f}"


def _range(value: Any) -> str:
    """A (low, high) setting as the run printed it: a tuple in the run, a list once read back from the JSON."""
    return str(tuple(value)) if isinstance(value, (list, tuple)) else str(value)


def _stream_row(name: str, s: dict[str, Any]) -> list[Any]:
    ev = s["events"]
    neg = ", ".join(f"{k} {v}" for k, v in sorted(ev.items()) if k != "keyword")
    snr = s.get("keyword_snr_db")
    snr_text = f"{snr['median']} dB ({snr['p10']}–{snr['p90']})" if snr else "–"
    return [name, f"{s['duration_s'] / 60:.1f} min", ev.get("keyword", 0), neg, snr_text]


def _operating_row(m: dict[str, Any], cfg: dict[str, Any]) -> list[Any]:
    """A model at its operating point (lowest FRR within the FA/h limit), against the FRR target."""
    op = m["operating_point"]
    acc = m["info"].get("clip_accuracy_kws12_test")
    n_train = m["info"].get("n_train", "?")
    if op is None:
        return [m["name"], n_train, _fmt(acc, True), f"none ≤ {cfg['max_fa_per_hour']:g} FA/h", "–", "–", "–", "miss"]
    neg = op["per_stream"].get("negatives", {}).get("false_accepts", 0)
    meets = "met" if op["frr"] <= cfg["target_frr"] else "miss"
    return [
        m["name"],
        n_train,
        _fmt(acc, True),
        f"{op['threshold']:g}",
        _fmt(op["frr"], True),
        f"{op['fa_per_hour']:.2f}",
        f"{op['false_accepts']} ({neg})",
        meets,
    ]


def _thresholds_row(m: dict[str, Any], default: float) -> list[str]:
    rows = {r["threshold"]: r for r in m["rows"]}
    a, b = rows.get(default), rows.get(0.9)
    return [
        m["name"],
        _fmt(a and a["frr"], True),
        _fmt(a and a["fa_per_hour"]),
        _fmt(b and b["frr"], True),
        _fmt(b and b["fa_per_hour"]),
    ]


def _substitution_row(m: dict[str, Any], cfg: dict[str, Any]) -> list[str]:
    """The operating point when a keyword reported as another one is only a miss, not also a false accept."""
    op = operating_point(m["rows"], cfg["max_fa_per_hour"], "fa_per_hour_without_substitutions")
    if op is None or op.get("substituted_rate") is None:
        return [m["name"], "–", "–", "–", "–"]
    return [
        m["name"],
        f"{op['threshold']:g}",
        _fmt(op["frr"], True),
        _fmt(op["substituted_rate"], True),
        f"{op['fa_per_hour_without_substitutions']:.2f}",
    ]


def floor_row(m: dict[str, Any]) -> list[str]:
    """The fewest misses at any swept threshold, however many false accepts that costs: a model whose
    floor lies above the FRR target cannot meet it with any threshold or detector setting."""
    rows = [r for r in m["rows"] if r["frr"] is not None]
    if not rows:
        return [m["name"], "–", "–", "–", "–"]
    best = min(rows, key=lambda r: (r["frr"], r["fa_per_hour"] or 0.0))
    return [
        m["name"],
        _fmt(best["frr"], True),
        f"{best['threshold']:g}",
        f"{best['fa_per_hour']:.1f}",
        _fmt(best.get("substituted_rate"), True),
    ]


def _keyword_sections(result: dict[str, Any], cfg: dict[str, Any]) -> list[str]:
    """Operating points at <= 0.5 FA/h, the bundles' own per-keyword thresholds, and per-keyword false
    rejects (results written before these were measured have none of them: nothing is added)."""
    models = [m for m in result["models"] if "operating_point_0.5" in m]
    if not models:
        return []
    lines = [
        "",
        "Operating points at ≤ 2 and ≤ 0.5 FA/h (one threshold for all keywords), and each bundle's own "
        "per-keyword thresholds (chosen by `kit bundle --max-fa-per-hour` on a validation stream of training "
        "audio only):",
        "",
    ]
    rows = []
    for m in models:
        for label, op in (
            ("≤ 2 FA/h", m["operating_point"]),
            ("≤ 0.5 FA/h", m["operating_point_0.5"]),
            ("bundle thresholds", m.get("bundle_thresholds")),
        ):
            if label == "bundle thresholds" and op is None:
                continue
            threshold = "per keyword" if label == "bundle thresholds" else (f"{op['threshold']:g}" if op else "–")
            rows.append(
                [
                    m["name"],
                    label,
                    threshold,
                    _fmt(op and op["frr"], True),
                    _fmt(op and op["fa_per_hour"]),
                    op["false_accepts"] if op else "–",
                ]
            )
    lines.append(markdown_table(["model", "operating point", "threshold", "FRR", "FA/h", "false accepts"], rows))
    labels = sorted(
        {
            k
            for m in models
            for op in (m["operating_point"], m.get("bundle_thresholds"))
            if op
            for k in op.get("per_keyword_frr", {})
        }
    )
    if labels:
        lines += ["", "False rejects per keyword (at ≤ 2 FA/h, and with the bundle's thresholds):", ""]
        rows = []
        for m in models:
            for label, op in (("≤ 2 FA/h", m["operating_point"]), ("bundle thresholds", m.get("bundle_thresholds"))):
                if op and op.get("per_keyword_frr"):
                    rows.append([m["name"], label, *[_fmt(op["per_keyword_frr"].get(k), True) for k in labels]])
        lines.append(markdown_table(["model", "operating point", *labels], rows))
    return lines


def markdown(result: dict[str, Any], png_name: str = "streaming.png") -> str:
    cfg, streams = result["config"], result["streams"]
    lines = [
        "# Streaming benchmark: false accepts per hour and false rejects (edge runtime)",
        "",
        f"`{result['command']}` — seed {cfg['seed']}, {result['finished']}, {result['wall_s'] / 60:.1f} min wall.",
        "",
        "Held-out streams (test speakers, last 20 % of each background-noise file, FSDD test takes, ESC-10 fold 5):",
        "",
        markdown_table(
            ["stream", "length", "keywords", "negatives", "keyword SNR (median, p10–p90)"],
            [_stream_row(name, s) for name, s in streams.items()],
        ),
    ]
    det = cfg["detector"]
    lines += [
        "",
        f"Detector: window {det['window_s']} s, hop {det['hop_s']} s, average {det['average_window_s']} s, "
        f"minimum count {det['minimum_count']}, suppression {det['suppression_s']} s; threshold swept over "
        f"{', '.join(str(t) for t in cfg['thresholds'])}. A detection is correct within [start, "
        f"end + {cfg['tolerance_s']} s] "
        "of a keyword with its label; FA/h pools both streams.",
        "",
        f"Operating point = lowest FRR with ≤ {cfg['max_fa_per_hour']:g} FA/h. Target (full-data model): "
        f"≤ {cfg['max_fa_per_hour']:g} FA/h "
        f"at ≤ {100 * cfg['target_frr']:.0f} % FRR.",
        "",
        markdown_table(
            [
                "model",
                "clips trained on",
                "clip accuracy (kws12 test)",
                "threshold",
                "FRR",
                "FA/h",
                "false accepts (of which on the negatives-only stream)",
                "target",
            ],
            [_operating_row(m, cfg) for m in result["models"]],
        ),
    ]
    default = float(det["threshold"])
    lines += [
        "",
        f"At the bundle's default threshold ({default:g}) and at 0.9:",
        "",
        markdown_table(
            ["model", f"FRR @{default:g}", f"FA/h @{default:g}", "FRR @0.9", "FA/h @0.9"],
            [_thresholds_row(m, default) for m in result["models"]],
        ),
    ]
    lines += [
        "",
        'The same detections counted the other common way (as TensorFlow\'s streaming test separates "wrong" from '
        '"false positive"): a keyword reported as another keyword is only a miss, and false accepts are the triggers '
        "while no keyword was playing, plus repeats. Operating point = lowest FRR with ≤ "
        f"{cfg['max_fa_per_hour']:g} such FA/h:",
        "",
        markdown_table(
            ["model", "threshold", "FRR", "of which confused with another keyword", "FA/h (no keyword playing)"],
            [_substitution_row(m, cfg) for m in result["models"]],
        ),
        "",
        "The floor: the fewest misses at any swept threshold, whatever the false accepts. Keywords reported as "
        "another keyword are misses at every threshold, so when the floor lies above the target FRR no threshold "
        "or detector setting can meet the target; only a model that confuses fewer keywords can.",
        "",
        markdown_table(
            [
                "model",
                "lowest FRR",
                "threshold",
                "FA/h there",
                "keywords reported as another keyword",
            ],
            [floor_row(m) for m in result["models"]],
        ),
    ]
    stream_model = next((m for m in result["models"] if m["training"] == "full+stream"), None)
    if stream_model:
        st = stream_model["info"].get("stream_training", {})
        counts = ", ".join(f"{k} {v}" for k, v in stream_model["info"].get("stream_training_counts", {}).items())
        lines += [
            "",
            f'"full + stream training" ({", ".join(cfg.get("stream_archs", []))}; {cfg.get("stream_epochs")} epochs) '
            f"learnt from training material only ({counts}): "
            f"stream-like copies shifted by up to {st.get('max_shift_s')} s, "
            f"gain {_range(st.get('keyword_gain_db'))} dB, over the training part of the background noise at "
            f"{_range(st.get('noise_dbfs'))} dBFS; "
            "FSDD training digits and ESC-10 training-fold cuts as _unknown_; quiet noise windows as _silence_ "
            "(`bench/stream_training.py`).",
        ]
    full = next((m for m in result["models"] if m["training"] == "full"), None)
    if full and full["operating_point"]:
        kinds = ", ".join(f"{k}: {v}" for k, v in full["operating_point"]["fa_by_kind"].items()) or "none"
        lines += ["", f"False accepts of {full['name']} at its operating point, by what was playing: {kinds}."]
    lines += _keyword_sections(result, cfg)
    lines += [
        "",
        f"![DET curves]({png_name})",
        "",
        f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores (shared; load average at start "
        f"{result['load_average_start']}). Stage times (s): "
        + ", ".join(f"{k} {v}" for k, v in result["stages_s"].items())
        + ".",
    ]
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib  # lazy: matplotlib only when used

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: matplotlib only when used

    hours = max((r["hours"] for m in result["models"] for r in m["rows"]), default=1.0)
    floor = 0.5 / hours  # where "0 false accepts" is drawn on the log axis
    fig, ax = plt.subplots(figsize=(7.5, 5.0))
    colours = plt.get_cmap("tab20")  # up to 20 curves without repeating a colour
    for index, m in enumerate(result["models"]):
        xs = [max(r["fa_per_hour"], floor) for r in m["rows"]]
        ys = [100 * r["frr"] for r in m["rows"]]
        style = "-" if m["training"].startswith("full") else "--"
        ax.plot(xs, ys, style, marker="o", markersize=3, label=m["name"], color=colours(index % 20))
        if m["operating_point"]:
            op = m["operating_point"]
            ax.plot([max(op["fa_per_hour"], floor)], [100 * op["frr"]], "k*", markersize=9)
        if m.get("bundle_thresholds"):  # the bundle's own per-keyword thresholds: one point, not a curve
            op = m["bundle_thresholds"]
            ax.plot([max(op["fa_per_hour"], floor)], [100 * op["frr"]], "D", markersize=6, color=colours(index % 20))
    cfg = result["config"]
    ax.axvline(cfg["max_fa_per_hour"], color="grey", lw=0.8, ls=":")
    ax.axhline(100 * cfg["target_frr"], color="grey", lw=0.8, ls=":")
    ax.axvline(floor, color="lightgrey", lw=0.6)
    ax.set_xscale("log")
    ax.set_xlabel(f"false accepts per hour (log; {hours:.2f} h of audio, 0 drawn at {floor:.2f})")
    ax.set_ylabel("false-reject rate (%)")
    ax.set_title("Keyword spotting on held-out streams (kws12 models; * = operating point)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    from kit.report.plots import save_figure  # lazy: pulls in matplotlib

    save_figure(fig, path, dpi=130)


# Command line ------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.streaming", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="minutes instead of tens of minutes: short streams, short training"
    )
    parser.add_argument(
        "--data-dir", default=DEFAULT_DATA_DIR, help="real recordings (default ../shared/data or $KIT_DATA_DIR)"
    )
    parser.add_argument(
        "--work-dir", type=Path, default=None, help=f"models, coresets, bundles (default {DEFAULT_WORK_DIR}[-quick])"
    )
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--minutes",
        type=float,
        default=None,
        help="length of the keyword stream (default 36: each held-out keyword about once; quick 3)",
    )
    parser.add_argument(
        "--negative-minutes", type=float, default=None, help="length of the negatives-only stream (default 30, quick 3)"
    )
    parser.add_argument("--epochs", type=int, default=None, help="epochs of the full-data model (default 40, quick 10)")
    parser.add_argument("--batch", type=int, default=128, help="batch size of the full-data model")
    parser.add_argument("--width", type=int, default=32, help="ConvNet width (32: int8 file well under 64 KB)")
    parser.add_argument("--methods", nargs="*", default=None, help="coreset methods (default rfad herding random)")
    parser.add_argument("--ipcs", nargs="*", type=int, default=None, help="clips per class (default 10 50; quick 10)")
    parser.add_argument(
        "--rfad-budget", type=float, default=None, help="RFAD time budget per coreset, s (default 120, quick 20)"
    )
    parser.add_argument(
        "--coreset-samples",
        type=int,
        default=None,
        help="training samples seen by each coreset model (default 16000, quick 3000)",
    )
    parser.add_argument("--coreset-batch", type=int, default=64, help="batch size of the coreset models")
    parser.add_argument(
        "--no-stream-training",
        dest="stream_training",
        action="store_false",
        help="skip the stream-trained full-data model (bench/stream_training.py)",
    )
    parser.add_argument(
        "--stream-copies", type=int, default=None, help="stream-like copies per training clip (default 3, quick 1)"
    )
    parser.add_argument(
        "--stream-width", type=int, default=None, help="ConvNet width of the stream-trained model (default 64)"
    )
    parser.add_argument(
        "--stream-archs",
        nargs="*",
        default=None,
        choices=sorted(STREAM_ARCHS),
        help="architectures trained with stream training (default convnet dscnn; quick convnet)",
    )
    parser.add_argument(
        "--stream-epochs", type=int, default=None, help="epochs of the stream-trained model (default 25, quick 2)"
    )
    parser.add_argument(
        "--coreset", action="append", help="also benchmark a model trained on this coreset file (kws12)"
    )
    parser.add_argument(
        "--tolerance", type=float, default=TOLERANCE_S, help="seconds after a keyword's end a detection may come"
    )
    parser.add_argument(
        "--bundle",
        action="append",
        type=Path,
        default=None,
        help="also benchmark this bundle's default model (kws12, e.g. from kit train + kit bundle)",
    )
    parser.add_argument(
        "--stem",
        default=None,
        help="results file stem (default streaming, or streaming.quick); e.g. streaming_kws12_bundles",
    )
    parser.add_argument("--only-bundles", action="store_true", help="benchmark only the --bundle files (train nothing)")
    parser.add_argument(
        "--reuse", action="store_true", help="reuse coresets, models and bundles already in the work dir"
    )
    return parser


def resolve_args(args: argparse.Namespace) -> argparse.Namespace:
    q = args.quick
    args.minutes = args.minutes or (3.0 if q else 36.0)
    args.negative_minutes = args.negative_minutes or (3.0 if q else 30.0)
    args.epochs = args.epochs or (10 if q else 40)
    args.methods = args.methods if args.methods is not None else ["rfad", "herding", "random"]
    args.ipcs = args.ipcs or ([10] if q else [10, 50])
    args.rfad_budget = args.rfad_budget or (20.0 if q else 120.0)
    args.coreset_samples = args.coreset_samples or (3000 if q else 16000)
    args.stream_copies = args.stream_copies or (1 if q else 3)
    args.stream_width = args.stream_width or (16 if q else 64)
    args.stream_epochs = args.stream_epochs or (2 if q else 25)
    args.stream_archs = args.stream_archs or (["convnet"] if q else ["convnet", "dscnn"])
    args.work_dir = args.work_dir or Path(f"{DEFAULT_WORK_DIR}{'-quick' if q else ''}")
    return args


def build_streams(material: Any, minutes: float, negative_minutes: float, seed: int) -> dict[str, Any]:
    """The keyword stream (keywords with mixed-in negatives) and the negatives-only stream.

    Gaps of 1.2-3 s keep consecutive events further apart than the 1-s scoring tolerance (so at
    most one keyword can claim a detection) and longer than the recogniser's 1-s suppression.
    """
    return {
        "keywords": build_stream(
            material, StreamSpec(minutes=minutes, with_keywords=True, negative_rate=0.2, gap_s=(1.2, 3.0)), seed=seed
        ),
        "negatives": build_stream(
            material,
            StreamSpec(minutes=negative_minutes, with_keywords=False, negative_rate=0.6, gap_s=(1.2, 3.0)),
            seed=seed + 1,
        ),
    }


def main(argv: list[str] | None = None) -> int:

    args = resolve_args(build_parser().parse_args(argv))
    console = Console(stderr=True)
    started = time.perf_counter()
    load_start = os.getloadavg()

    def log(message: str) -> None:
        console.print(f"[bold][{(time.perf_counter() - started) / 60:5.1f} min][/bold] {message}")

    work: Path = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    specs, info = ([], {"stages_s": {}}) if args.only_bundles else prepare_models(args, work, log)
    stages = info.pop("stages_s")
    specs += [bundle_spec(path) for path in args.bundle or []]

    log("loading held-out material and building the streams")
    t0 = time.perf_counter()
    material = load_material(args.data_dir, seed=args.seed)
    streams = build_streams(material, args.minutes, args.negative_minutes, args.seed)
    stages["streams"] = round(time.perf_counter() - t0, 1)
    for name, stream in streams.items():
        log(f"stream {name}: {stream.summary()['duration_s'] / 60:.1f} min, {stream.summary()['events']}")

    # The kit's current default detector, not whatever a reused bundle recorded when it was built:
    # the benchmark measures the defaults every new bundle gets.

    settings = DetectorSettings()
    memos: dict[str, dict[bytes, np.ndarray]] = {name: {} for name in streams}
    results = []
    for spec in specs:
        t0 = time.perf_counter()
        classifier = BundleClassifier(Bundle.load(spec.bundle), spec.model_file, threads=1)
        scores, seconds = {}, {}
        for name, stream in streams.items():  # one stream at a time, each with its own memo
            memo = FeatureMemo(classifier, memos[name])
            s, sec = stream_scores(memo, {name: stream}, settings)
            scores.update(s)
            seconds.update(sec)
        rows = sweep_thresholds(scores, streams, settings, THRESHOLDS, args.tolerance)
        op = operating_point(rows)
        extra = {"operating_point_0.5": operating_point(rows, 0.5)}
        own = classifier.bundle.detector
        if own.thresholds:  # the per-keyword thresholds the bundle chose on its validation stream of training audio
            own_settings = settings.with_(threshold=own.threshold)
            own_settings = DetectorSettings.from_dict({**own_settings.to_dict(), "thresholds": own.thresholds})
            extra["bundle_thresholds"] = pooled_row(
                own.threshold,
                {
                    name: score_detections(
                        detections_from_scores(scores[name], own_settings),
                        stream.events,
                        stream.duration_s,
                        args.tolerance,
                    )
                    for name, stream in streams.items()
                },
            )
            extra["bundle_thresholds"]["thresholds"] = dict(own.thresholds)
        results.append(
            {
                "name": spec.name,
                "training": spec.training,
                "bundle": str(spec.bundle),
                "model_file": spec.model_file,
                "bundle_bytes": spec.bundle.stat().st_size,
                "model_bytes": len(classifier.bundle.models[spec.model_file]),
                "info": spec.info,
                "rows": rows,
                "operating_point": op,
                **extra,
                "scoring_s": seconds,
                "sweep_and_score_s": round(time.perf_counter() - t0, 1),
            }
        )
        summary = (
            f"FRR {100 * op['frr']:.1f} % at {op['fa_per_hour']:.2f} FA/h (threshold {op['threshold']:g})"
            if op
            else "no threshold reaches ≤ 2 FA/h"
        )
        log(f"{spec.name}: {summary}")
        stages[f"stream {spec.name}"] = round(time.perf_counter() - t0, 1)
    memos.clear()

    result = {
        "benchmark": "streaming",
        "command": command_line("bench.streaming", argv),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        "wall_s": round(time.perf_counter() - started, 1),
        "load_average_start": [round(v, 2) for v in load_start],
        "machine": machine_info(),
        "config": {
            "seed": args.seed,
            "quick": args.quick,
            "keyword_stream_minutes": args.minutes,
            "negatives_stream_minutes": args.negative_minutes,
            "data_dir": str(args.data_dir),
            "work_dir": str(work),
            "arch": "convnet",
            "width": args.width,
            "epochs_full": args.epochs,
            "batch_full": args.batch,
            "methods": args.methods,
            "ipcs": args.ipcs,
            "rfad_time_budget_s": args.rfad_budget,
            "coreset_train_samples": args.coreset_samples,
            "coreset_batch": args.coreset_batch,
            "stream_training": args.stream_training,
            "stream_copies": args.stream_copies,
            "stream_width": args.stream_width,
            "stream_archs": args.stream_archs,
            "stream_epochs": args.stream_epochs,
            "extra_coresets": args.coreset or [],
            "detector": settings.to_dict(),
            "thresholds": list(THRESHOLDS),
            "tolerance_s": args.tolerance,
            "max_fa_per_hour": MAX_FA_PER_HOUR,
            "target_frr": TARGET_FRR,
            "reuse": args.reuse,
        },
        "material": material.description,
        "streams": {name: s.summary() for name, s in streams.items()},
        "setup": info,
        "stages_s": stages,
        "models": results,
    }
    out, stem = args.results_dir, args.stem or ("streaming.quick" if args.quick else "streaming")
    events = {name: [e.to_dict() for e in s.events] for name, s in streams.items()}
    atomic_write_text(out / f"{stem}.events.json", json.dumps(events, indent=0))
    atomic_write_text(out / f"{stem}.json", json.dumps(result, indent=1, default=str))
    atomic_write_text(out / f"{stem}.md", markdown(result, f"{stem}.png"))
    plot(result, out / f"{stem}.png")
    log(f"wrote {out / stem}.json, .md, .png and .events.json")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
