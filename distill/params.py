"""Declared hyper-parameters: type, range or choices, default and help, checked in one place.

Why declarations (scikit-learn's ``_parameter_constraints``): every distiller used to check its own
parameters with hand-written ``if`` chains, each a little different, and the CLI kept a separate
hand-written table of which option applies to which method and how to parse it. A ``Param`` says
once what a parameter accepts; from it ``Distiller.validate_params`` refuses bad values with the
same one-line ``KitError`` whatever the method, ``parse`` turns a ``-p KEY=VALUE`` string into the
declared type, and ``describe`` writes the row of the ``kit distill --help`` table.

The default is not declared here: it is read from the constructor's signature
(``Distiller.param_specs``), so there is exactly one place that says what a parameter defaults to.
"""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

from deploy.runtime.errors import KitError

#: the kinds a parameter can have; ``json`` is a JSON object (dict), ``any`` is checked by the method
KINDS = ("int", "float", "bool", "str", "json", "any")
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")
#: placeholder until ``Distiller.param_specs`` fills in the constructor's default
NO_DEFAULT: Any = object()


@dataclass(frozen=True)
class Param:
    """What one hyper-parameter accepts.

    ``low``/``high`` bound numbers (``*_open`` excludes the bound itself), ``choices`` lists the
    accepted strings, ``none`` says what ``None`` means when ``None`` is accepted (``None`` is
    refused when it is not given). ``default`` is filled from the constructor's signature.
    """

    kind: str
    help: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] = ()
    none: str | None = None
    default: Any = NO_DEFAULT

    def __post_init__(self) -> None:
        assert self.kind in KINDS, f"unknown parameter kind {self.kind!r}"
        assert "\n" not in self.help, "a parameter's help is one line"

    # Describing ---------------------------------------------------------------------------------
    def accepts(self) -> str:
        """What a valid value is, as the error messages say it: 'a positive integer', ..."""
        if self.kind == "bool":
            return "true or false"
        if self.kind == "json":
            return "a JSON object"
        if self.kind in ("str", "any"):
            return "a string" if self.kind == "str" else "a value"
        noun = "integer" if self.kind == "int" else "number"
        article = "an" if noun == "integer" else "a"
        low, high = self.low, self.high
        if high is None and low == 0 and not self.low_open:
            return f"a non-negative {noun}"
        if high is None and low is not None and not self.low_open and self.kind == "int" and low == 1:
            return f"a positive {noun}"
        if high is None and low == 0 and self.low_open:
            return f"a positive {noun}"
        if high is None and low is not None:
            return f"{article} {noun} {'>' if self.low_open else '>='} {_num(low)}"
        if low is None and high is not None:
            return f"{article} {noun} {'<' if self.high_open else '<='} {_num(high)}"
        if low is not None and high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"{article} {noun} in {left}{_num(low)}, {_num(high)}{right}"
        return f"{article} {noun}"

    def describe(self) -> str:
        """The type column of the help table: 'int >= 1', 'float in [0, 1)', 'platt|mse', 'bool'."""
        if self.choices:
            text = "|".join(self.choices)
        elif self.kind in ("int", "float"):
            text = self.kind
            if self.low is not None and self.high is not None:
                left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
                text += f" in {left}{_num(self.low)}, {_num(self.high)}{right}"
            elif self.low is not None:
                text += f" {'>' if self.low_open else '>='} {_num(self.low)}"
            elif self.high is not None:
                text += f" {'<' if self.high_open else '<='} {_num(self.high)}"
        else:
            text = {"json": "JSON object", "any": "value"}.get(self.kind, self.kind)
        return text + (" or none" if self.none is not None else "")

    def default_text(self) -> str:
        """The default as a user would type it after ``-p KEY=`` (``none (meaning)`` for None)."""
        if self.default is None:
            return f"none ({self.none})" if self.none else "none"
        return format_value(self.default)

    # Checking -----------------------------------------------------------------------------------
    def check(self, owner: str, name: str, value: Any) -> None:
        """One-line ``KitError`` naming ``owner`` and ``name`` unless ``value`` is acceptable."""
        if value is None:
            if self.none is None:
                raise KitError(f"{owner}: {name} must be {self.accepts()}, got none")
            return
        if self.kind == "any":
            return
        if self.kind == "bool":
            if not isinstance(value, (bool, np.bool_)):
                raise KitError(f"{owner}: {name} must be true or false, got {value!r}")
            return
        if self.kind == "json":
            if not isinstance(value, dict):
                raise KitError(f"{owner}: {name} must be a JSON object (dict), got {value!r}")
            return
        if self.kind == "str":
            if not isinstance(value, str):
                raise KitError(f"{owner}: {name} must be a string, got {value!r}")
            if self.choices and value not in self.choices:
                raise KitError(f"{owner}: unknown {name} '{value}' (choose from {', '.join(self.choices)})")
            return
        if not _is_number(value, integer=self.kind == "int") or not self._in_range(float(value)):
            raise KitError(f"{owner}: {name} must be {self.accepts()}, got {value!r}")

    def _in_range(self, v: float) -> bool:
        if self.low is not None and (v < self.low or (self.low_open and v == self.low)):
            return False
        return not (self.high is not None and (v > self.high or (self.high_open and v == self.high)))

    # Parsing ------------------------------------------------------------------------------------
    def parse(self, owner: str, name: str, text: str) -> Any:
        """A ``-p name=text`` string -> the declared type, checked; one-line ``KitError`` otherwise."""
        value = self._convert(text.strip())
        if value is _BAD:
            raise KitError(f"{owner}: {name} must be {self.accepts()}, got '{text}'")
        self.check(owner, name, value)
        return value

    def _convert(self, text: str) -> Any:
        if text.lower() in ("none", "null") and (self.none is not None or self.kind == "any"):
            return None
        if self.kind == "str":
            return text
        if self.kind == "bool":
            low = text.lower()
            return True if low in _TRUE else False if low in _FALSE else _BAD
        if self.kind in ("json", "any"):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                return text if self.kind == "any" else _BAD
            return value if self.kind == "any" or isinstance(value, dict) else _BAD
        try:
            number = int(text) if self.kind == "int" and _looks_int(text) else float(text)
        except (ValueError, OverflowError):
            return _BAD
        if isinstance(number, float):
            if not math.isfinite(number):
                return _BAD
            if self.kind == "int":
                return int(number) if number.is_integer() else _BAD
        return number


