import pytest
import torch

from jedi_core.config import make_config
from jedi_core.nn.blocks import ResBlock, UNet
from jedi_core.nn.encoder import LatentEncoder
from jedi_core.world_model import build_world_model


@pytest.mark.parametrize("channels, depths, size", [((32,), (2,), 8), ((16, 16, 16, 16), (1, 1, 1, 1), 64),
                                                    ((16, 16), (1, 1), 10)])
def test_unet_keeps_the_input_resolution(channels, depths, size):
    unet = UNet(cond_channels=8, depths=depths, channels=channels, attention=[False] * len(depths))
    x = torch.randn(2, channels[0], size, size)
    assert unet(x, torch.randn(2, 8)).shape == x.shape


def test_residual_blocks_start_as_the_identity():
    block = ResBlock(16, 16, cond_channels=8, attention=True)
    x = torch.randn(2, 16, 8, 8)
    torch.testing.assert_close(block(x, torch.randn(2, 8)), x)


def test_encoder_maps_frames_to_16x8x8_latents():
    encoder = LatentEncoder(channels=(32, 32, 32, 16), downsample=(1, 1, 1, 0), clamp=3.0)
    latents = encoder(torch.rand(2, 5, 3, 64, 64) * 2 - 1)
    assert latents.shape == (2, 5, 16, 8, 8)


def test_parameter_counts_match_diamond_and_the_paper_scale():
    # DIAMOND's own counts, from its code (reference/diamond-codebase.md): denoiser 4.41M, reward/end 5.90M.
    pixel = build_world_model(make_config("diamond"), num_actions=18).parameter_counts()
    assert pixel["denoiser"] == pytest.approx(4.41e6, rel=0.01)
    assert pixel["reward_end"] == pytest.approx(5.90e6, rel=0.01)
    latent = build_world_model(make_config("atari100k"), num_actions=18).parameter_counts()
    assert latent["encoder"] == pytest.approx(34e3, rel=0.05)  # [32, 32, 32, 16] SmallResBlocks
    assert 4e6 < latent["denoiser"] < 8e6  # one 160-channel level on 8x8 latents
