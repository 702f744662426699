"""``kit models``: every architecture of the zoo with its parameters, MACs and fp32 size.

Why: choosing a network for a device is a trade-off of memory (parameters; the int8 weights are
about a quarter of the fp32 size) against compute (MACs per clip, i.e. per 1-s window at the
default input shape), and both depend on the input features: 40 log-mel bands cost about 3x the
MACs of 13 MFCCs. The figures come from building each network and one profiled forward pass
(``kit.models.profile``), so they are exact for the shape given.
"""
from __future__ import annotations

import json
import re

import typer
from rich.console import Console
from rich.table import Table

from deploy.runtime.errors import KitError


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
    input_shape: str = typer.Option("3,13,64", "--input-shape", help="Feature map C,F,T (3,13,64 = FD-MFCC of a 1-s clip)."),
    classes: int = typer.Option(12, "--classes", help="Number of output classes."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the model zoo: parameters, MACs per clip and fp32 size of every architecture variant."""
    shape = parse_shape(input_shape)
    if classes < 2:
        raise KitError(f"--classes must be >= 2, got {classes}")
    from kit.models.zoo import profile_variant, zoo_variants

    rows = [profile_variant(v, shape, classes) for v in zoo_variants()]
    if as_json:
        print(json.dumps({"input_shape": list(shape), "classes": classes, "models": rows}, indent=1))
        return
    table = Table(title=f"model zoo, input {shape[0]}x{shape[1]}x{shape[2]}, {classes} classes")
    for column, justify in (("arch", "left"), ("variant", "left"), ("parameters", "right"), ("MACs / clip", "right"),
                            ("fp32 size", "right"), ("note", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        table.add_row(row["arch"], row["variant"], f"{row['parameters']:,}", _human(row["macs"]),
                      _human(row["fp32_bytes"], "B"), row["note"])
    Console(width=max(100, Console().width)).print(table)


def register(app: typer.Typer) -> None:
    app.command("models")(models_command)
