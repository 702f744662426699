"""Audio dataset distillation and keyword-spotting kit: data, features, models, training, CLI.

Importing ``kit`` is cheap (no torch); heavy modules import torch themselves.
"""

from deploy.runtime.errors import KitError
from deploy.runtime.features import FeatureConfig

__all__ = ["KitError", "FeatureConfig"]
__version__ = "0.1.0"
