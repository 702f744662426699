"""Differentiable Siamese augmentation of spectrogram-like feature maps (N, C, F, T).

Why its own module: DSA (Zhao & Bilen, ICML 2021) and DM (Zhao & Bilen, WACV 2023) match real and
synthetic samples *after* augmenting both with the very same transformation, so that the coreset
learns what survives augmentation instead of one fixed view; the gradient has to flow through
the augmentation into the synthetic features. The image versions (crop, flip, rotate, colour)
make no sense for MFCC-like maps: a flipped time axis is no word and a rotated spectrogram mixes
frequency with time. These operations act the way audio varies instead:

* ``shift``: time shift by up to ``max_shift`` frames, circular (``shift_mode="circular"``, as
  the kit's training augmentation) or zero-padded (``"zero"``; 0 is the normalised mean);
* ``time_mask`` / ``freq_mask``: SpecAugment-style bands of 1..``max_time_mask`` frames or
  1..``max_freq_mask`` coefficients set to 0;
* ``gain``: multiply by a factor in [1/``max_gain``, ``max_gain``] (log-uniform);
* ``noise``: add Gaussian noise of standard deviation ``noise_std`` (one (C, F, T) noise map);
* ``stretch``: time stretch by a rate in [1 - ``max_stretch``, 1 + ``max_stretch``] about the
  centre frame, by linear interpolation along T, zero outside the clip.

"Siamese" means: ``sample`` draws ONE set of parameters per call (as DSA's batch mode does: every
sample of the batch gets the same shift, mask, gain, noise map...) and ``apply`` uses it on any
number of tensors of any batch size, so ``aug(real, synthetic, generator=g)`` transforms both
identically. The parameters depend only on the map shape and the generator, never on the data or
the batch size; that is what makes distributed runs exact (every rank draws the same parameters
and applies them to the rows it owns). All ops are gathers, masks and products, hence
differentiable w.r.t. the input and shape-preserving. Randomness comes only from the CPU
``torch.Generator`` passed in, so a checkpointed generator state reproduces the augmentations.

``mode="single"`` applies one op picked uniformly per call (DSA's default ``'S'`` mode), ``"all"``
applies every configured op in order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from deploy.runtime.errors import KitError

#: every operation, in the order ``mode="all"`` applies them
OPS = ("shift", "time_mask", "freq_mask", "gain", "noise", "stretch")
MODES = ("single", "all")
SHIFT_MODES = ("circular", "zero")


def parse_ops(spec: str | Sequence[str], owner: str = "augment") -> tuple[str, ...]:
    """``"shift,gain"`` or ``["shift", "gain"]`` -> validated op names (``"none"`` / ``""`` -> ())."""
    names = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else [str(s).strip() for s in spec]
    names = [n for n in names if n and n != "none"]
    unknown = [n for n in names if n not in OPS]
    if unknown:
        raise KitError(f"{owner}: unknown augmentation '{unknown[0]}' (choose from {', '.join(OPS)}, or none)")
    if len(set(names)) != len(names):
        raise KitError(f"{owner}: augmentation listed twice in '{','.join(names)}'")
    return tuple(names)


@dataclass(frozen=True)
class AugmentParams:
    """One draw: the ops to apply, in order, each with its parameters (CPU scalars / noise map)."""

    ops: tuple[tuple[str, dict[str, Any]], ...] = field(default_factory=tuple)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.ops)


class SiameseAugment:
    """Sample augmentation parameters once, apply them to several tensors (see module docstring)."""

    def __init__(
        self,
        ops: str | Sequence[str] = OPS,
        mode: str = "single",
        max_shift: int = 8,
        shift_mode: str = "circular",
        max_time_mask: int = 10,
        max_freq_mask: int = 3,
        max_gain: float = 1.25,
        noise_std: float = 0.1,
        max_stretch: float = 0.1,
    ) -> None:
        self.ops = parse_ops(ops)
        if mode not in MODES:
            raise KitError(f"augment: unknown mode '{mode}' (choose from {', '.join(MODES)})")
        if shift_mode not in SHIFT_MODES:
            raise KitError(f"augment: unknown shift mode '{shift_mode}' (choose from {', '.join(SHIFT_MODES)})")
        for name, value in (
            ("max_shift", max_shift),
            ("max_time_mask", max_time_mask),
            ("max_freq_mask", max_freq_mask),
        ):
            if int(value) != value or value < 0:
                raise KitError(f"augment: {name} must be a non-negative integer, got {value}")
        if max_gain < 1.0:
            raise KitError(f"augment: max_gain must be >= 1, got {max_gain}")
        if noise_std < 0:
            raise KitError(f"augment: noise_std must be >= 0, got {noise_std}")
        if not 0.0 <= max_stretch < 1.0:
            raise KitError(f"augment: max_stretch must be in [0, 1), got {max_stretch}")
        self.mode, self.shift_mode = mode, shift_mode
        self.max_shift, self.max_time_mask, self.max_freq_mask = int(max_shift), int(max_time_mask), int(max_freq_mask)
        self.max_gain, self.noise_std, self.max_stretch = float(max_gain), float(noise_std), float(max_stretch)

    def __repr__(self) -> str:
        return f"SiameseAugment(ops={','.join(self.ops) or 'none'}, mode={self.mode})"

    # sampling -----------------------------------------------------------------------------------
    def sample(self, shape: Sequence[int], generator: torch.Generator) -> AugmentParams:
        """Parameters for maps of shape (C, F, T) (a leading batch axis is ignored)."""
        c, n_freq, n_time = (int(v) for v in tuple(shape)[-3:])
        if not self.ops:
            return AugmentParams()
        if self.mode == "single":
            pick = int(torch.randint(len(self.ops), (1,), generator=generator))
            chosen = (self.ops[pick],)
        else:
            chosen = self.ops
        return AugmentParams(tuple((name, self._sample_op(name, c, n_freq, n_time, generator)) for name in chosen))

    def _sample_op(self, name: str, c: int, n_freq: int, n_time: int, gen: torch.Generator) -> dict[str, Any]:
        def randint(low: int, high: int) -> int:  # inclusive bounds
            return int(torch.randint(low, high + 1, (1,), generator=gen))

        def uniform(low: float, high: float) -> float:
            return low + (high - low) * float(torch.rand(1, generator=gen, dtype=torch.float64))

        if name == "shift":
            return {"shift": randint(-self.max_shift, self.max_shift)}
        if name == "time_mask":
            width = randint(min(1, self.max_time_mask), min(self.max_time_mask, n_time - 1))
            return {"start": randint(0, n_time - width), "width": width}
        if name == "freq_mask":
            width = randint(min(1, self.max_freq_mask), min(self.max_freq_mask, max(n_freq - 1, 0)))
            return {"start": randint(0, n_freq - width), "width": width}
        if name == "gain":
            return {"gain": math.exp(uniform(-math.log(self.max_gain), math.log(self.max_gain)))}
        if name == "noise":
            return {"noise": torch.randn((c, n_freq, n_time), generator=gen) * self.noise_std}
        if name == "stretch":
            return {"rate": uniform(1.0 - self.max_stretch, 1.0 + self.max_stretch)}
        raise AssertionError(name)

    # applying -----------------------------------------------------------------------------------
    def apply(self, x: torch.Tensor, params: AugmentParams) -> torch.Tensor:
        """``x`` (N, C, F, T) transformed by ``params``; differentiable, same shape."""
        for name, p in params.ops:
            x = getattr(self, f"_{name}")(x, **p)
        return x

    def __call__(self, *tensors: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        """Draw one set of parameters and apply it to every tensor (all shaped (·, C, F, T))."""
        if not tensors:
            return ()
        params = self.sample(tensors[0].shape, generator)
        return tuple(self.apply(t, params) for t in tensors)

    # the operations (static in spirit; methods so subclasses can override one) ------------------
    def _shift(self, x: torch.Tensor, shift: int) -> torch.Tensor:
        if shift == 0:
            return x
        out = torch.roll(x, shifts=shift, dims=-1)
        if self.shift_mode == "zero":
            keep = torch.ones(x.shape[-1], dtype=x.dtype, device=x.device)
            if shift > 0:
                keep[:shift] = 0
            else:
                keep[shift:] = 0
            out = out * keep
        return out

    @staticmethod
    def _band(x: torch.Tensor, start: int, width: int, dim: int) -> torch.Tensor:
        keep = torch.ones(x.shape[dim], dtype=x.dtype, device=x.device)
        keep[start : start + width] = 0
        shape = [1] * x.dim()
        shape[dim] = x.shape[dim]
        return x * keep.reshape(shape)

    def _time_mask(self, x: torch.Tensor, start: int, width: int) -> torch.Tensor:
        return self._band(x, start, width, x.dim() - 1)

    def _freq_mask(self, x: torch.Tensor, start: int, width: int) -> torch.Tensor:
        return self._band(x, start, width, x.dim() - 2)

    @staticmethod
    def _gain(x: torch.Tensor, gain: float) -> torch.Tensor:
        return x * gain

    @staticmethod
    def _noise(x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return x + noise.to(device=x.device, dtype=x.dtype)

    @staticmethod
    def _stretch(x: torch.Tensor, rate: float) -> torch.Tensor:
        """out[t] = x[c + (t - c) / rate] (linear interpolation), c the centre frame, 0 outside."""
        n_time = x.shape[-1]
        centre = (n_time - 1) / 2.0
        pos = centre + (torch.arange(n_time, dtype=torch.float64) - centre) / rate
        left = torch.floor(pos)
        frac = (pos - left).to(x.dtype)
        left = left.long()
        right = left + 1
        w_left = (1 - frac) * ((left >= 0) & (left < n_time)).to(x.dtype)
        w_right = frac * ((right >= 0) & (right < n_time)).to(x.dtype)
        left, right = left.clamp(0, n_time - 1).to(x.device), right.clamp(0, n_time - 1).to(x.device)
        return x.index_select(-1, left) * w_left.to(x.device) + x.index_select(-1, right) * w_right.to(x.device)
