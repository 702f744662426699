"""Augmentation of normalised feature maps (N, C, F, T), applied per batch on the device.

Why on features, not audio: coresets are feature maps (distilled ones have no waveform), so the
augmentation that regularises training on a handful of clips must act on features. Each clip gets
a random circular time shift (+-8 frames), one time mask (<= 10 frames) and one frequency mask
(<= 3 coefficients), filled with 0 (the normalised mean). All vectorised: one gather and two
broadcast comparisons per batch, no per-sample Python loop.
"""

from __future__ import annotations

import torch


def augment_batch(
    x: torch.Tensor,
    generator: torch.Generator,
    max_shift: int = 8,
    max_time_mask: int = 10,
    max_freq_mask: int = 3,
) -> torch.Tensor:
    """Return an augmented copy of ``x``; randomness comes only from ``generator`` (CPU) for
    reproducibility."""
    n, _, n_freq, n_time = x.shape
    device = x.device

    def randint(low: int, high: int) -> torch.Tensor:
        return torch.randint(low, high, (n,), generator=generator).to(device)

    if max_shift > 0 and n_time > 1:
        shift = randint(-max_shift, max_shift + 1)
        index = (torch.arange(n_time, device=device)[None, :] - shift[:, None]) % n_time  # (N, T)
        x = torch.gather(x, 3, index[:, None, None, :].expand_as(x))
    else:
        x = x.clone()
    time = torch.arange(n_time, device=device)[None, :]
    if max_time_mask > 0:
        width = randint(0, min(max_time_mask, n_time) + 1)
        start = (torch.rand(n, generator=generator).to(device) * (n_time - width + 1)).long()
        time_mask = (time >= start[:, None]) & (time < (start + width)[:, None])  # (N, T)
        x = x.masked_fill(time_mask[:, None, None, :], 0.0)
    if max_freq_mask > 0 and n_freq > 1:
        freq = torch.arange(n_freq, device=device)[None, :]
        width = randint(0, min(max_freq_mask, n_freq - 1) + 1)
        start = (torch.rand(n, generator=generator).to(device) * (n_freq - width + 1)).long()
        freq_mask = (freq >= start[:, None]) & (freq < (start + width)[:, None])  # (N, F)
        x = x.masked_fill(freq_mask[:, None, :, None], 0.0)
    return x
