"""Noise robustness (DDFAD Fig. 7): accuracy vs SNR of models trained on rendered distilled audio.

Protocol, per SNR (and "clean"):

1. the coreset is rendered to audio by Griffin-Lim (``kit.render``), and a reference coreset of
   the same per-class size is drawn at random from the real training clips;
2. seeded white Gaussian noise is added to every training clip of both sets and to every real test
   clip, scaled so each clip's SNR is exactly the asked one (signal power = mean square of the
   clip cut/padded to the model's window, the audio the front-end actually sees);
3. features are re-extracted with the kit's front-end and normalised with the coreset's own
   statistics (the deployed model's input space); one ConvNet per training seed is trained on the
   noisy set and tested on the noisy test set.

Why noise on both sides: a device hears noise at test time, and a model trained on clean audio
only is the separate, easier question. Why a random real reference: it tells whether the rendered
distilled audio degrades faster than real recordings do. Every (set, SNR, seed) is a resumable
cell of the ``RunDir``.
"""

from __future__ import annotations

import math
import os
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from deploy.runtime.coreset import Coreset, Normalizer
from deploy.runtime.errors import KitError
from deploy.runtime.features import FeatureConfig, fix_length

from ..audio import load_audio
from ..data import load_dataset
from ..features import limit_clips
from ..render import DEFAULT_ITERATIONS, check_invertible, reextract, render_coreset
from .render_audio import accuracy_cells, pct
from .rundir import RunDir

EXPERIMENT = "noise_robustness"
CLEAN = "clean"
VARIANTS = {"rendered": "rendered distilled audio", "random_real": "random real clips (same size)"}


