"""``python -m bench``: the FSDD coreset benchmark (see bench/fsdd.py)."""
import sys

from bench.fsdd import main

sys.exit(main())
