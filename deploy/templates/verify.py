"""Check every file of this deployed folder against the SHA-256 sums in manifest.json.

Standard library only, so it runs on the device before anything is installed
(``python3 verify.py`` or ``./run.sh --verify``). Exit status 0 when every file matches, 2 with one
line per problem otherwise. ``.venv`` and ``__pycache__`` are the device's own and not checked;
other extra files are only noted, except inside ``kit_runtime/`` where Python would import them.
A ``bundle.kit`` changed by an on-device fine-tune is reported too: that is expected after
``finetune`` (the bundle carries its own checksums, which ``info`` verifies).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

SKIP = {".venv", "__pycache__"}


def problems(root: Path) -> tuple[list[str], list[str]]:
    """(errors, notes) for the folder ``root``."""
    try:
        manifest = json.loads((root / "manifest.json").read_text())
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [f"{root / 'manifest.json'}: unreadable or not a deployment manifest ({exc})"], []
    found, notes = [], []
    for name, info in sorted(files.items()):
        path = root / name
        if not path.is_file():
            found.append(f"{path}: missing")
            continue
        data = path.read_bytes()
        if len(data) != info.get("size") or hashlib.sha256(data).hexdigest() != info.get("sha256"):
            found.append(f"{path}: does not match its checksum (changed since deployment, or corrupted)")
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if (
            not path.is_file()
            or SKIP.intersection(rel.parts)
            or rel.as_posix() in files
            or rel.as_posix() == "manifest.json"
        ):
            continue
        if rel.parts[0] == "kit_runtime":
            found.append(f"{path}: not part of the deployment (Python would import it)")
        else:
            notes.append(f"{path}: extra file, not part of the deployment")
    return found, notes


def main() -> int:
    root = Path(__file__).resolve().parent
    found, notes = problems(root)
    for line in notes:
        print(f"note: {line}", file=sys.stderr)
    for line in found:
        print(f"error: {line}", file=sys.stderr)
    if not found:
        count = len(json.loads((root / "manifest.json").read_text())["files"])
        print(f"ok: {count} files match manifest.json")
    return 2 if found else 0


if __name__ == "__main__":
    sys.exit(main())
