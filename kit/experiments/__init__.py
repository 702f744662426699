"""Evaluation experiments (the seed papers' comparisons), each a ``kit`` command writing a ``RunDir``."""

from .rundir import RunDir, load_results, to_jsonable

__all__ = ["RunDir", "load_results", "to_jsonable"]
