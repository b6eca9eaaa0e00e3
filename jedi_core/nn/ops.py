"""Small tensor operations the networks and losses share; none of them makes the host wait for the device.

* Means over the real steps of a padded batch, without boolean indexing. ``x[mask].mean()`` needs the
  mask's count on the host to size its result, so on a GPU it waits for the device. Weighting by the mask
  gives the same number and never waits (see :mod:`jedi_core.runtime` on device-side logs).
* Categorical sampling by the exponential race (:func:`sample_categorical`).
* The fp32 boundary (:func:`fp32_outputs`): whatever precision runs inside a network, what it returns is fp32.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


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


def sample_categorical(probabilities: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One class index per row of ``probabilities`` (..., K): ``argmax(p / E)`` with ``E ~ Exponential(1)``.

    The exponential race draws class k with probability p_k. It is the algorithm ``torch.multinomial`` uses
    for a single sample (on the CPU the two give identical draws from the same generator), without the
    validity checks that read the probabilities back to the host, twice per call, on a GPU.
    """
    race = torch.empty_like(probabilities).exponential_(1, generator=generator)
    return (probabilities / race).argmax(-1)


def fp32_outputs(module: nn.Module) -> nn.Module:
    """Make every floating-point tensor that ``module`` returns fp32 (top-level, in tuples, in nested tuples).

    The one place where bf16 autocast (``performance.precision=bf16``) meets the fp32 code around the
    networks: losses, the sampler's arithmetic, lambda-returns and the imagined latents all stay fp32. A
    forward hook, so the module's parameters and checkpoint names do not change; in fp32 it changes nothing
    (``Tensor.float`` returns the tensor itself).
    """
    module.register_forward_hook(_outputs_to_fp32)
    return module


def _outputs_to_fp32(module: nn.Module, inputs: object, outputs: object) -> object:
    if isinstance(outputs, Tensor):
        return outputs.float() if outputs.is_floating_point() else outputs
    if isinstance(outputs, tuple):
        return tuple(_outputs_to_fp32(module, inputs, item) for item in outputs)
    return outputs
