"""Feature extraction for training: librosa-style functions, cached batch extraction, feature sets.

The DSP itself lives in ``deploy.runtime.features`` (numpy only) so the device computes the same
maps; this package adds file decoding, parallelism, caching and train-only normalisation.
"""

from deploy.runtime.features import FEATURE_KINDS, FeatureConfig, extract_features

from .cache import CACHE_STATS, FEATURE_CODE_VERSION, CacheStats, cache_key, cache_paths
from .extract import available_cores, clip_features, extract_clips
from .featureset import FeatureSet, limit_clips, load_feature_set
from .functional import fd_mfcc, feature_config, log_mel, lpcc, mfcc

__all__ = [
    "CACHE_STATS",
    "FEATURE_CODE_VERSION",
    "FEATURE_KINDS",
    "CacheStats",
    "FeatureConfig",
    "FeatureSet",
    "available_cores",
    "cache_key",
    "cache_paths",
    "clip_features",
    "extract_clips",
    "extract_features",
    "fd_mfcc",
    "feature_config",
    "limit_clips",
    "load_feature_set",
    "log_mel",
    "lpcc",
    "mfcc",
]
