"""The run folder every evaluation experiment writes, and that ``kit report`` reads.

Why one contract: the seed papers' comparisons (cross-architecture, active learning, feature
ablation, noise, Griffin-Lim audio, continual learning, NAS proxy) are separate commands, but a
user wants to look at them on one page. If each experiment wrote its own ad-hoc files the report
would need to know every one of them; instead each writes

* ``config.json``: the experiment name, its seed, the command line and its full configuration;
* ``results.json``: ``{"experiment", "title", "summary", "headline", "tables", "figures", "audio"}``
  where a table is ``{"title", "columns", "rows"}``, a figure ``{"file", "caption"}`` (a PNG in
  the folder) and an audio entry ``{"file", "caption"}`` (a WAV in the folder);
* ``cells.json``: finished units of work (one trained model, one acquisition round...), so an
  interrupted experiment resumes where it stopped instead of starting over.

Every file is written atomically (rename into place): a report run beside a still-running
experiment sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from deploy.runtime.artifact import atomic_write_text
from deploy.runtime.errors import KitError
from deploy.runtime.safeio import check_output_dir
from kit.pipeline import jsonable as to_jsonable
from kit.report.tables import check_width

RESULTS_FORMAT = 1


def _write_json(path: Path, payload: Any) -> None:
    atomic_write_text(path, json.dumps(to_jsonable(payload), indent=1, sort_keys=False) + "\n")


RUN_FILES = ("config.json", "cells.json", "results.json")


def check_run_dir(path: str | os.PathLike, option: str = "--out") -> Path:
    """Refuse, before an experiment starts, a run folder its files could not be written in (see ``safeio``)."""
    return check_output_dir(path, option, RUN_FILES)


class RunDir:
    """One experiment's output folder: config, resumable cells, tables, figures, audio.

    ``experiment`` names the command (``"cross_arch"``, ``"active_learning"``...); ``config`` is
    everything that determines the result (seed included). Re-opening a folder whose recorded
    config differs refuses to mix the two runs (``KitError``) unless ``overwrite`` is set, which
    discards the old cells.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        experiment: str,
        config: dict[str, Any],
        *,
        title: str | None = None,
        overwrite: bool = False,
    ) -> None:
        self.path = Path(path)
        self.experiment = str(experiment)
        self.config = to_jsonable(dict(config))
        self.title = title or experiment.replace("_", " ")
        check_run_dir(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        config_file = self.path / "config.json"
        self.cells: dict[str, Any] = {}
        if config_file.exists() and not overwrite:
            try:
                old = json.loads(config_file.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise KitError(
                    f"{config_file}: unreadable run config ({exc}); use a new folder or --overwrite"
                ) from None
            if old.get("experiment") != self.experiment or old.get("config") != self.config:
                raise KitError(
                    f"{self.path}: holds a different run ({old.get('experiment')}, other settings); "
                    "use a new folder or --overwrite"
                )
            cells_file = self.path / "cells.json"
            if cells_file.exists():
                try:
                    self.cells = json.loads(cells_file.read_text())
                except (OSError, json.JSONDecodeError):
                    self.cells = {}
        _write_json(
            config_file,
            {
                "experiment": self.experiment,
                "config": self.config,
                "command": " ".join(shlex.quote(a) for a in sys.argv),
                "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
        )
        self.tables: list[dict[str, Any]] = []
        self.figures: list[dict[str, str]] = []
        self.audio: list[dict[str, str]] = []
        self.headline: dict[str, Any] = {}
        self.summary = ""

    # resumable units of work --------------------------------------------------------------------------
    def has(self, key: str) -> bool:
        return key in self.cells

    def get(self, key: str) -> Any:
        return self.cells[key]

    def record(self, key: str, value: Any) -> Any:
        """Store one finished unit of work (written at once, so a crash loses at most the current one)."""
        self.cells[key] = to_jsonable(value)
        _write_json(self.path / "cells.json", self.cells)
        return self.cells[key]

    # results ------------------------------------------------------------------------------------------
    def add_table(self, title: str, columns: list[str], rows: list[list[Any]]) -> None:
        check_width(columns, rows, title)
        self.tables.append({"title": title, "columns": list(columns), "rows": to_jsonable(rows)})

    def _member(self, file: str | os.PathLike) -> str:
        path = Path(file)
        # a relative path may be relative to the run folder ("fig.png") or to the working
        # directory ("runs/x/fig.png"): take whichever exists, so neither doubles the folder
        candidates = [path] if path.is_absolute() else [self.path / path, path]
        full = next((c for c in candidates if c.exists()), candidates[0])
        try:
            relative = full.resolve().relative_to(self.path.resolve())
        except ValueError:
            raise ValueError(f"{file} is not inside the run folder {self.path}") from None
        if not full.exists():
            raise FileNotFoundError(f"{full} does not exist")
        return relative.as_posix()

    def add_figure(self, file: str | os.PathLike, caption: str) -> None:
        self.figures.append({"file": self._member(file), "caption": caption})

    def add_audio(self, file: str | os.PathLike, caption: str) -> None:
        self.audio.append({"file": self._member(file), "caption": caption})

    def save(self) -> Path:
        """Write ``results.json`` (atomically) and return its path."""
        path = self.path / "results.json"
        _write_json(
            path,
            {
                "format": RESULTS_FORMAT,
                "experiment": self.experiment,
                "title": self.title,
                "summary": self.summary,
                "headline": self.headline,
                "tables": self.tables,
                "figures": self.figures,
                "audio": self.audio,
                "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
        )
        return path


def load_results(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Read and check a run folder's ``results.json`` (what ``kit report`` renders)."""
    path = Path(run_dir) / "results.json"
    if not path.exists():
        raise KitError(f"{run_dir}: no results.json (not an experiment run folder, or the run has not finished)")
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise KitError(f"{path}: unreadable results ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != RESULTS_FORMAT:
        raise KitError(
            f"{path}: results format {data.get('format') if isinstance(data, dict) else '?'} is not {RESULTS_FORMAT}"
        )
    for key in ("tables", "figures", "audio"):
        if not isinstance(data.get(key, []), list):
            raise KitError(f"{path}: '{key}' must be a list")
    return data
