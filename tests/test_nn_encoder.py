"""jedi_core.nn.encoder: JEDI's encoder maps frames to clamped 16x8x8 latents."""

import torch

from jedi_core.nn.encoder import LatentEncoder, latent_clamp


def test_encoder_maps_frames_to_16x8x8_latents():
    encoder = LatentEncoder(channels=(32, 32, 32, 16), downsample=(1, 1, 1, 0), clamp=3.0)
    latents = encoder(torch.rand(2, 5, 3, 64, 64) * 2 - 1)
    assert latents.shape == (2, 5, 16, 8, 8)


def test_latent_clamp_is_smooth_and_bounded():
    z = torch.tensor([-1e4, -1.0, 0.0, 0.01, 1e4])
    clamped = latent_clamp(z, scale=3.0)
    torch.testing.assert_close(clamped, 3.0 * torch.tanh(z / 3.0))
    assert clamped.abs().max() <= 3.0 and abs(clamped[3] - 0.01) < 1e-4  # near the identity around zero
