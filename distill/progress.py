"""A rich progress bar for distillation runs: steps done, loss, validation score, elapsed time.

Why its own module: every distiller shows the same bar, and tests / logs / non-main ranks turn it
off, in which case it does nothing at all.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class DistillProgress:
    """Context manager; ``update(step, entry)`` reads ``loss`` and optional ``val_acc`` from the entry."""

    def __init__(self, label: str, enabled: bool, total: int | None, start: int) -> None:
        self.label, self.enabled, self.total, self.start = label, enabled, total, start
        self._progress = None

    def __enter__(self) -> "DistillProgress":
        if self.enabled:
            self._progress = Progress(
                TextColumn(self.label),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"),
                TextColumn("val {task.fields[val]}"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task(self.label, total=self.total, completed=self.start, loss="-", val="-")
        return self

    def update(self, step: int, entry: dict[str, Any]) -> None:
        if self._progress is None:
            return
        fields = {}
        if entry.get("loss") is not None:
            fields["loss"] = f"{entry['loss']:.4f}"
        if entry.get("val_acc") is not None:
            fields["val"] = f"{100 * entry['val_acc']:.1f}%"
        self._progress.update(self._task, completed=step, **fields)

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
