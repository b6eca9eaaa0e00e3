"""Building blocks shared by every network (the layout follows DIAMOND's ``blocks.py``).

* :class:`AdaGroupNorm`: group norm whose scale and shift come from a conditioning vector (noise level,
  actions): this is how the denoiser and the reward model are told *what* to predict.
* :class:`ResBlock`: AdaGN -> SiLU -> conv -> AdaGN -> SiLU -> conv (zero-initialised) + skip, with optional
  self-attention.
* :class:`UNet`: ADM-style U-Net. With one level it never downsamples: JEDI's 8x8 latent denoiser. With four
  levels (64 -> 32 -> 16 -> 8) it is DIAMOND's pixel denoiser. Same code, different numbers.
* :class:`ResEncoder`: the down half alone, for the reward/termination model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

GROUP_SIZE = 32  # channels per normalisation group (DIAMOND)
GROUP_NORM_EPS = 1e-5
ATTENTION_HEAD_DIM = 8


def _num_groups(channels: int) -> int:
    return max(1, channels // GROUP_SIZE)


class Conv3x3(nn.Conv2d):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, out_channels, kernel_size=3, padding=1)


class Conv1x1(nn.Conv2d):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, out_channels, kernel_size=1)


class GroupNorm(nn.GroupNorm):
    def __init__(self, channels: int):
        super().__init__(_num_groups(channels), channels, eps=GROUP_NORM_EPS)


class AdaGroupNorm(nn.Module):
    """Group norm without own affine; ``x * (1 + scale) + shift`` with (scale, shift) = Linear(cond).

    ``cond`` is the conditioning vector, or the :class:`Modulations` of the network this norm is part of
    (every norm's (1 + scale, shift) computed at once: the same function in fewer kernels).
    """

    def __init__(self, channels: int, cond_channels: int):
        super().__init__()
        self.num_groups = _num_groups(channels)
        self.linear = nn.Linear(cond_channels, 2 * channels)

    def forward(self, x: Tensor, cond: Tensor | Modulations) -> Tensor:
        x = F.group_norm(x, self.num_groups, eps=GROUP_NORM_EPS)
        if isinstance(cond, Modulations):
            one_plus_scale, shift = cond[self]
        else:
            scale, shift = self.linear(cond)[:, :, None, None].chunk(2, dim=1)
            one_plus_scale = 1 + scale
        return torch.addcmul(shift, x, one_plus_scale)


class Modulations:
    """Every :class:`AdaGroupNorm`'s ``(1 + scale, shift)`` in a network, from one matmul.

    A U-Net's norms all read the same conditioning vector, so their Linears stack into one: with ten norms
    that is one kernel instead of ten matmuls and ten additions of 1 (the 1 is folded into the stacked bias).
    Each norm's weights stay its own parameters, so checkpoints, weight decay and gradients are unchanged.
    """

    def __init__(self, norms: Sequence[AdaGroupNorm], scale_offsets: Tensor, cond: Tensor):
        weight = torch.cat([norm.linear.weight for norm in norms])
        bias = torch.cat([norm.linear.bias for norm in norms])
        stacked = F.linear(cond, weight, bias + scale_offsets)[:, :, None, None]
        self._parts: dict[int, tuple[Tensor, Tensor]] = {}
        start = 0
        for norm in norms:
            channels = norm.linear.out_features // 2
            self._parts[id(norm)] = (stacked[:, start: start + channels],
                                     stacked[:, start + channels: start + 2 * channels])
            start += 2 * channels

    def __getitem__(self, norm: AdaGroupNorm) -> tuple[Tensor, Tensor]:
        return self._parts[id(norm)]


def _modulated_norms(network: nn.Module) -> tuple[list[AdaGroupNorm], Tensor]:
    """The network's AdaGroupNorms in order, and the 1s to add to the scale halves of their stacked bias."""
    norms = [module for module in network.modules() if isinstance(module, AdaGroupNorm)]
    halves = [n.linear.out_features // 2 for n in norms]
    offsets = [torch.cat([torch.ones(half), torch.zeros(half)]) for half in halves]
    return norms, torch.cat(offsets) if offsets else torch.zeros(0)


class SelfAttention2d(nn.Module):
    """Multi-head self-attention over the pixels of a feature map: ``GN(x) + attention(GN(x))``.

    As in DIAMOND, the residual adds the attention to the *normalised* input, so the block renormalises the
    residual stream it sits in (the U-Net's middle, for instance). The output projection starts at zero.
    """

    def __init__(self, channels: int, head_dim: int = ATTENTION_HEAD_DIM):
        super().__init__()
        self.num_heads = max(1, channels // head_dim)
        self.norm = GroupNorm(channels)
        self.qkv = Conv1x1(channels, 3 * channels)
        self.out = Conv1x1(channels, channels)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        normed = self.norm(x)
        qkv = self.qkv(normed).view(n, 3, self.num_heads, c // self.num_heads, h * w)
        q, k, v = (t.transpose(-1, -2) for t in qkv.unbind(1))  # (n, heads, hw, head_dim)
        y = F.scaled_dot_product_attention(q, k, v)  # fused kernels on GPU
        return normed + self.out(y.transpose(-1, -2).reshape(n, c, h, w))


class FourierFeatures(nn.Module):
    """Embedding of a scalar (the noise level) through fixed random frequencies: [cos, sin](2 pi x w)."""

    def __init__(self, channels: int):
        super().__init__()
        if channels % 2:
            raise ValueError(f"FourierFeatures needs an even number of channels, got {channels}")
        self.register_buffer("weight", torch.randn(1, channels // 2))

    def forward(self, x: Tensor | float) -> Tensor:
        """(B,) levels -> (B, channels); one float (a level shared by the batch) -> (1, channels)."""
        if isinstance(x, Tensor):
            angles = 2 * math.pi * x[:, None] * self.weight
        else:
            angles = self.weight * (2 * math.pi * x)
        return torch.cat([angles.cos(), angles.sin()], dim=-1)


class ResBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, cond_channels: int, attention: bool):
        super().__init__()
        self.skip = Conv1x1(in_channels, out_channels) if in_channels != out_channels else nn.Identity()
        self.norm1 = AdaGroupNorm(in_channels, cond_channels)
        self.conv1 = Conv3x3(in_channels, out_channels)
        self.norm2 = AdaGroupNorm(out_channels, cond_channels)
        self.conv2 = Conv3x3(out_channels, out_channels)
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity: deep nets train from step one
        nn.init.zeros_(self.conv2.bias)
        self.attention = SelfAttention2d(out_channels) if attention else nn.Identity()

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        residual = self.skip(x)
        x = self.conv1(F.silu(self.norm1(x, cond)))
        x = self.conv2(F.silu(self.norm2(x, cond)))
        return self.attention(x + residual)


class ResBlocks(nn.Module):
    """A chain of ResBlocks; the up path concatenates one skip tensor before each block."""

    def __init__(self, in_channels: Sequence[int], out_channels: Sequence[int], cond_channels: int,
                 attention: bool):
        super().__init__()
        self.blocks = nn.ModuleList(ResBlock(i, o, cond_channels, attention)
                                    for i, o in zip(in_channels, out_channels, strict=True))

    def forward(self, x: Tensor, cond: Tensor, skips: Sequence[Tensor] | None = None
                ) -> tuple[Tensor, list[Tensor]]:
        outputs = []
        for index, block in enumerate(self.blocks):
            x = block(x if skips is None else torch.cat([x, skips[index]], dim=1), cond)
            outputs.append(x)
        return x, outputs


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=1)
        nn.init.orthogonal_(self.conv.weight)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = Conv3x3(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def _check_levels(depths: Sequence[int], channels: Sequence[int], attention: Sequence[bool]) -> None:
    if not (len(depths) == len(channels) == len(attention)) or not depths:
        raise ValueError(f"depths {tuple(depths)}, channels {tuple(channels)} and attention "
                         f"{tuple(attention)} must have one entry per level")


class UNet(nn.Module):
    """ADM-style U-Net: level ``i`` has ``depths[i]`` blocks of ``channels[i]``; 2x down/up between levels.

    The middle always has two ResBlocks with self-attention at the coarsest resolution.
    """

    def __init__(self, cond_channels: int, depths: Sequence[int], channels: Sequence[int],
                 attention: Sequence[bool]):
        super().__init__()
        _check_levels(depths, channels, attention)
        down, up = [], []
        for level, depth in enumerate(depths):
            previous, current = channels[max(0, level - 1)], channels[level]
            down.append(ResBlocks([previous] + [current] * (depth - 1), [current] * depth, cond_channels,
                                  attention[level]))
            # One more block than on the way down: the skips include the level's (downsampled) input.
            up.append(ResBlocks([2 * current] * depth + [previous + current], [current] * depth + [previous],
                                cond_channels, attention[level]))
        self.down_blocks = nn.ModuleList(down)
        self.up_blocks = nn.ModuleList(reversed(up))
        self.mid_blocks = ResBlocks([channels[-1]] * 2, [channels[-1]] * 2, cond_channels, attention=True)
        self.downsamples = nn.ModuleList([nn.Identity()] + [Downsample(c) for c in channels[:-1]])
        self.upsamples = nn.ModuleList([nn.Identity()] + [Upsample(c) for c in reversed(channels[:-1])])
        self.multiple = 2 ** (len(depths) - 1)
        self.norms, offsets = _modulated_norms(self)
        self.register_buffer("modulation_offsets", offsets, persistent=False)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        cond = Modulations(self.norms, self.modulation_offsets, cond)
        *_, height, width = x.shape
        pad_h, pad_w = -height % self.multiple, -width % self.multiple
        x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        skips = []
        for block, downsample in zip(self.down_blocks, self.downsamples, strict=True):
            x_down = downsample(x)
            x, outputs = block(x_down, cond)
            skips.append([x_down, *outputs])
        x, _ = self.mid_blocks(x, cond)
        for block, upsample, level_skips in zip(self.up_blocks, self.upsamples, reversed(skips), strict=True):
            x, _ = block(upsample(x), cond, level_skips[::-1])
        return x[..., pad_h // 2: pad_h // 2 + height, pad_w // 2: pad_w // 2 + width]


class ResEncoder(nn.Module):
    """The down half of the U-Net plus its attention middle: a conditioned feature extractor."""

    def __init__(self, cond_channels: int, depths: Sequence[int], channels: Sequence[int],
                 attention: Sequence[bool]):
        super().__init__()
        _check_levels(depths, channels, attention)
        self.levels = nn.ModuleList(
            ResBlocks([channels[max(0, i - 1)]] + [channels[i]] * (d - 1), [channels[i]] * d, cond_channels,
                      attention[i]) for i, d in enumerate(depths))
        self.downsamples = nn.ModuleList([nn.Identity()] + [Downsample(c) for c in channels[:-1]])
        self.mid_blocks = ResBlocks([channels[-1]] * 2, [channels[-1]] * 2, cond_channels, attention=True)
        self.norms, offsets = _modulated_norms(self)
        self.register_buffer("modulation_offsets", offsets, persistent=False)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        cond = Modulations(self.norms, self.modulation_offsets, cond)
        for level, downsample in zip(self.levels, self.downsamples, strict=True):
            x, _ = level(downsample(x), cond)
        return self.mid_blocks(x, cond)[0]


class SmallResBlock(nn.Module):
    """GN -> SiLU -> conv plus a (projected) skip: the unconditioned block of encoders and actor-critics."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.norm = GroupNorm(in_channels)
        self.conv = Conv3x3(in_channels, out_channels)
        self.skip = Conv1x1(in_channels, out_channels) if in_channels != out_channels else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.skip(x) + self.conv(F.silu(self.norm(x)))


def conv_stem(in_channels: int, channels: Sequence[int], downsample: Sequence[int]) -> list[nn.Module]:
    """Conv3x3, then one SmallResBlock per stage, with 2x max-pooling after the stages marked 1."""
    layers: list[nn.Module] = [Conv3x3(in_channels, channels[0])]
    previous = channels[0]
    for out_channels, down in zip(channels, downsample, strict=True):
        layers.append(SmallResBlock(previous, out_channels))
        if down:
            layers.append(nn.MaxPool2d(2))
        previous = out_channels
    return layers


#: An LSTM's (hidden, cell) state, as nn.LSTM and nn.LSTMCell pass it around.
LSTMState = tuple[Tensor, Tensor]


def init_lstm(lstm: nn.LSTM | nn.LSTMCell) -> None:
    """DIAMOND's LSTM init: Xavier input weights, orthogonal recurrent weights, forget-gate bias 1."""
    for name, parameter in lstm.named_parameters():
        if "weight_ih" in name:
            nn.init.xavier_uniform_(parameter)
        elif "weight_hh" in name:
            nn.init.orthogonal_(parameter)
        elif "bias" in name:
            nn.init.zeros_(parameter)
            if "bias_ih" in name:  # the gates' order is input, forget, cell, output
                hidden = parameter.numel() // 4
                parameter.data[hidden: 2 * hidden] = 1.0
