"""The fast path: bf16 autocast and ``torch.compile``, and a check that they leave the model's outputs intact.

Neither changes the model, the schedule or any code path the CPU runs; both are switched by the config
section ``performance`` (DESIGN §6):

* ``precision=bf16``: the forward passes run under autocast (:meth:`WorldModel.autocast`). Weights,
  optimiser state, losses and the imagined latents stay fp32.
* ``compile=MODE``: the three networks that run at every imagined step (the denoiser's U-Net, the
  reward/end model's conv tower, the actor-critic) are compiled in place with ``torch.compile(mode=MODE)``.
  ``reduce-overhead`` also captures CUDA graphs, which removes the kernel-launch cost that dominates
  JEDI's small 8x8 latent U-Net. ``Module.compile`` keeps the parameter names, so checkpoints are the
  same with and without it.

:func:`output_deviation` measures how far the fast path's outputs move from fp32 eager ones; the tests run
it on the CPU and ``benchmarks/precision_check.py`` on a GPU.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import Tensor, nn

from jedi_core.data import TorchBatch
from jedi_core.imagination import imagine


def compiled_modules(agent: nn.Module) -> dict[str, nn.Module]:
    """The networks the fast path compiles, by name: the ones called at every imagined step."""
    world_model = agent.world_model
    # The reward/end model's conv tower, not its LSTM: Dynamo does not trace nn.LSTM (one cuDNN call anyway).
    return {"world_model.denoiser.net": world_model.denoiser.net,
            "world_model.reward_end.encoder": world_model.reward_end.encoder, "actor_critic": agent.actor_critic}


def compile_agent(agent: nn.Module, mode: str, backend: str = "inductor") -> list[str]:
    """Compile the per-step networks of ``agent`` in place; returns their names (none for ``mode="off"``).

    ``backend="aot_eager"`` traces and checks the graphs without generating kernels (what the CPU tests use).
    """
    if mode == "off":
        return []
    modules = compiled_modules(agent)
    for module in modules.values():
        module.compile(mode=None if mode == "default" or backend != "inductor" else mode, backend=backend)
    return list(modules)


def relative_error(reference: Tensor, other: Tensor) -> float:
    """``||other - reference|| / ||reference||`` over all elements, in fp32."""
    reference, other = reference.detach().float(), other.detach().float()
    return ((other - reference).norm() / reference.norm().clamp(min=1e-12)).item()


def output_deviation(agent: nn.Module, batch: TorchBatch, contexts: tuple[Tensor, Tensor],
                     fast: Callable[[nn.Module], None], seed: int = 0) -> dict[str, float]:
    """Relative errors of a fast copy of ``agent`` (``fast`` switches it on) against the fp32 eager agent.

    Compared with the same weights and the same random draws: the world-model loss on ``batch``, the
    denoiser's output D on the batch's last frames, and one imagined step from ``contexts`` (next latent and
    the actor-critic's logits).
    """
    fast_agent = copy.deepcopy(agent)
    fast(fast_agent)
    results = []
    for model in (agent, fast_agent):
        world_model, actor_critic = model.world_model, model.actor_critic
        world_model.eval()
        with torch.no_grad():
            torch.manual_seed(seed)
            with world_model.autocast():
                loss, _ = world_model(batch)
                latents = world_model.encode(batch.obs[:, -world_model.context_length - 1:]).float()
                sigma = torch.full((latents.shape[0],), 1.0, device=latents.device)
                noisy = latents[:, -1] + torch.randn_like(latents[:, -1])
                denoised = world_model.denoiser.denoise(noisy, sigma, latents[:, :-1],
                                                        batch.actions[:, -world_model.context_length:])
            generator = torch.Generator(latents.device).manual_seed(seed)
            rollout = imagine(world_model, actor_critic, *contexts, horizon=1, generator=generator)
        results.append({"loss": loss, "denoised": denoised.float(), "imagined_latent": rollout.latents[:, -1],
                        "policy_logits": rollout.logits[:, 0]})
    reference, other = results
    return {key: relative_error(reference[key], other[key]) for key in reference}