# Noise -----------------------------------------------------------------------------------------------
def add_noise_at_snr(y: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """``y`` (n,) or (N, n) plus white Gaussian noise scaled to exactly ``snr_db`` per clip.

    The drawn noise is rescaled so its realised power (not just its variance) matches
    ``mean(y**2) / 10**(snr_db / 10)``: short clips would otherwise miss the SNR by a fraction of
    a dB at random. A silent clip (zero power) has no defined SNR and stays silent.
    """
    if not math.isfinite(snr_db):
        raise KitError(f"SNR must be a finite number of dB, got {snr_db}")
    clean = np.asarray(y, dtype=np.float64)
    batch = clean[None] if clean.ndim == 1 else clean
    noise = rng.standard_normal(batch.shape)
    signal_power = np.mean(batch**2, axis=-1, keepdims=True)
    noise_power = np.maximum(np.mean(noise**2, axis=-1, keepdims=True), 1e-30)
    noise *= np.sqrt(signal_power / (10.0 ** (snr_db / 10.0)) / noise_power)
    noisy = (batch + noise).astype(np.float32)
    return noisy[0] if clean.ndim == 1 else noisy


def measured_snr_db(clean: np.ndarray, noisy: np.ndarray) -> np.ndarray | float:
    """10 log10(signal power / noise power) per clip, the noise being ``noisy - clean``."""
    clean = np.asarray(clean, dtype=np.float64)
    residual = np.asarray(noisy, dtype=np.float64) - clean
    ratio = np.sum(clean**2, axis=-1) / np.maximum(np.sum(residual**2, axis=-1), 1e-30)
    return 10.0 * np.log10(ratio)


def parse_snrs(text: str) -> list[float | None]:
    """``"clean,30,20,10,5,0"`` -> [None, 30.0, ...]; ``clean``/``inf`` mean no noise.

    Order kept, duplicates dropped."""
    out: list[float | None] = []
    for part in filter(None, (p.strip().lower() for p in str(text).split(","))):
        if part in (CLEAN, "inf", "none"):
            value: float | None = None
        else:
            try:
                value = float(part)
            except ValueError:
                raise KitError(f"--snrs: '{part}' is not a number of dB or 'clean' (e.g. clean,30,20,10,5,0)") from None
            if not math.isfinite(value) or not -30.0 <= value <= 100.0:
                raise KitError(f"--snrs: {part} dB is outside -30..100 dB")
        if value not in out:
            out.append(value)
    if not out:
        raise KitError("--snrs: give at least one SNR, e.g. 30,20,10,5,0")
    return out


def snr_label(snr: float | None) -> str:
    return CLEAN if snr is None else f"{snr:g} dB"


def noise_rng(seed: int, snr: float | None, stream: str) -> np.random.Generator:
    """One generator per (seed, SNR, clip set): the test noise is identical for both training sets."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(f"{snr_label(snr)}|{stream}".encode())])


def noisy_features(
    audio: np.ndarray, snr: float | None, rng: np.random.Generator, config: FeatureConfig, normalizer: Normalizer
) -> np.ndarray:
    """Normalised features of ``audio`` (N, n) after adding noise at ``snr`` (None = clean)."""
    noisy = audio if snr is None else add_noise_at_snr(audio, snr, rng)
    return reextract(noisy, config, normalizer)


# Audio of the real clips -----------------------------------------------------------------------------
@dataclass
class SourceAudio:
    """Window-length real audio: the random reference training set and the test set."""

    reference: np.ndarray  # (N_ref, n_samples)
    reference_labels: np.ndarray  # (N_ref,) int64 in the coreset's class order
    test: np.ndarray  # (N_test, n_samples)
    test_labels: np.ndarray
    info: dict[str, Any]


def _load_window(clips: list, config: FeatureConfig, progress: bool, what: str) -> np.ndarray:

    out = np.zeros((len(clips), config.n_samples), dtype=np.float32)
    with Progress(
        f"[progress.description]{what}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
        disable=not progress,
    ) as bar:
        task = bar.add_task(what, total=len(clips))
        for i, clip in enumerate(clips):
            y = load_audio(clip.path, config.sample_rate, clip.offset_s, clip.duration_s)
            out[i] = fix_length(y, config.n_samples)
            bar.advance(task)
    return out


def load_source_audio(
    coreset: Coreset,
    *,
    data_dir: str | os.PathLike | None = None,
    dataset: str | None = None,
    test_limit: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> SourceAudio:
    """Decode the coreset's source dataset: a random same-size reference from train, and the test clips.

    The dataset and its loader options come from the coreset's ``source`` exactly as
    ``kit.training.load_test_split`` reads them, so the test clips are the ones ``kit train`` scores.
    """
    from ..training.testset import _LOADER_OPTIONS, dataset_reference  # lazy: pulls in torch

    source = coreset.source
    reference = dataset or dataset_reference(source)
    recorded_dir = source.get("data_dir")
    if (
        data_dir is None
        and not os.environ.get("KIT_DATA_DIR")
        and isinstance(recorded_dir, str)
        and Path(recorded_dir).is_dir()
    ):
        data_dir = recorded_dir
    options = {key: source[key] for key in _LOADER_OPTIONS if key in source}
    audio = load_dataset(reference, data_dir, **options)
    if sorted(audio.classes) != sorted(coreset.classes):
        raise KitError(
            f"dataset '{reference}' classes {audio.classes[:5]} do not match the coreset's {coreset.classes[:5]}"
        )
    index = {name: i for i, name in enumerate(coreset.classes)}

    rng = np.random.default_rng(seed)
    train = audio.clips_in("train")
    counts = np.bincount(coreset.hard_labels, minlength=len(coreset.classes))
    chosen = []
    for c, name in enumerate(coreset.classes):
        pool = [clip for clip in train if clip.label == name]
        if len(pool) < counts[c]:
            raise KitError(
                f"dataset '{reference}': class '{name}' has {len(pool)} training clips, the coreset {counts[c]}"
            )
        chosen += [pool[i] for i in sorted(rng.choice(len(pool), size=int(counts[c]), replace=False))]
    test = limit_clips(audio, audio.clips_in("test"), test_limit)
    if not test:
        raise KitError(f"dataset '{reference}' has no test clips")
    config = coreset.feature_config
    return SourceAudio(
        reference=_load_window(chosen, config, progress, "reference clips"),
        reference_labels=np.array([index[c.label] for c in chosen], dtype=np.int64),
        test=_load_window(test, config, progress, "test clips"),
        test_labels=np.array([index[c.label] for c in test], dtype=np.int64),
        info={
            "dataset": reference,
            "options": options,
            "n_test": len(test),
            "n_reference": len(chosen),
            "test_limit": test_limit,
            "dataset_sha256": audio.fingerprint()["sha256"],
        },
    )


# The experiment ---------------------------------------------------------------------------------------
@dataclass
class NoiseSettings:
    """Everything that determines a noise-robustness run (recorded in its ``config.json``)."""

    snrs: tuple[float | None, ...] = (None, 30.0, 20.0, 10.0, 5.0, 0.0)
    seed: int = 0
    train_seeds: tuple[int, ...] = (0, 1, 2)
    n_iter: int = DEFAULT_ITERATIONS
    max_samples: int | None = 16_000
    test_limit: int | None = None

    @classmethod
    def quick(cls, **changes: Any) -> "NoiseSettings":
        """The tests' setting on real recordings: 1 seed, short training, 10 test clips per class."""
        base = dict(train_seeds=(0,), n_iter=16, max_samples=1500, test_limit=10)
        base.update(changes)
        return cls(**base)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["snrs"] = [snr_label(s) for s in self.snrs]
        data["train_seeds"] = list(self.train_seeds)
        return data


def plot_accuracy_vs_snr(path: Path, snrs: list[float | None], results: dict[str, list[dict]]) -> None:
    """PNG: accuracy (mean ± std) against SNR per training set; 'clean' sits right of the highest SNR."""
    import matplotlib  # lazy: matplotlib only when used

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: matplotlib only when used

    finite = [s for s in snrs if s is not None]
    top = max(finite) if finite else 0.0
    gap = max(5.0, (top - min(finite)) / 5) if finite else 5.0
    xs = [top + gap if s is None else s for s in snrs]
    order = np.argsort(xs)
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for name, rows in results.items():
        means = np.array([100 * rows[i]["mean"] for i in order])
        stds = np.array([100 * rows[i]["std"] for i in order])
        ax.errorbar(np.array(xs)[order], means, yerr=stds, marker="o", capsize=3, label=VARIANTS.get(name, name))
    ax.set_xticks(np.array(xs)[order])
    ax.set_xticklabels([CLEAN if snrs[i] is None else f"{snrs[i]:g}" for i in order])
    ax.set_xlabel("SNR (dB) of training and test audio")
    ax.set_ylabel("ConvNet test accuracy (%)")
    ax.set_title("Noise robustness")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    from kit.report.plots import save_figure  # lazy: pulls in matplotlib

    save_figure(fig, path, dpi=110)


def run_noise_robustness(
    coreset: Coreset,
    out: str | os.PathLike,
    settings: NoiseSettings,
    *,
    coreset_path: str | None = None,
    data_dir: str | os.PathLike | None = None,
    dataset: str | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> RunDir:
    """Accuracy vs SNR for the rendered coreset and a random real reference; writes and returns the RunDir."""
    check_invertible(coreset.feature_config)
    if not settings.snrs:
        raise KitError("--snrs: give at least one SNR")
    config = {
        "coreset": coreset_path,
        "coreset_method": coreset.method,
        "coreset_ipc": coreset.ipc,
        "coreset_seed": coreset.seed,
        "n_coreset": int(len(coreset.features)),
        "classes": list(coreset.classes),
        "feature_config": coreset.feature_config.to_dict(),
        "source": coreset.source,
        "settings": settings.to_dict(),
        "data_dir": None if data_dir is None else str(data_dir),
        "dataset_override": dataset,
    }
    run = RunDir(
        out,
        EXPERIMENT,
        config,
        title=f"Noise robustness of a {coreset.method} coreset rendered to audio",
        overwrite=overwrite,
    )
    rendered = render_coreset(
        coreset, run.path / "audio", n_iter=settings.n_iter, seed=settings.seed, progress=progress
    )
    real = load_source_audio(
        coreset,
        data_dir=data_dir,
        dataset=dataset,
        test_limit=settings.test_limit,
        seed=settings.seed,
        progress=progress,
    )
    fc, norm, n_classes = coreset.feature_config, coreset.normalizer, len(coreset.classes)
    train_sets = {"rendered": (rendered.audio, coreset.labels), "random_real": (real.reference, real.reference_labels)}

    results: dict[str, list[dict]] = {name: [] for name in train_sets}
    measured: list[float | None] = []
    for snr in settings.snrs:
        label = snr_label(snr)
        test_rng = noise_rng(settings.seed, snr, "test")
        x_test = noisy_features(real.test, snr, test_rng, fc, norm)
        if snr is not None:  # the SNR the test clips actually got, from the same draw
            check = add_noise_at_snr(real.test, snr, noise_rng(settings.seed, snr, "test"))
            measured.append(float(np.mean(measured_snr_db(real.test, check))))
        else:
            measured.append(None)
        for name, (audio, labels) in train_sets.items():
            x = noisy_features(audio, snr, noise_rng(settings.seed, snr, name), fc, norm)
            results[name].append(
                accuracy_cells(
                    run,
                    f"{name}|{label}",
                    x,
                    labels,
                    x_test,
                    real.test_labels,
                    n_classes,
                    settings.train_seeds,
                    settings.max_samples,
                    progress,
                )
            )

    rows = [
        [
            snr_label(snr),
            "-" if m is None else round(m, 2) + 0.0,
            pct(results["rendered"][i]),
            pct(results["random_real"][i]),
        ]
        for i, (snr, m) in enumerate(zip(settings.snrs, measured))
    ]
    run.add_table(
        f"ConvNet test accuracy (%, mean ± std over {len(settings.train_seeds)} seed(s)) "
        "with Gaussian noise on training "
        f"and test audio ({real.info['n_test']} test clips, {len(coreset.features)} training clips)",
        ["SNR", "measured test SNR (dB)", VARIANTS["rendered"], VARIANTS["random_real"]],
        rows,
    )
    figure = run.path / "accuracy_vs_snr.png"
    plot_accuracy_vs_snr(figure, list(settings.snrs), results)
    run.add_figure(
        figure.relative_to(run.path),
        "Accuracy vs SNR: models trained on the noisy rendered coreset or on noisy random real clips, "
        "tested on equally noisy real test clips",
    )
    worst = int(np.argmin([s if s is not None else np.inf for s in settings.snrs]))
    run.headline = {
        "snrs": [snr_label(s) for s in settings.snrs],
        "accuracy_rendered": [round(r["mean"], 4) for r in results["rendered"]],
        "accuracy_random_real": [round(r["mean"], 4) for r in results["random_real"]],
        "rendered_tracks_real": [
            round(a["mean"] - b["mean"], 4) for a, b in zip(results["rendered"], results["random_real"])
        ],
        "n_test": real.info["n_test"],
    }
    run.summary = (
        f"{len(coreset.features)} {coreset.method} samples rendered with {settings.n_iter} Griffin-Lim "
        "iterations vs as many "
        f"random real clips; at {snr_label(settings.snrs[worst])} the rendered coreset scores "
        f"{100 * results['rendered'][worst]['mean']:.1f} % and the real clips "
        f"{100 * results['random_real'][worst]['mean']:.1f} %."
    )
    run.save()
    return run
