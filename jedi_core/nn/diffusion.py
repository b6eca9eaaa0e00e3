"""EDM diffusion (Karras et al. 2022) as DIAMOND uses it: preconditioning, noise levels, loss and sampler.

The denoiser ``D(x_noisy, sigma | context)`` is never a raw network. It is a *preconditioned* mix of the
noisy input and a network output ``F``::

    D = c_skip(sigma) * x_noisy + c_out(sigma) * F(c_in(sigma) * x_noisy, c_noise(sigma), context)

The conditioners keep the network's inputs and targets at unit variance at every noise level. DIAMOND's
*offset noise* (a per-channel constant added while training) is folded in as
``sigma' = sqrt(sigma^2 + sigma_offset^2)``. Training draws ``ln sigma ~ N(loc, scale)`` and regresses
``F`` onto the "F-target" ``(x_clean - c_skip * x_noisy) / c_out``. Sampling runs a few Euler steps down a
Karras schedule (JEDI: 3).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jedi_core.nn.blocks import Conv3x3, FourierFeatures, GroupNorm, UNet
from jedi_core.nn.ops import fp32_outputs, masked_mean


class EDMSettings(Protocol):
    """The EDM training constants this module reads (``jedi_core.config.EDMConfig`` is one)."""

    sigma_data: float
    sigma_offset_noise: float
    sigma_loc: float
    sigma_scale: float
    sigma_min: float
    sigma_max: float


class SamplerSettings(Protocol):
    """The sampler settings this module reads (``jedi_core.config.SamplerConfig`` is one)."""

    num_steps: int
    sigma_min: float
    sigma_max: float
    rho: float
    order: int
    s_churn: float
    s_tmin: float
    s_tmax: float
    s_noise: float
    init_noise: str


@dataclass
class Conditioners:
    """EDM scalings: per sample, shaped to broadcast over (B, C, H, W); or host floats for one noise level."""

    c_in: Tensor | float
    c_out: Tensor | float
    c_skip: Tensor | float
    c_noise: Tensor | float  # (B,) or a float: the network's noise-level input


def conditioners(sigma: Tensor | float, sigma_data: float, sigma_offset_noise: float) -> Conditioners:
    """EDM preconditioning with DIAMOND's offset noise folded into sigma.

    A float ``sigma`` (the sampler's: one level for the whole batch) gives host floats, which cost no kernel.
    """
    if not isinstance(sigma, Tensor):
        sigma = math.sqrt(sigma**2 + sigma_offset_noise**2)
        c_skip = sigma_data**2 / (sigma**2 + sigma_data**2)
        return Conditioners(c_in=1 / math.sqrt(sigma**2 + sigma_data**2), c_out=sigma * math.sqrt(c_skip),
                            c_skip=c_skip, c_noise=math.log(sigma) / 4)
    sigma = (sigma**2 + sigma_offset_noise**2).sqrt()
    c_in = 1 / (sigma**2 + sigma_data**2).sqrt()
    c_skip = sigma_data**2 / (sigma**2 + sigma_data**2)
    c_out = sigma * c_skip.sqrt()
    c_noise = sigma.log() / 4
    view = (-1, 1, 1, 1)
    return Conditioners(c_in.view(view), c_out.view(view), c_skip.view(view), c_noise)


def sample_sigma(batch_size: int, settings: EDMSettings, device: torch.device | str = "cpu",
                 generator: torch.Generator | None = None) -> Tensor:
    """Training noise levels: log-normal, clipped to the configured range."""
    normal = torch.randn(batch_size, device=device, generator=generator)
    sigma = (normal * settings.sigma_scale + settings.sigma_loc).exp()
    return sigma.clamp(settings.sigma_min, settings.sigma_max)


def add_noise(clean: Tensor, sigma: Tensor, sigma_offset_noise: float) -> Tensor:
    """``clean + offset * eps_c + sigma * eps``: eps_c is one constant per sample and channel."""
    offset = sigma_offset_noise * torch.randn(*clean.shape[:2], 1, 1, device=clean.device, dtype=clean.dtype)
    # randn, not randn_like: the same draws in any memory format (channels-last included).
    noise = torch.randn(clean.shape, device=clean.device, dtype=clean.dtype)
    return clean + offset + sigma.view(-1, 1, 1, 1) * noise


def f_target(clean: Tensor, noisy: Tensor, cs: Conditioners) -> Tensor:
    """What the network output F must equal for D to return the clean input exactly."""
    return (clean - cs.c_skip * noisy) / cs.c_out


def denoised_from_output(noisy: Tensor, network_output: Tensor, cs: Conditioners) -> Tensor:
    """D = c_skip * x_noisy + c_out * F (before any output transform such as a clamp)."""
    if isinstance(cs.c_out, float):  # the same sum, with the scalar c_out folded into the addition's kernel
        return torch.add(cs.c_skip * noisy, network_output, alpha=cs.c_out)
    return cs.c_skip * noisy + cs.c_out * network_output


# ----------------------------------------------------------------------------------------------
# Sampling


def karras_sigmas(num_steps: int, sigma_min: float, sigma_max: float, rho: float,
                  device: torch.device | str = "cpu") -> Tensor:
    """``num_steps`` decreasing noise levels from sigma_max to sigma_min, then a final 0."""
    if num_steps < 1:
        raise ValueError(f"the sampler needs at least one step, got {num_steps}")
    ramp = torch.linspace(0, 1, num_steps, device=device, dtype=torch.float64)
    inv_max, inv_min = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    sigmas = (inv_max + ramp * (inv_min - inv_max)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)]).float()


#: ``denoise(x_noisy, sigma) -> D``, with the context already bound in; ``sigma`` is a float, the noise level
#: of the whole batch.
DenoiseFn = Callable[[Tensor, float], Tensor]


@torch.no_grad()
def sample(denoise: DenoiseFn, shape: tuple[int, ...], settings: SamplerSettings, device: torch.device | str,
           generator: torch.Generator | None = None, return_trajectory: bool = False
           ) -> Tensor | tuple[Tensor, list[Tensor]]:
    """Run the sampler down the Karras schedule from noise; return the final sample.

    With ``init_noise="unit"`` (DIAMOND, the default) the start is ``randn`` with variance 1, *not*
    sigma_max^2: the model then leans on its context early on, which reduces autoregressive drift (DIAMOND
    issue #40), at the price of under-dispersed samples where the context says little.
    """
    # The schedule lives on the host as Python floats: comparing device tensors in ``if`` would make the
    # host wait for the GPU at every step (see jedi_core.runtime), and float scalings cost no kernel.
    sigmas = karras_sigmas(settings.num_steps, settings.sigma_min, settings.sigma_max, settings.rho).tolist()
    x = torch.randn(shape, device=device, generator=generator)
    if settings.init_noise == "sigma_max":
        x = x * settings.sigma_max
    trajectory = [x]
    gamma_max = min(settings.s_churn / settings.num_steps, 2**0.5 - 1)
    for sigma, next_sigma in zip(sigmas[:-1], sigmas[1:], strict=True):
        gamma = gamma_max if settings.s_tmin <= sigma <= settings.s_tmax else 0.0
        sigma_hat = sigma * (gamma + 1)
        if gamma > 0:
            eps = torch.randn(shape, device=device, generator=generator) * settings.s_noise
            x = x + eps * (sigma_hat**2 - sigma**2) ** 0.5
        denoised = denoise(x, sigma_hat)
        step = next_sigma - sigma_hat
        # x + derivative * step with derivative = (x - D) / sigma_hat: the scalar rides in the add's kernel.
        x_euler = torch.add(x, x - denoised, alpha=step / sigma_hat)
        if settings.order == 1 or next_sigma == 0:
            x = x_euler  # Euler (the last step, to sigma = 0, is always Euler)
        else:
            denoised_2 = denoise(x_euler, next_sigma)
            derivative = (x - denoised) / sigma_hat
            derivative_2 = (x_euler - denoised_2) / next_sigma
            x = x + (derivative + derivative_2) / 2 * step  # Heun
        trajectory.append(x)
    return (x, trajectory) if return_trajectory else x


# ----------------------------------------------------------------------------------------------
# The conditional network F and the preconditioned denoiser D


class DenoiserNet(nn.Module):
    """F(noisy next frame, noise level | last L frames, last L actions), DIAMOND's ``InnerModel``.

    The L context frames are stacked on channels with the noisy next frame; the actions are embedded
    and added to the Fourier embedding of the noise level, and that vector drives every AdaGroupNorm.
    """

    def __init__(self, frame_channels: int, context_length: int, num_actions: int, cond_channels: int,
                 depths: Sequence[int], channels: Sequence[int], attention: Sequence[bool]):
        super().__init__()
        self.noise_embedding = FourierFeatures(cond_channels)
        self.action_embedding = nn.Embedding(num_actions, cond_channels // context_length)
        self.cond_mlp = nn.Sequential(nn.Linear(cond_channels, cond_channels), nn.SiLU(),
                                      nn.Linear(cond_channels, cond_channels))
        self.conv_in = Conv3x3((context_length + 1) * frame_channels, channels[0])
        self.unet = UNet(cond_channels, depths, channels, attention)
        self.norm_out = GroupNorm(channels[0])
        self.conv_out = Conv3x3(channels[0], frame_channels)
        nn.init.zeros_(self.conv_out.weight)  # F = 0 at init: D starts as c_skip * x_noisy
        fp32_outputs(self)

    def forward(self, noisy: Tensor, c_noise: Tensor | float, context: Tensor, actions: Tensor) -> Tensor:
        """noisy (B, C, H, W), c_noise (B,) or one float, context (B, L, C, H, W), actions (B, L)
        -> (B, C, H, W)."""
        cond = self.cond_mlp(self.noise_embedding(c_noise) + self.action_embedding(actions).flatten(1))
        x = self.conv_in(torch.cat([context.flatten(1, 2), noisy], dim=1))
        return self.conv_out(F.silu(self.norm_out(self.unet(x, cond))))


class Denoiser(nn.Module):
    """EDM-preconditioned next-frame (or next-latent) denoiser with its training loss and sampler.

    ``output_transform`` maps D onto the space of real frames: JEDI's latent clamp ``3 tanh(z / 3)``,
    or DIAMOND's clamp to [-1, 1] and 8-bit quantisation.
    """

    def __init__(self, net: DenoiserNet, edm: EDMSettings, sampler: SamplerSettings,
                 output_transform: Callable[[Tensor], Tensor]):
        super().__init__()
        self.net = net
        self.edm = edm
        self.sampler = sampler
        self.output_transform = output_transform

    def conditioners(self, sigma: Tensor) -> Conditioners:
        return conditioners(sigma, self.edm.sigma_data, self.edm.sigma_offset_noise)

    def network_output(self, noisy: Tensor, cs: Conditioners, context: Tensor, actions: Tensor) -> Tensor:
        # Context frames are clean, so they are only rescaled by 1 / sigma_data (as in DIAMOND).
        return self.net(noisy * cs.c_in, cs.c_noise, context / self.edm.sigma_data, actions)

    def denoise(self, noisy: Tensor, sigma: Tensor | float, context: Tensor, actions: Tensor) -> Tensor:
        """D(x_noisy, sigma | context, actions), output transform applied; ``sigma`` (B,) or one float."""
        return self._denoise(noisy, sigma, context / self.edm.sigma_data, actions)

    def _denoise(self, noisy: Tensor, sigma: Tensor | float, scaled_context: Tensor, actions: Tensor
                 ) -> Tensor:
        cs = self.conditioners(sigma)
        output = self.net(noisy * cs.c_in, cs.c_noise, scaled_context, actions)
        return self.output_transform(denoised_from_output(noisy, output, cs))

    def loss(self, target: Tensor, context: Tensor, actions: Tensor, mask: Tensor | None = None
             ) -> tuple[Tensor, Tensor]:
        """F-target MSE at log-normal noise levels; also the one-shot prediction D (with its gradient).

        ``target`` is used as given: the caller decides whether it carries a gradient (stop-gradient).
        ``mask`` (B,) drops padded targets from the mean.
        """
        sigma = sample_sigma(target.shape[0], self.edm, target.device)
        noisy = add_noise(target, sigma, self.edm.sigma_offset_noise)
        cs = self.conditioners(sigma)
        output = self.network_output(noisy, cs, context, actions)
        errors = (output - f_target(target, noisy, cs)).pow(2).flatten(1).mean(1)
        loss = errors.mean() if mask is None else masked_mean(errors, mask)
        return loss, self.output_transform(denoised_from_output(noisy, output, cs))

    def sample_next(self, context: Tensor, actions: Tensor, generator: torch.Generator | None = None,
                    sampler: SamplerSettings | None = None) -> Tensor:
        """Sample the next frame/latent given (B, L, C, H, W) context and (B, L) actions."""
        shape = context.shape[:1] + context.shape[2:]
        scaled_context = context / self.edm.sigma_data  # once for all the sampler's steps
        return sample(lambda x, s: self._denoise(x, s, scaled_context, actions), shape,
                      sampler or self.sampler, context.device, generator)

    def sample_along(self, sequence: Tensor, actions: Tensor, context_length: int,
                     generator: torch.Generator | None = None) -> Tensor:
        """A one-step sample at every place of a sequence with a full context before it: ``sequence``
        (B, T+1, C, H, W) and ``actions`` (B, T) -> (B, T-L+1, C, H, W), the sample of sequence[t+1] from
        sequence[t-L+1 .. t] and actions[t-L+1 .. t] for t = L-1 .. T-1 (L = ``context_length``; none when
        T < L)."""
        batch, steps = actions.shape
        places = max(steps - context_length + 1, 0)
        if places == 0:
            return sequence.new_zeros(batch, 0, *sequence.shape[2:])
        # unfold puts each window's L entries last: (B, places, C, H, W, L) -> (B * places, L, C, H, W).
        contexts = sequence[:, :-1].unfold(1, context_length, 1).movedim(-1, 2).flatten(0, 1)
        context_actions = actions.unfold(1, context_length, 1).flatten(0, 1)
        return self.sample_next(contexts, context_actions, generator).unflatten(0, (batch, places))
