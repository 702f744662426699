"""``python -m bench``: the distillation benchmark (see bench/distill.py)."""

import sys

from bench.distill import main

sys.exit(main())
