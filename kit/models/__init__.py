"""Models: a registry of architectures, size/compute profiling and the model artifact.

Importing this package imports torch; ``import kit`` alone does not.
"""
from .artifact import MODEL_KIND, load_model, save_model
from .base import KitModel
from .predictor import TorchPredictor
from .profile import count_macs, count_parameters
from .registry import available_archs, build_model, rebuild_model, register_arch

__all__ = [
    "MODEL_KIND",
    "KitModel",
    "available_archs",
    "build_model",
    "count_macs",
    "count_parameters",
    "load_model",
    "TorchPredictor",
    "rebuild_model",
    "register_arch",
    "save_model",
]
