"""jedi_core.nn.blocks: the U-Net keeps its input's resolution, residual blocks start as the identity (or as
DIAMOND's normalising attention), and the attention block computes GN(x) + attention(GN(x))."""

import math

import pytest
import torch
import torch.nn.functional as F

from jedi_core.nn.blocks import ResBlock, SelfAttention2d, UNet, init_lstm


@pytest.mark.parametrize("channels, depths, size", [((32,), (2,), 8), ((16, 16, 16, 16), (1, 1, 1, 1), 64),
                                                    ((16, 16), (1, 1), 10)])
def test_unet_keeps_the_input_resolution(channels, depths, size):
    unet = UNet(cond_channels=8, depths=depths, channels=channels, attention=[False] * len(depths))
    x = torch.randn(2, channels[0], size, size)
    assert unet(x, torch.randn(2, 8)).shape == x.shape


def test_residual_blocks_start_as_the_identity():
    block = ResBlock(16, 16, cond_channels=8, attention=False)
    x = torch.randn(2, 16, 8, 8)
    torch.testing.assert_close(block(x, torch.randn(2, 8)), x)


def test_a_residual_block_with_attention_starts_by_normalising_its_input():
    """DIAMOND's attention adds to GN(x): with its zero-initialised output the block starts as GN(x)."""
    block = ResBlock(16, 16, cond_channels=8, attention=True)
    x = torch.randn(2, 16, 8, 8) * 3 + 1
    expected = F.group_norm(x, block.attention.norm.num_groups, eps=block.attention.norm.eps)
    torch.testing.assert_close(block(x, torch.randn(2, 8)), expected)


def _attention_reference(block: SelfAttention2d, x: torch.Tensor) -> torch.Tensor:
    """Written from the formula: per head, softmax(q k^T / sqrt(d)) v on GN(x), projected, added to GN(x)."""
    n, c, h, w = x.shape
    heads = block.num_heads
    d = c // heads
    normed = F.group_norm(x, block.norm.num_groups, block.norm.weight, block.norm.bias, block.norm.eps)
    pixels = normed.flatten(2)  # (n, c, hw)
    qkv = torch.einsum("oc,ncp->nop", block.qkv.weight[:, :, 0, 0], pixels) + block.qkv.bias[None, :, None]
    q, k, v = qkv.view(n, 3, heads, d, h * w).unbind(1)  # (n, heads, d, hw)
    attention = torch.softmax(torch.einsum("nhdp,nhdq->nhpq", q, k) / math.sqrt(d), dim=-1)
    mixed = torch.einsum("nhpq,nhdq->nhdp", attention, v).reshape(n, c, h * w)
    out = torch.einsum("oc,ncp->nop", block.out.weight[:, :, 0, 0], mixed) + block.out.bias[None, :, None]
    return normed + out.view(n, c, h, w)


def test_the_attention_block_matches_its_formula():
    torch.manual_seed(0)
    block = SelfAttention2d(32, head_dim=8)
    torch.nn.init.normal_(block.out.weight, std=0.2)  # leave zero-init: the attention term must show
    torch.nn.init.normal_(block.norm.weight, mean=1.0, std=0.1)
    x = torch.randn(2, 32, 6, 6) * 2 + 0.5
    reference = _attention_reference(block, x)
    torch.testing.assert_close(block(x), reference, atol=1e-5, rtol=1e-5)
    normed = F.group_norm(x, block.norm.num_groups, block.norm.weight, block.norm.bias, block.norm.eps)
    residual_on_x = x + (reference - normed)  # the attention added to x instead (not DIAMOND's block)
    assert not torch.allclose(block(x), residual_on_x, atol=1e-3)


@pytest.mark.parametrize("lstm", [torch.nn.LSTMCell(6, 4), torch.nn.LSTM(6, 4, batch_first=True)])
def test_lstm_init_is_diamonds_forget_bias_one_on_the_input_bias(lstm):
    init_lstm(lstm)
    params = dict(lstm.named_parameters())
    bias_ih = next(p for name, p in params.items() if name.startswith("bias_ih"))
    bias_hh = next(p for name, p in params.items() if name.startswith("bias_hh"))
    weight_hh = next(p for name, p in params.items() if name.startswith("weight_hh"))
    # The gates are ordered input, forget, cell, output: only the forget gate starts open.
    assert bias_ih.tolist() == [0.0] * 4 + [1.0] * 4 + [0.0] * 8
    assert bias_hh.abs().sum() == 0
    torch.testing.assert_close(weight_hh.T @ weight_hh, torch.eye(4))  # orthogonal columns
