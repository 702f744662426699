"""Rebuild each ``bench/results/*.md`` from its JSON: ``python -m bench.remarkdown [--write] [STEM ...]``.

Why: a benchmark's Markdown is a view of its JSON, and the two must not drift apart. Re-running a
benchmark to change a table's wording takes hours; this calls each module's ``markdown()`` on the
stored JSON instead. Without ``--write`` it only compares and prints a unified diff for every file
whose Markdown would change (exit status 1), so a refactoring of the table code can be checked
against every committed result in seconds.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from bench import continual, nas_proxy, reliability
from bench.paths import RESULTS_DIR
from deploy.runtime.artifact import atomic_write_text


def _active_learning(payload: dict[str, Any], stem: str) -> str:
    from bench.active_learning import markdown  # lazy: pulls in torch, soundfile

    meta = {k: v for k, v in payload.items() if k not in ("results", "distill_rows")}
    return markdown(payload["results"], payload["distill_rows"], meta)


def _exported_run(payload: dict[str, Any], stem: str) -> str:
    """``bench.continual.export_run`` output (continual, feature ablation)."""
    results = payload["results"]
    run = SimpleNamespace(
        title=results["title"], summary=results["summary"], tables=results["tables"], figures=results["figures"]
    )
    return continual.markdown(run, payload["machine"], payload["command"], f"{stem}.png")


def _cross_arch(payload: dict[str, Any], stem: str) -> str:
    from bench.cross_arch import markdown  # lazy: pulls in torch, soundfile

    return markdown(payload, payload["title"], payload["machine"], payload["config"])


def _distill(payload: dict[str, Any], stem: str) -> str:
    from bench.distill import markdown  # lazy: pulls in torch, soundfile

    return markdown(payload["cells"], payload["machine"])


def _nas_proxy(payload: dict[str, Any], stem: str) -> str:
    return nas_proxy.markdown(payload, payload["settings"], payload["machine"], payload["load_average_at_start"])


def _render(payload: dict[str, Any], stem: str) -> str:
    """``bench.render.write_results`` output (render, noise robustness)."""
    from bench.render import markdown  # lazy: pulls in torch, soundfile

    meta = {k: v for k, v in payload.items() if k not in ("results", "config")}
    return markdown(payload["results"], f"{stem}.png" if payload["results"]["figures"] else None, meta)


def _whole(module: str, *args: str) -> Callable[[dict[str, Any], str], str]:
    """A module whose ``markdown(result, ...)`` takes the stored JSON as it is."""

    def render(payload: dict[str, Any], stem: str) -> str:
        return importlib.import_module(f"bench.{module}").markdown(payload, *[a.format(stem=stem) for a in args])

    return render


def _reliability(payload: dict[str, Any], stem: str) -> str:
    return reliability.render(payload) + "\n"


def _data_ladder(payload: dict[str, Any], stem: str) -> str:
    from bench.data_ladder import markdown  # lazy: pulls in torch

    return markdown(payload) + "\n"


#: results-file stem prefix -> how to call its module's markdown()
RENDERERS: dict[str, Callable[[dict[str, Any], str], str]] = {
    "active_learning": _active_learning,
    "continual": _exported_run,
    "feature_ablation": _exported_run,
    "cross_arch": _cross_arch,
    "distill": _distill,
    "nas_proxy": _nas_proxy,
    "render": _render,
    "noise_robustness": _render,
    "finetune": _whole("finetune"),
    "latency": _whole("latency"),
    "quantization": _whole("quantization"),
    "quantization_model": _whole("quantization_model"),
    "streaming": _whole("streaming", "{stem}.png"),
    "reliability": _reliability,
    "firmware": _whole("firmware", "{stem}.png"),
    "data_ladder": _data_ladder,
}


def renderer(stem: str) -> Callable[[dict[str, Any], str], str] | None:
    """The renderer of a results stem (``distill-quick`` -> distill, ``cross_arch_kws10`` -> cross_arch)."""
    for prefix in sorted(RENDERERS, key=len, reverse=True):
        if stem == prefix or stem.startswith((f"{prefix}_", f"{prefix}-")):
            return RENDERERS[prefix]
    return None


def regenerate(json_path: Path) -> str:
    """The Markdown that the module of ``json_path`` writes for it today."""
    render = renderer(json_path.stem)
    if render is None:
        raise KeyError(f"{json_path.name}: no benchmark writes Markdown for it")
    return render(json.loads(json_path.read_text()), json_path.stem)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.remarkdown", description=__doc__.split("\n\n")[0])
    parser.add_argument("stems", nargs="*", help="results stems (default: every JSON with a .md beside it)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--write", action="store_true", help="rewrite the .md files instead of comparing")
    args = parser.parse_args(argv)
    paths = (
        [args.results_dir / f"{s}.json" for s in args.stems]
        if args.stems
        else sorted(p for p in args.results_dir.glob("*.json") if p.with_suffix(".md").exists())
    )
    changed = 0
    for path in paths:
        try:
            text = regenerate(path)
        except (KeyError, TypeError, OSError, ValueError) as exc:
            print(f"{path.name}: cannot regenerate ({type(exc).__name__}: {exc})")
            changed += 1
            continue
        md = path.with_suffix(".md")
        old = md.read_text() if md.exists() else ""
        if text == old:
            print(f"{md.name}: unchanged")
        elif args.write:
            atomic_write_text(md, text)
            print(f"{md.name}: rewritten")
        else:
            changed += 1
            sys.stdout.writelines(
                difflib.unified_diff(old.splitlines(True), text.splitlines(True), str(md), f"{md} (regenerated)")
            )
    return 1 if changed and not args.write else 0


if __name__ == "__main__":
    sys.exit(main())
