"""The Griffin-Lim audio experiment behind ``kit render``: render, measure the round trip, retrain.

Why an experiment and not just a converter: rendering is only useful if the audio still carries
what the distilled maps carried. Two figures say so: the round trip (features re-extracted from
the WAVs vs the distilled maps, against a white-noise floor) and the accuracy of a ConvNet trained
on the re-extracted features next to one trained on the coreset itself (same protocol as
``kit.pipeline.score_coreset``: ``TrainConfig`` defaults, one model per seed, the coreset's real
test split normalised with the coreset's own statistics).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deploy.runtime.coreset import Coreset
from deploy.runtime.errors import KitError

from ..render import DEFAULT_ITERATIONS, RenderResult, channel_names, check_invertible, noise_baseline, render_coreset
from .rundir import RunDir

EXPERIMENT = "render"


@dataclass
class RenderSettings:
    """Everything that determines a render run's results (recorded in its ``config.json``)."""

    n_iter: int = DEFAULT_ITERATIONS
    seed: int = 0
    evaluate: bool = False
    train_seeds: tuple[int, ...] = (0, 1, 2)
    max_samples: int | None = 16_000
    test_limit: int | None = None  # test clips per class (None = the whole test split)
    examples: int = 4  # feature maps shown in the figure
    audio_entries: int = 100  # WAVs listed in results.json for the report

    @classmethod
    def quick(cls, **changes: Any) -> "RenderSettings":
        """The setting the tests use on the real recordings: seconds, not minutes."""
        base = dict(n_iter=16, train_seeds=(0,), max_samples=1500, test_limit=10, examples=2, audio_entries=20)
        base.update(changes)
        return cls(**base)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "train_seeds": list(self.train_seeds)}


def train_options(max_samples: int | None) -> dict[str, Any]:
    """Training settings shared by the render and noise experiments (score_coreset's protocol)."""
    return {"max_samples": max_samples, "threads": 1}


def accuracy_cells(
    run: RunDir,
    prefix: str,
    x: np.ndarray,
    y: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    n_classes: int,
    seeds: tuple[int, ...],
    max_samples: int | None,
    progress: bool,
) -> dict[str, Any]:
    """Train/evaluate one ConvNet per seed, each a resumable cell ``<prefix>|seed<k>``; mean ± std."""
    from ..training import TrainConfig, train_eval_seeds  # lazy: pulls in torch

    config = TrainConfig(**train_options(max_samples))
    accuracies = []
    for seed in seeds:
        key = f"{prefix}|seed{seed}"
        if not run.has(key):
            result = train_eval_seeds(x, y, x_test, y_test, n_classes, config, seeds=(seed,), progress=progress)
            run.record(
                key, {"accuracy": result["accuracies"][0], "train_seconds": result["per_seed"][0]["train_seconds"]}
            )
        accuracies.append(run.get(key)["accuracy"])
    values = np.asarray(accuracies, dtype=np.float64)
    return {
        "mean": float(values.mean()),
        "std": float(values.std()),
        "accuracies": values.tolist(),
        "seeds": list(seeds),
    }


def pct(result: dict[str, Any]) -> str:
    return f"{100 * result['mean']:.1f} ± {100 * result['std']:.1f}"


def plot_feature_pairs(path: Path, coreset: Coreset, rendered: RenderResult, n_examples: int) -> list[int]:
    """PNG: distilled channel-0 map | re-extracted map | waveform, one row per example (distinct classes first)."""
    import matplotlib  # lazy: matplotlib only when used

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: matplotlib only when used

    labels = coreset.hard_labels
    chosen: list[int] = []
    for c in range(len(coreset.classes)):  # one per class first, then fill up
        hits = np.flatnonzero(labels == c)
        if len(hits) and len(chosen) < n_examples:
            chosen.append(int(hits[0]))
    chosen += [i for i in range(len(labels)) if i not in chosen][: max(0, n_examples - len(chosen))]
    config = coreset.feature_config
    name = channel_names(config)[0]
    fig, axes = plt.subplots(len(chosen), 3, figsize=(11, 2.3 * len(chosen)), squeeze=False)
    for row, i in enumerate(chosen):
        a, b = coreset.features[i, 0], rendered.reextracted[i, 0]
        low, high = float(min(a.min(), b.min())), float(max(a.max(), b.max()))
        for col, (image, title) in enumerate(((a, "distilled"), (b, "re-extracted from audio"))):
            ax = axes[row, col]
            ax.imshow(image, origin="lower", aspect="auto", vmin=low, vmax=high, cmap="magma")
            ax.set_title(f"#{i} {rendered.labels[i]}: {title} ({name})", fontsize=8)
            ax.set_xlabel("frame", fontsize=7)
            ax.set_ylabel("coefficient", fontsize=7)
        t = np.arange(config.n_samples) / config.sample_rate
        axes[row, 2].plot(t, rendered.audio[i], linewidth=0.4)
        corr = rendered.metrics["correlation_per_sample"][i][0]
        axes[row, 2].set_title(f"Griffin-Lim audio (r = {corr:.3f})", fontsize=8)
        axes[row, 2].set_xlabel("s", fontsize=7)
    fig.tight_layout()
    from kit.report.plots import save_figure  # lazy: pulls in matplotlib

    save_figure(fig, path, dpi=110)
    return chosen


