"""Messages for data that is not where the kit looked: say where, and how to get it.

Why a helper: every loader must give the same actionable advice (download command, or the
environment variable), and a user who mistyped ``--data-dir`` must see the path that was used.
"""

from __future__ import annotations

from pathlib import Path

from deploy.runtime.errors import KitError


def missing_data(name: str, looked_at: Path, data_dir: Path, how_to_get: str | None = None) -> KitError:
    """A ``KitError`` for a dataset folder that is absent."""
    if not data_dir.is_dir():
        where = f"the data directory {data_dir} does not exist"
    else:
        where = f"{looked_at} does not exist"
    advice = how_to_get or f"run `kit data download {name} --data-dir {data_dir}`"
    return KitError(
        f"dataset '{name}' not found: {where}; {advice}, or set KIT_DATA_DIR / --data-dir to the folder that holds it"
    )
