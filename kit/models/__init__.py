"""Models: a registry of architectures, size/compute profiling and the model artifact.

Importing this package imports torch; ``import kit`` alone does not.
"""

from .artifact import MODEL_KIND, load_model, save_model
from .base import KitModel
from .dscnn import DSCNN
from .predictor import TorchPredictor
from .profile import count_macs, count_parameters
from .registry import available_archs, build_model, rebuild_model, register_arch
from .resnet import ResNet18
from .vgg import VGG11

__all__ = [
    "DSCNN",
    "MODEL_KIND",
    "ResNet18",
    "VGG11",
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