def run_render(
    coreset: Coreset,
    out: str | os.PathLike,
    settings: RenderSettings,
    *,
    coreset_path: str | None = None,
    data_dir: str | os.PathLike | None = None,
    dataset: str | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> RunDir:
    """Render ``coreset`` into ``out/audio``, measure the round trip, optionally retrain; write the RunDir."""
    check_invertible(coreset.feature_config)
    if settings.examples < 1:
        raise KitError(f"--examples must be at least 1, got {settings.examples}")
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
    run = RunDir(out, EXPERIMENT, config, title=f"Griffin-Lim audio of a {coreset.method} coreset", overwrite=overwrite)
    rendered = render_coreset(
        coreset, run.path / "audio", n_iter=settings.n_iter, seed=settings.seed, progress=progress
    )
    floor = noise_baseline(
        coreset.features, rendered.audio, coreset.feature_config, coreset.normalizer, seed=settings.seed
    )

    metrics = rendered.metrics
    rows = [
        [
            name,
            round(metrics["correlation"][c], 4),
            round(metrics["relative_error"][c], 4),
            round(floor["correlation"][c], 4),
            round(floor["relative_error"][c], 4),
        ]
        for c, name in enumerate(channel_names(coreset.feature_config))
    ]
    run.add_table(
        "Round trip: features re-extracted from the rendered audio vs the distilled features (normalised, "
        "mean over samples)",
        ["channel", "correlation", "relative error", "white-noise correlation", "white-noise relative error"],
        rows,
    )
    run.headline = {
        "round_trip_correlation": round(metrics["correlation"][0], 4),
        "round_trip_relative_error": round(metrics["relative_error"][0], 4),
        "n_rendered": len(rendered.paths),
        "griffin_lim_iterations": settings.n_iter,
    }

    if settings.evaluate:
        from ..training import load_test_split  # lazy: pulls in torch

        test = load_test_split(
            coreset.source,
            coreset.feature_config,
            coreset.normalizer,
            coreset.classes,
            data_dir,
            dataset=dataset,
            limit_per_class=settings.test_limit,
            progress=progress,
        )
        n_classes = len(coreset.classes)
        original = accuracy_cells(
            run,
            "original",
            coreset.features,
            coreset.labels,
            test.x,
            test.y,
            n_classes,
            settings.train_seeds,
            settings.max_samples,
            progress,
        )
        rerendered = accuracy_cells(
            run,
            "rendered",
            rendered.reextracted,
            coreset.labels,
            test.x,
            test.y,
            n_classes,
            settings.train_seeds,
            settings.max_samples,
            progress,
        )
        run.add_table(
            f"ConvNet test accuracy (%, mean ± std over {len(settings.train_seeds)} seed(s), "
            f"{test.info['n_test']} test clips)",
            ["training data", "accuracy", "per seed"],
            [
                [
                    "distilled features (the coreset)",
                    pct(original),
                    ", ".join(f"{100 * a:.1f}" for a in original["accuracies"]),
                ],
                [
                    "features re-extracted from the rendered audio",
                    pct(rerendered),
                    ", ".join(f"{100 * a:.1f}" for a in rerendered["accuracies"]),
                ],
            ],
        )
        run.headline.update(
            accuracy_original=round(original["mean"], 4),
            accuracy_rendered=round(rerendered["mean"], 4),
            n_test=test.info["n_test"],
        )

    figure = run.path / "feature_maps.png"
    shown = plot_feature_pairs(figure, coreset, rendered, settings.examples)
    run.add_figure(
        figure.relative_to(run.path),
        f"Distilled vs re-extracted {channel_names(coreset.feature_config)[0]} maps and the rendered waveforms "
        f"(samples {', '.join(map(str, shown))})",
    )
    for i, path in enumerate(rendered.paths[: settings.audio_entries]):
        run.add_audio(
            path.relative_to(run.path), f"#{i} '{rendered.labels[i]}' ({settings.n_iter} Griffin-Lim iterations)"
        )
    run.summary = (
        f"Rendered {len(rendered.paths)} {coreset.method} samples to "
        f"{coreset.feature_config.sample_rate} Hz audio with "
        f"{settings.n_iter} Griffin-Lim iterations; re-extracted {channel_names(coreset.feature_config)[0]} correlates "
        f"{metrics['correlation'][0]:.3f} with the distilled maps (white noise: {floor['correlation'][0]:.3f})."
        + (
            f" ConvNet accuracy {100 * run.headline['accuracy_original']:.1f} % on the coreset, "
            f"{100 * run.headline['accuracy_rendered']:.1f} % on the rendered audio."
            if settings.evaluate
            else ""
        )
    )
    run.save()
    return run
