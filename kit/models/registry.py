"""Architecture registry: names -> model classes, so new archs plug in without touching callers.

Why a registry: the CLI (``--arch``), the training config and the model artifact all name an
architecture by string; the artifact rebuilds a network from ``(arch, in_shape, n_classes,
arch_kwargs)``. Adding ResNet-18, VGG11 or DS-CNN later is one ``@register_arch`` decorator.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from deploy.runtime.errors import KitError

from .base import KitModel
from .bcresnet import BCResNet
from .cnn4 import CNN4
from .convnet import ConvNet
from .convnet_space import ConvNetNAS
from .dscnn import DSCNN
from .mcu import DSCNNMCU, ConvNetMCU
from .resnet import ResNet18
from .vgg import VGG11

_ARCHS: dict[str, type[KitModel]] = {}
M = TypeVar("M", bound=type[KitModel])


def register_arch(name: str) -> Callable[[M], M]:
    """Class decorator: make ``build_model(name, ...)`` construct this class."""

    def decorate(cls: M) -> M:
        if name in _ARCHS and _ARCHS[name] is not cls:
            raise ValueError(f"architecture '{name}' is already registered to {_ARCHS[name].__name__}")
        cls.arch = name
        _ARCHS[name] = cls
        return cls

    return decorate


def available_archs() -> list[str]:
    return sorted(_ARCHS)


def build_model(arch: str, in_shape: Sequence[int], n_classes: int, **kwargs: Any) -> KitModel:
    """Construct a freshly initialised model (seed torch first for reproducible weights).

    Unknown architectures or arguments are user errors (``KitError``), since both come from the
    command line or from an artifact.
    """
    cls = _ARCHS.get(arch)
    if cls is None:
        raise KitError(f"unknown architecture '{arch}' (choose from {', '.join(available_archs())})")
    try:
        return cls(tuple(int(v) for v in in_shape), int(n_classes), **kwargs)
    except TypeError as exc:
        raise KitError(f"architecture '{arch}': bad arguments {sorted(kwargs)} ({exc})") from None
    except ValueError as exc:
        raise KitError(f"architecture '{arch}': {exc}") from None


def rebuild_model(spec: dict[str, Any]) -> KitModel:
    """Inverse of ``model.spec``: the same architecture with fresh weights."""
    try:
        return build_model(spec["arch"], spec["in_shape"], spec["n_classes"], **spec.get("arch_kwargs", {}))
    except KeyError as exc:
        raise KitError(f"model spec is missing {exc}") from None


register_arch("convnet")(ConvNet)
register_arch("cnn4")(CNN4)
register_arch("resnet18")(ResNet18)
register_arch("vgg11")(VGG11)
register_arch("dscnn")(DSCNN)
register_arch("convnet-nas")(ConvNetNAS)
register_arch("dscnn-mcu")(DSCNNMCU)
register_arch("convnet-mcu")(ConvNetMCU)
register_arch("bcresnet")(BCResNet)
