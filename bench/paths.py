"""Where every benchmark reads recordings and writes results.

Why one module: each benchmark used to derive these two folders itself (seven copies of the same
lines); a change to the data-folder rule (say, the run.sh fallback to ../shared/data) now has one home.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "bench" / "results"
#: Benchmarks read the real recordings beside the repository unless KIT_DATA_DIR says otherwise.
DEFAULT_DATA_DIR = os.environ.get("KIT_DATA_DIR") or str(REPO.parent / "shared" / "data")
