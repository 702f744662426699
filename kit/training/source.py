"""The dataset a model was trained on, rebuilt from the ``source`` record in its meta.

Why one function: choosing int8 calibration clips, quantisation-aware fine-tuning and the threshold
validation stream all go back to the model's own training split, with the loader options it was
loaded with (split rule, task, test fold, extra training folders). Read three times by hand, one
reader once forgot ``extra_train`` and rebuilt a different split; here the options are read once.
The same goes for the front-end: a model trained with ``--feature log_mel`` must be fed log-mel
features, whatever the dataset's default is (``load_model_feature_set``).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from deploy.runtime.compat import FeatureSpace
from deploy.runtime.errors import KitError

from ..data import AudioDataset, load_dataset

if TYPE_CHECKING:  # the feature code pulls in soundfile; only its type is needed here
    from ..features import FeatureSet


def loader_options(source: dict[str, Any]) -> dict[str, Any]:
    """The ``load_dataset`` / ``load_feature_set`` keyword options a model's ``source`` recorded."""
    return {
        "split": source.get("split", "official"),
        "task": source.get("task", "kws10"),
        "test_fold": source.get("test_fold", 5),
        "extra_train": source.get("extra_train", ()),
    }


def model_dataset_name(meta: dict[str, Any], what: str, dataset: str | None = None) -> str:
    """``dataset`` if given, else the dataset path the model recorded; ``what`` names the step in the error."""
    name = dataset or (meta.get("source") or {}).get("dataset_path")
    if not name:
        raise KitError(f"{what}: the model records no dataset (train it with `kit train`)")
    return name


def load_model_dataset(
    meta: dict[str, Any], data_dir: str | os.PathLike | None, what: str, dataset: str | None = None
) -> AudioDataset:
    """The model's dataset (or ``dataset``) loaded with the options its ``source`` recorded."""
    name = model_dataset_name(meta, what, dataset)
    return load_dataset(name, data_dir, **loader_options(meta.get("source") or {}))


def load_model_feature_set(
    meta: dict[str, Any], data_dir: str | os.PathLike | None, what: str, dataset: str | None = None
) -> tuple[FeatureSet, FeatureSpace]:
    """The model's dataset as features in the model's own front-end, and the model's ``FeatureSpace``.

    ``fs`` is normalised on its own training split; ``renormalize(fs.x_*, fs.normalizer,
    space.normalizer)`` (``deploy.runtime.compat``) puts it in the model's input space."""
    from ..features import load_feature_set  # lazy: pulls in soundfile

    space = FeatureSpace.of(meta)
    name = model_dataset_name(meta, what, dataset)
    fs = load_feature_set(
        name, data_dir, config=space.feature_config, **loader_options(meta.get("source") or {}), progress=False
    )
    return fs, space
