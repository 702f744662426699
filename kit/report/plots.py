"""The report's generic plots: confusion matrix, a coreset's feature channels, accuracy vs samples per class.

Why functions returning matplotlib figures (plus two savers): experiments save PNGs into their
run folders (``save_figure``, atomic), while the report embeds PNG bytes straight into the page
(``figure_png``); both draw with the same code. Everything uses the Agg backend, so it works on a
headless machine.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from deploy.runtime.artifact import atomic_write_bytes  # noqa: E402

#: channel names of the multi-channel front-ends (FD-MFCC = MFCC, delta, delta-delta)
CHANNEL_NAMES = {"fd_mfcc": ("MFCC", "delta", "delta-delta")}


def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    """The figure as PNG bytes; the figure is closed (reports draw many, pyplot keeps them alive)."""
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    return buffer.getvalue()


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Write the figure as a PNG atomically (a report reading the folder never sees half a file)."""
    path = Path(path)
    atomic_write_bytes(path, figure_png(fig, dpi=dpi))
    return path


def confusion_figure(confusion: np.ndarray, classes: Sequence[str], title: str = "") -> Figure:
    """Row-normalised confusion matrix (rows = true class) with the raw counts written in each cell."""
    counts = np.asarray(confusion, dtype=np.int64)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = 2.5 + 0.42 * len(classes)
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    image = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    ticks = np.arange(len(classes))
    ax.set_xticks(ticks, [str(c) for c in classes], rotation=45, ha="right", fontsize=8)
    ax.set_yticks(ticks, [str(c) for c in classes], fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if len(classes) <= 20:
        for (i, j), n in np.ndenumerate(counts):
            if n:
                ax.text(
                    j, i, str(n), ha="center", va="center", fontsize=7, color="white" if rates[i, j] > 0.5 else "black"
                )
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def coreset_channels_figure(
    features: np.ndarray, labels: np.ndarray, classes: Sequence[str], feature_kind: str = "", per_class: int = 2
) -> Figure:
    """Image grid: one row per class, ``per_class`` samples, each sample's channels side by side.

    Features are shown in the model's input space (normalised per channel and coefficient),
    with one colour scale per channel so MFCC and its deltas are each readable.
    """
    features = np.asarray(features, dtype=np.float32)
    hard = labels.argmax(axis=1) if labels.ndim == 2 else labels.astype(np.int64)
    n_channels = features.shape[1]
    names = CHANNEL_NAMES.get(feature_kind, tuple(f"channel {c}" for c in range(n_channels)))
    per_class = max(1, min(per_class, int(np.bincount(hard, minlength=len(classes)).max(initial=1))))
    cols = per_class * n_channels
    limits = [float(np.percentile(np.abs(features[:, c]), 99)) or 1.0 for c in range(n_channels)]
    fig, axes = plt.subplots(len(classes), cols, figsize=(1.6 * cols + 0.8, 0.9 * len(classes) + 0.8), squeeze=False)
    for row, name in enumerate(classes):
        members = np.flatnonzero(hard == row)[:per_class]
        for s in range(per_class):
            for c in range(n_channels):
                ax = axes[row, s * n_channels + c]
                ax.set_xticks([])
                ax.set_yticks([])
                if s < len(members):
                    ax.imshow(
                        features[members[s], c],
                        origin="lower",
                        aspect="auto",
                        cmap="magma",
                        vmin=-limits[c],
                        vmax=limits[c],
                    )
                else:
                    ax.axis("off")
                if row == 0:
                    ax.set_title(f"#{s + 1} {names[c] if c < len(names) else c}", fontsize=7)
                if s == 0 and c == 0:
                    ax.set_ylabel(str(name), fontsize=8, rotation=0, ha="right", va="center")
    fig.tight_layout(pad=0.3)
    return fig


def accuracy_vs_ipc_figure(cells: Sequence[dict[str, Any]]) -> Figure:
    """Accuracy (%) vs samples per class: one panel per dataset, one line per method, full data dashed.

    ``cells`` are distillation-benchmark cells: ``dataset, method, ipc (None = full data),
    accuracy_mean, accuracy_std`` (percent).
    """
    datasets = list(dict.fromkeys(c["dataset"] for c in cells))
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.2 * len(datasets), 4.0), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        mine = [c for c in cells if c["dataset"] == dataset]
        for method in dict.fromkeys(c["method"] for c in mine if c["ipc"] is not None):
            row = sorted((c for c in mine if c["method"] == method and c["ipc"] is not None), key=lambda c: c["ipc"])
            ax.errorbar(
                [c["ipc"] for c in row],
                [c["accuracy_mean"] for c in row],
                yerr=[c.get("accuracy_std") or 0.0 for c in row],
                marker="o",
                capsize=3,
                label=method,
            )
        for c in (c for c in mine if c["ipc"] is None):
            ax.axhline(c["accuracy_mean"], color="k", ls="--", lw=1, label=f"{c['method']} data")
        ticks = sorted({c["ipc"] for c in mine if c["ipc"] is not None})
        if ticks:
            ax.set_xscale("log")
            ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.set_xlabel("samples per class")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(str(dataset))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
