"""``python -m <runtime> COMMAND ...``: the device-side command line (numpy + an inference runtime).

Why not the ``kit`` CLI: a Raspberry Pi or phone gets only this folder, numpy and onnxruntime or
ai-edge-litert; typer, torch and the rest of the kit are not there. Each sub-command lives in its
own module exposing ``main(argv) -> int``; this file only dispatches and turns ``KitError`` into
one line on stderr with exit status 2, like ``kit`` does.
"""

from __future__ import annotations

import importlib
import os
import sys

from .artifact import KEY_ENV, read_key
from .errors import KitError

#: sub-command -> module (relative to this package) that defines ``main(argv) -> int``
SUBCOMMANDS = {
    "listen": "live",
    "classify": "classify_cli",
    "finetune": "finetune",
    "info": "bundle",
}


def _usage() -> str:
    return "usage: python -m runtime {" + ",".join(SUBCOMMANDS) + "} [options]  (COMMAND --help for its options)"


def _take_key(argv: list[str]) -> list[str]:
    """``--key KEYFILE`` (anywhere): verify (and, when fine-tuning, sign) bundles with this key, as
    ``$KIT_BUNDLE_KEY`` does; a missing or short key file is refused before anything runs."""
    if "--key" not in argv:
        return argv
    at = argv.index("--key")
    if at + 1 >= len(argv):
        raise KitError("--key needs a KEYFILE")
    read_key(argv[at + 1], "--key")
    os.environ[KEY_ENV] = argv[at + 1]
    return argv[:at] + argv[at + 2 :]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        argv = _take_key(argv)
    except KitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in SUBCOMMANDS:
        print(f"error: unknown command '{command}'. {_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(f".{SUBCOMMANDS[command]}", __package__)
    try:
        return int(module.main(rest) or 0)
    except KitError as exc:
        text = " ".join(str(exc).split()).encode("utf-8", "backslashreplace").decode("utf-8")
        print(f"error: {text}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
