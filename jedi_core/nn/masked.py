"""Means over the real steps of a padded batch, without boolean indexing.

``x[mask].mean()`` needs the mask's count on the host to size its result, so on a GPU it waits for the
device. Weighting by the mask gives the same number and never waits (see ``jedi_core.logs``).
"""

from __future__ import annotations

from torch import Tensor


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` where ``mask`` (same shape, bool or 0/1) is set; 0 if it is set nowhere."""
    weights = mask.to(values.dtype)
    return (values * weights).sum() / weights.sum().clamp(min=1.0)


def masked_std(values: Tensor, mask: Tensor) -> Tensor:
    """Per-feature standard deviation over the (B, T) positions where ``mask`` is set, averaged over features.

    The same number as ``values[mask.bool()].std(0).mean()`` for ``values`` of shape (B, T, ...).
    """
    weights = mask.to(values.dtype).reshape(*mask.shape, *([1] * (values.dim() - mask.dim())))
    count = weights.sum()
    mean = (values * weights).sum((0, 1)) / count.clamp(min=1.0)
    variance = ((values - mean).pow(2) * weights).sum((0, 1)) / (count - 1).clamp(min=1.0)
    return variance.sqrt().mean()
