"""The ``kit`` command line: one typer app; each command group lives in ``kit/commands``.

Errors the user can fix (``KitError``) print as one line and exit with status 2; anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.markup import escape

from . import __version__
from .commands import (
    ablate,
    al,
    bundle,
    cl,
    classify,
    data,
    demo,
    deploy,
    distill,
    export,
    finetune,
    firmware,
    inspect,
    live,
    models,
    nas,
    noise,
    render,
    report,
    train,
    xarch,
)
from .errors import KitError

app = typer.Typer(
    name="kit",
    help="Audio dataset distillation and on-device keyword spotting.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _show_version(value: bool) -> None:
    if value:
        print(f"kit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_show_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Audio dataset distillation and on-device keyword spotting."""


# Each module defines ``register(app)``; the order here is the order in --help. Command modules import their
# torch-side libraries inside the command, so ``kit --help`` and the numpy-only commands start in a fraction of
# a second.
COMMAND_MODULES = (
    demo,
    data,
    distill,
    train,
    models,
    inspect,
    export,
    bundle,
    classify,
    live,
    finetune,
    deploy,
    firmware,
    xarch,
    al,
    ablate,
    render,
    noise,
    cl,
    nas,
    report,
)
for _module in COMMAND_MODULES:
    _module.register(app)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``kit`` console script."""
    err = Console(stderr=True)
    try:
        app(args=argv, standalone_mode=True)
    except KitError as exc:
        # one line, printable whatever the message holds (a non-UTF-8 file name arrives as surrogates)
        text = " ".join(str(exc).split()).encode("utf-8", "backslashreplace").decode("utf-8")
        err.print(f"[bold red]error:[/] {escape(text)}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
