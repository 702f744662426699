"""The one rule for class names, wherever they come from (a folder, a CSV, ``--add-keyword``).

Why: a class name ends up as a line of ``labels.txt`` (Android), a JSON key, a file-name prefix
(``<class>_1.wav`` in personalisation) and a folder name in a deployment. A newline breaks the
first, a slash the last; a name the detector ignores (``_silence_``) could never be detected.
"""

from __future__ import annotations

import unicodedata

from .errors import KitError
from .recognizer import DEFAULT_IGNORE

MAX_NAME_CHARS = 64


def check_class_name(name: str, where: str, *, new_keyword: bool = False) -> str:
    """Return ``name`` or raise a one-line ``KitError`` naming ``where`` and what is wrong.

    ``new_keyword``: also refuse the labels the detector ignores (``_silence_``, ``_unknown_``),
    which a dataset may carry as classes but a user cannot add as a word to detect.
    """
    shown = repr(name)[:80]
    if not name or name != name.strip():
        raise KitError(f"{where}: class name {shown} is empty or starts/ends with whitespace")
    if len(name) > MAX_NAME_CHARS:
        raise KitError(f"{where}: class name {shown} is longer than {MAX_NAME_CHARS} characters")
    if any(c in "/\\" or unicodedata.category(c)[0] == "C" for c in name) or name in (".", ".."):
        raise KitError(
            f"{where}: class name {shown} holds a slash, a control character (newline, tab) or an unprintable one"
        )
    if new_keyword and name in DEFAULT_IGNORE:
        raise KitError(f"{where}: '{name}' is a label the detector ignores; choose another keyword name")
    return name
