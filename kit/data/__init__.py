"""Datasets as labelled, split clip lists: built-in loaders, user folders/CSVs, downloads.

See docs/ARCHITECTURE.md ("Data") for the contract other modules rely on.
"""

from .download import REGISTRY, ArchiveSpec, download_dataset, install_archive, safe_extract, safe_extract_tar
from .folds import PLANS, FoldPlan, canonical_name, check_groups_disjoint, fold_plan, parse_folds
from .paths import cache_dir, resolve_data_dir
from .registry import DATASET_NAMES, load_dataset
from .summary import SplitSummary, groups_in_both, summarize
from .types import SPLITS, AudioDataset, Clip, check_dataset

__all__ = [
    "ArchiveSpec",
    "AudioDataset",
    "Clip",
    "DATASET_NAMES",
    "FoldPlan",
    "PLANS",
    "REGISTRY",
    "SPLITS",
    "SplitSummary",
    "cache_dir",
    "canonical_name",
    "check_groups_disjoint",
    "check_dataset",
    "download_dataset",
    "fold_plan",
    "groups_in_both",
    "install_archive",
    "load_dataset",
    "parse_folds",
    "resolve_data_dir",
    "safe_extract",
    "safe_extract_tar",
    "summarize",
]
