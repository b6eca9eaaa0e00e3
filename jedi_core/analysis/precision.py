"""How far the fast path (bf16 autocast, ``torch.compile``, channels-last) moves the outputs from fp32 eager.

:func:`output_deviation` compares two agents with the same weights and the same random draws: the tests
run it on the CPU, ``benchmarks/precision_check.py`` on a GPU at a preset's real size.
"""

from __future__ import annotations

import torch
from torch import Tensor

from jedi_core.agent import Agent
from jedi_core.configlib import apply_overrides
from jedi_core.imagination import imagine
from jedi_core.replay import TorchBatch
from jedi_core.runtime import autocast, use_channels_last


def fast_copy(agent: Agent, precision: str = "fp32", compile_mode: str = "off", backend: str = "inductor",
              channels_last: str = "off") -> Agent:
    """A new agent with ``agent``'s weights, built with ``performance.precision``, ``channels_last`` and
    compiled with ``performance.compile`` as a run with those settings would be (``backend="aot_eager"`` on
    a CPU)."""
    cfg = apply_overrides(agent.cfg, [f"performance.precision={precision}",
                                      f"performance.compile={compile_mode}",
                                      f"performance.channels_last={channels_last}"])
    fast = Agent(cfg, agent.num_actions).to(agent.device)
    use_channels_last(fast, channels_last, agent.device)
    fast.load_state_dict(agent.state_dict())
    fast.compile_per_step_networks(compile_mode, backend)
    return fast


def relative_error(reference: Tensor, other: Tensor) -> float:
    """``||other - reference|| / ||reference||`` over all elements, in fp32."""
    reference = reference.detach().float()
    other = other.detach().float()
    return ((other - reference).norm() / reference.norm().clamp(min=1e-12)).item()


def output_deviation(reference: Agent, fast: Agent, batch: TorchBatch, contexts: tuple[Tensor, Tensor],
                     seed: int = 0) -> dict[str, float]:
    """Relative errors of ``fast`` (same weights, built with the fast settings) against ``reference``.

    Compared with the same random draws: the diffusion loss on ``batch`` (a diffusion window), the denoiser's
    output D on its last frame, and one imagined step from ``contexts`` (next latent and the actor-critic's
    logits).
    """
    results = [_outputs(agent, batch, contexts, seed) for agent in (reference, fast)]
    return {key: relative_error(results[0][key], results[1][key]) for key in results[0]}


@torch.no_grad()
def _outputs(agent: Agent, batch: TorchBatch, contexts: tuple[Tensor, Tensor],
             seed: int) -> dict[str, Tensor]:
    world_model = agent.world_model
    world_model.eval()
    torch.manual_seed(seed)
    length = world_model.context_length
    with autocast(batch.obs.device, agent.cfg.performance.precision):
        loss, _ = world_model.diffusion_loss(batch)
        latents = world_model.encode(batch.obs[:, -length - 1:])
        sigma = torch.full((latents.shape[0],), 1.0, device=latents.device)
        noisy = latents[:, -1] + torch.randn(latents[:, -1].shape, device=latents.device)  # any memory format
        denoised = world_model.denoiser.denoise(noisy, sigma, latents[:, :-1], batch.actions[:, -length:])
    generator = torch.Generator(latents.device).manual_seed(seed)
    with autocast(batch.obs.device, agent.cfg.performance.precision):
        rollout = imagine(world_model, agent.actor_critic, *contexts, horizon=1, generator=generator)
    return {"loss": loss, "denoised": denoised, "imagined_latent": rollout.latents[:, -1],
            "policy_logits": rollout.logits[:, 0]}
