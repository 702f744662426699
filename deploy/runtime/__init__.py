"""The numpy-only half of the kit: artifact formats, the audio front-end and inference.

This package must import on a device that has numpy plus onnxruntime or a TFLite runtime and
nothing else: no torch, no librosa, no scipy. The training side (``kit``) uses the very same
front-end code, so features on the device match the features the model was trained on.
Modules here use relative imports so ``kit deploy`` can copy the folder under another name.
"""

from .errors import KitError
from .features import FeatureConfig, extract_features

__all__ = ["KitError", "FeatureConfig", "extract_features"]
