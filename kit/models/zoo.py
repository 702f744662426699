"""The model zoo: named architecture variants that ``kit models`` lists and experiments pick from.

Why a list of variants and not just the registry: one registered architecture spans networks of
very different cost (ResNet-18 at width 64 is 11 M parameters, at width 16 0.7 M; DS-CNN small vs
medium), and a user choosing a model for a phone or a microcontroller needs to see those rows
side by side. Any registered architecture missing from the list is still shown, with its
defaults, so a newly registered arch appears without editing this file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .profile import count_macs, count_parameters
from .registry import available_archs, build_model


@dataclass(frozen=True)
class Variant:
    """One row of the zoo: an architecture with fixed constructor arguments."""

    arch: str
    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    note: str = ""


VARIANTS: tuple[Variant, ...] = (
    Variant("convnet", "width 128", {}, "DC/DM/MTT evaluation network"),
    Variant("convnet", "width 32", {"width": 32}, "edge ConvNet"),
    Variant("cnn4", "default", {}, "RFAD audio 4-layer CNN"),
    Variant("resnet18", "width 64", {}, "original widths"),
    Variant("resnet18", "width 16", {"width": 16}, "CPU-sized"),
    Variant("vgg11", "width 64", {}, "original widths"),
    Variant("vgg11", "width 16", {"width": 16}, "CPU-sized"),
    Variant("dscnn", "small", {"size": "small"}, "Hello Edge DS-CNN-S"),
    Variant("dscnn", "medium", {"size": "medium"}, "Hello Edge DS-CNN-M"),
    Variant("dscnn-mcu", "small", {"size": "small"}, "Hello Edge DS-CNN-S, MCU-ready"),
    Variant("dscnn-mcu", "medium", {"size": "medium"}, "Hello Edge DS-CNN-M, MCU-ready"),
    Variant("convnet-mcu", "width 32", {}, "small ConvNet, MCU-ready"),
    Variant("bcresnet", "width 1", {"width": 1}, "BC-ResNet-1 (broadcasted residual)"),
    Variant("bcresnet", "width 2", {}, "BC-ResNet-2 (broadcasted residual)"),
)


def zoo_variants() -> list[Variant]:
    """The listed variants plus one default row for every other registered architecture."""
    listed = {v.arch for v in VARIANTS}
    return list(VARIANTS) + [Variant(arch, "default") for arch in available_archs() if arch not in listed]


def profile_variant(variant: Variant, in_shape: Sequence[int], n_classes: int) -> dict[str, Any]:
    """Parameters, MACs for one input of ``in_shape`` and the fp32 weight size of a variant."""
    model = build_model(variant.arch, in_shape, n_classes, **variant.kwargs)
    params = count_parameters(model)
    return {
        "arch": variant.arch,
        "variant": variant.name,
        "arch_kwargs": dict(model.arch_kwargs),
        "note": variant.note,
        "parameters": params,
        "macs": count_macs(model, in_shape),
        "fp32_bytes": 4 * params,
        "embedding_dim": int(model.embedding_dim),
    }
