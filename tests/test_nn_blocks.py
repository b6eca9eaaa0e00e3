"""jedi_core.nn.blocks: the U-Net keeps its input's resolution and residual blocks start as the identity."""

import pytest
import torch

from jedi_core.nn.blocks import ResBlock, UNet


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
