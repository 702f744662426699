"""The detector options of ``kit live`` and ``kit bundle``, generated from the runtime's declaration.

Why generated: the device's ``listen`` (argparse) and these typer commands offer the same
options; ``deploy.runtime.recognizer.DETECTOR_OPTIONS`` declares each one once (flag, type, help,
bounds), and this decorator turns that table into typer options, so a new or changed setting
cannot drift between the kit and the device.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, Optional, TypeVar

import typer

from deploy.runtime.recognizer import DETECTOR_OPTIONS

F = TypeVar("F", bound=Callable[..., Any])


def with_detector_options(default_note: str) -> Callable[[F], F]:
    """Add one typer option per ``DETECTOR_OPTIONS`` entry to a command taking ``detector: dict``.

    The command receives ``detector`` = {field: value or None}; ``default_note`` ends each help
    text, e.g. "default: the bundle's" or "default {default}" (formatted with the field default).
    """

    def decorate(func: F) -> F:
        signature = inspect.signature(func, eval_str=True)
        if "detector" not in signature.parameters:
            raise TypeError(f"{func.__name__} must take a 'detector' parameter to receive the detector options")
        kept = [p for p in signature.parameters.values() if p.name != "detector"]
        added = [
            inspect.Parameter(
                option.field,
                inspect.Parameter.KEYWORD_ONLY,
                annotation=Optional[option.type],  # noqa: UP045
                default=typer.Option(
                    None,
                    option.flag,
                    show_default=False,
                    help=f"{option.help[0].upper()}{option.help[1:]} ({option.bounds}; "
                    f"{default_note.format(default=option.default)}).",
                ),
            )
            for option in DETECTOR_OPTIONS
        ]

        @functools.wraps(func)
        def command(**kwargs: Any) -> Any:
            detector = {option.field: kwargs.pop(option.field, None) for option in DETECTOR_OPTIONS}
            return func(**kwargs, detector=detector)

        command.__signature__ = signature.replace(parameters=[*kept, *added])  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in (*kept, *added)}
        return command  # type: ignore[return-value]

    return decorate
