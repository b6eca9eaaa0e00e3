"""JEDI's encoder: a 64x64x3 frame -> a C x 8 x 8 latent in (-s, s).

Conv stem, then one :class:`SmallResBlock` per stage with 2x max-pooling after the first three
(channels [32, 32, 32, 16] at paper scale). The output is squashed by the *latent clamp*
``s * tanh(z / s)`` (s = 3), which is also applied to the denoiser's predictions: latents can neither blow
up nor drift out of the range the denoiser was trained on.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from jedi_core.nn.blocks import conv_stem
from jedi_core.nn.ops import fp32_outputs


def latent_clamp(latent: Tensor, scale: float) -> Tensor:
    """``scale * tanh(latent / scale)``: identity near 0, smoothly bounded by +-scale."""
    return scale * torch.tanh(latent / scale)


class LatentEncoder(nn.Module):
    """JEDI's encoder: frames in [-1, 1] to C x h x w latents squashed into (-clamp, clamp).

    Trained end to end by the world model's losses (the diffusion loss through its *context* latents only,
    because the target is stop-gradiented, and the reward/end loss); the actor-critic reads its output
    detached. Outputs are fp32 under any autocast.
    """

    def __init__(self, channels: Sequence[int], downsample: Sequence[int], clamp: float,
                 in_channels: int = 3):
        super().__init__()
        self.layers = nn.Sequential(*conv_stem(in_channels, channels, downsample))
        self.clamp = clamp
        self.latent_channels = channels[-1]
        self.downscale = 2 ** sum(downsample)
        fp32_outputs(self)

    def forward(self, frames: Tensor) -> Tensor:
        """(..., 3, H, W) floats in [-1, 1] -> (..., C, H / 2^k, W / 2^k) latents in (-clamp, clamp)."""
        batch_shape = frames.shape[:-3]
        latents = self.layers(frames.reshape(-1, *frames.shape[-3:]))
        return latent_clamp(latents, self.clamp).reshape(*batch_shape, *latents.shape[1:])
