"""The decoder probe: latents drawn as pictures, for people only (it never trains the encoder)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from jedi_core.nn.blocks import Conv3x3, GroupNorm, SmallResBlock, Upsample
from jedi_core.nn.ops import fp32_outputs


class DecoderProbe(nn.Module):
    """A pixel decoder trained on *detached* latents: for looking at imagined latents, never for training."""

    def __init__(self, latent_channels: int, channels: tuple[int, ...], out_channels: int = 3):
        super().__init__()
        layers: list[nn.Module] = [Conv3x3(latent_channels, channels[0])]
        for previous, current in zip((channels[0], *channels[:-1]), channels, strict=True):
            layers += [SmallResBlock(previous, current), Upsample(current)]
        layers += [GroupNorm(channels[-1]), nn.SiLU(), Conv3x3(channels[-1], out_channels)]
        self.layers = nn.Sequential(*layers)
        fp32_outputs(self)

    def forward(self, latents: Tensor) -> Tensor:
        """(..., C, h, w) latents -> (..., 3, h * 2^k, w * 2^k) frames, unclamped."""
        out = self.layers(latents.reshape(-1, *latents.shape[-3:]))
        return out.reshape(*latents.shape[:-3], *out.shape[1:])

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        return self(latents).clamp(-1, 1)
