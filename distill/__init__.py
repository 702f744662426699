"""Distillers and selectors behind one scikit-learn-style interface.

``make_distiller(method, ipc, seed=0, **params).fit(x, y)`` -> ``features_``, ``labels_``,
``history_``. Methods: ``random``, ``herding``, ``kcenter`` (real-sample selection) and
``rfad`` (synthetic, random-feature NNGP kernel distillation). Importing this package imports
torch (the selectors' embedding and RFAD need it).
"""

from .base import Distiller, validate_training_set
from .random_features import RandomConvNets
from .registry import METHODS, make_distiller
from .rfad import RFAD
from .selection import HerdingSelector, KCenterSelector, RandomSelector

__all__ = [
    "Distiller",
    "validate_training_set",
    "RandomConvNets",
    "METHODS",
    "make_distiller",
    "RFAD",
    "RandomSelector",
    "HerdingSelector",
    "KCenterSelector",
]