_BAD: Any = object()


def _looks_int(text: str) -> bool:
    return text.lstrip("+-").isdigit()


def _is_number(value: Any, integer: bool) -> bool:
    """A finite real (an integral one when ``integer``); bools are not numbers here."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        return False
    try:
        as_float = float(value)
    except OverflowError:  # an int too large for a float is still an integer, but out of any range we declare
        return False
    if not math.isfinite(as_float):
        return False
    return not integer or isinstance(value, numbers.Integral) or as_float.is_integer()


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


def format_value(value: Any) -> str:
    """A parameter value as ``-p KEY=VALUE`` text that ``Param.parse`` reads back to ``value``."""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, float):
        return repr(value)
    return str(value)


# Shorthands for the declarations, so a class's table reads like its constructor --------------------
def positive_int(help: str, none: str | None = None) -> Param:
    return Param("int", help, low=1, none=none)


def non_negative_int(help: str, none: str | None = None) -> Param:
    return Param("int", help, low=0, none=none)


def positive_float(help: str, none: str | None = None) -> Param:
    return Param("float", help, low=0, low_open=True, none=none)


def fraction(help: str) -> Param:
    """A number in [0, 1) (a momentum, a held-out share)."""
    return Param("float", help, low=0, high=1, high_open=True)


def flag(help: str) -> Param:
    return Param("bool", help)


def choice(help: str, choices: tuple[str, ...]) -> Param:
    return Param("str", help, choices=tuple(choices))
