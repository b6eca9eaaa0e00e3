"""Categorical sampling that never makes the host wait for the device."""

from __future__ import annotations

import torch
from torch import Tensor


def sample_categorical(probabilities: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One class index per row of ``probabilities`` (..., K): ``argmax(p / E)`` with ``E ~ Exponential(1)``.

    The exponential race draws class k with probability p_k. It is the algorithm ``torch.multinomial`` uses
    for a single sample (on the CPU the two give identical draws from the same generator), without the
    validity checks that read the probabilities back to the host, twice per call, on a GPU.
    """
    race = torch.empty_like(probabilities).exponential_(1, generator=generator)
    return (probabilities / race).argmax(-1)
