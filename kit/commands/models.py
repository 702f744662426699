"""``kit models``: every architecture of the zoo with its parameters, MACs and fp32 size.

Why: choosing a network for a device is a trade-off of memory (parameters; the int8 weights are
about a quarter of the fp32 size) against compute (MACs per clip, i.e. per 1-s window at the
default input shape), and both depend on the input features: 40 log-mel bands cost about 3x the
MACs of 13 MFCCs. The figures come from building each network and one profiled forward pass
(``kit.models.profile``), so they are exact for the shape given.

The microcontroller columns are measured too (``deploy.mcu_budget``): each variant is exported to
int8 TFLite with random weights and its TensorFlow Lite Micro arena is read back; results are
cached under the user cache (the first listing takes a minute or two). "MCU ops" says whether the
int8 graph uses only ops CMSIS-NN accelerates (the ``*-mcu`` architectures do).
"""

from __future__ import annotations

import json
import re

import typer
from rich.console import Console
from rich.table import Table

from deploy.mcu_budget import BudgetCache
from deploy.runtime.errors import KitError
from firmware_sim.reference import have_tflm


def parse_shape(text: str) -> tuple[int, int, int]:
    """``"3,13,64"`` -> (3, 13, 64): channels, coefficients, frames (all >= 1)."""
    parts = [p.strip() for p in text.replace("x", ",").split(",") if p.strip()]
    if len(parts) != 3 or not all(re.fullmatch(r"\d+", p) for p in parts) or min(int(p) for p in parts) < 1:
        raise KitError(f"--input-shape: expected three positive integers C,F,T like 3,13,64, got '{text}'")
    return tuple(int(p) for p in parts)  # type: ignore[return-value]


def _human(value: float, unit: str = "") -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.2f} {suffix}{unit}".rstrip()
    return f"{value:.0f} {unit}".rstrip()


def models_command(
    input_shape: str = typer.Option(
        "3,13,64", "--input-shape", help="Feature map C,F,T (3,13,64 = FD-MFCC of a 1-s clip)."
    ),
    classes: int = typer.Option(12, "--classes", help="Number of output classes."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    only: list[str] = typer.Option([], "--arch", help="Only these architectures (repeat the option)."),
    mcu: bool = typer.Option(True, "--mcu/--no-mcu", help="Measure int8 flash and TFLM arena (cached; slow once)."),
) -> None:
    """List the model zoo: parameters, MACs per clip and fp32 size of every architecture variant."""
    shape = parse_shape(input_shape)
    if classes < 2:
        raise KitError(f"--classes must be >= 2, got {classes}")
    from kit.models.zoo import profile_variant, zoo_variants  # lazy: pulls in torch

    variants = zoo_variants()
    if only:
        unknown = sorted(set(only) - {v.arch for v in variants})
        if unknown:
            raise KitError(
                f"--arch: unknown architecture {', '.join(unknown)} (choose from "
                f"{', '.join(sorted({v.arch for v in variants}))})"
            )
        variants = [v for v in variants if v.arch in only]
    rows = [profile_variant(v, shape, classes) for v in variants]
    notes: list[str] = []
    if mcu:
        notes = _add_mcu_columns(rows, variants, shape, classes)
    if as_json:
        print(json.dumps({"input_shape": list(shape), "classes": classes, "models": rows, "notes": notes}, indent=1))
        return
    table = Table(title=f"model zoo, input {shape[0]}x{shape[1]}x{shape[2]}, {classes} classes")
    for column, justify in (
        (
            ("arch", "left"),
            ("variant", "left"),
            ("parameters", "right"),
            ("MACs / clip", "right"),
            ("fp32 size", "right"),
        )
        + ((("int8 flash", "right"), ("TFLM arena", "right"), ("MCU ops", "left")) if mcu else ())
        + (("note", "left"),)
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        mcu_cells = (
            (
                _kib(row.get("int8_flash_bytes")),
                _kib(row.get("arena_bytes")),
                {True: "yes", False: "no"}.get(row.get("mcu_ops_only"), "-"),
            )
            if mcu
            else ()
        )
        table.add_row(
            row["arch"],
            row["variant"],
            f"{row['parameters']:,}",
            _human(row["macs"]),
            _human(row["fp32_bytes"], "B"),
            *mcu_cells,
            row["note"],
        )
    console = Console(width=max(140 if mcu else 100, Console().width))
    console.print(table)
    for note in notes:
        console.print(f"note: {note}")


def _kib(value: int | None) -> str:
    return "-" if value is None else f"{value / 1024:.1f} KiB"


def _add_mcu_columns(rows: list[dict], variants: list, shape: tuple[int, int, int], classes: int) -> list[str]:
    """Add int8 flash / TFLM arena / op-set columns to ``rows``; return notes for the reader."""
    from kit.data.paths import user_cache_root  # lazy: pulls in soundfile
    from kit.models import build_model  # lazy: pulls in torch

    cache = BudgetCache(user_cache_root() / "mcu_budget.json")
    notes = [] if have_tflm() else ["tflite-micro is not installed (pip install tflite-micro): no TFLM arena"]
    for row, variant in zip(rows, variants):
        budget = cache.get(build_model(variant.arch, shape, classes, **variant.kwargs))
        row.update({k: budget.get(k) for k in ("int8_flash_bytes", "arena_bytes", "mcu_ops_only", "ops")})
        if budget.get("note") and budget["note"] not in notes and "tflite-micro is not installed" not in budget["note"]:
            row["note"] = f"{row['note']}; {budget['note']}" if row["note"] else budget["note"]
    return notes


def register(app: typer.Typer) -> None:
    app.command("models")(models_command)
