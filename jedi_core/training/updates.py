"""Algorithm 1's three updates as a run makes them, sped up from the outside (``performance.*``).

The model code knows nothing of this: each update is a plain :class:`~jedi_core.optim.Update` (a loss, its
optimisers, its clip groups), and here its loss runs under the run's precision (bf16 autocast or fp32) and,
with ``performance.cuda_graphs``, the whole update is replayed from a CUDA graph
(:class:`~jedi_core.cuda_graphs.StaticUpdate`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from jedi_core.agent import Agent
from jedi_core.config import Config, PerformanceConfig
from jedi_core.cuda_graphs import StaticUpdate
from jedi_core.imagination import Imagination, actor_critic_update
from jedi_core.optim import OptimizerAndSchedule, Update
from jedi_core.replay import ReplayBuffer, sample_contexts, sample_diffusion_batch, sample_reward_end_batch
from jedi_core.runtime import Logs, autocast


@dataclass
class Updates:
    """One call of each runs one update and returns its logs as 0-dim device tensors."""

    diffusion: Callable[..., Logs]  # (TorchBatch fields...) -> logs
    reward_end: Callable[..., Logs]  # (TorchBatch fields...) -> logs
    actor_critic: Callable[..., Logs]  # (fresh context frames, their actions) -> logs
    imagination: Imagination  # the rollouts the actor-critic's updates carry on


def make_updates(agent: Agent, world_model_optimizers: dict[str, OptimizerAndSchedule],
                 actor_critic_optimizer: OptimizerAndSchedule, performance: PerformanceConfig) -> Updates:
    """The agent's three updates at ``performance.precision``, each in a CUDA graph with ``cuda_graphs``."""
    ac_cfg = agent.cfg.actor_critic
    imagination = Imagination(ac_cfg.batch_size, ac_cfg.horizon, ac_cfg.temperature)
    world_model = agent.world_model
    updates = [world_model.diffusion_update(world_model_optimizers),
               world_model.reward_end_update(world_model_optimizers),
               actor_critic_update(imagination, world_model, agent.actor_critic, ac_cfg,
                                   actor_critic_optimizer)]
    # A graph cannot hold autocast's cache of bf16 weights (PyTorch's rule).
    context = functools.partial(autocast, agent.device, performance.precision,
                                cache_enabled=not performance.cuda_graphs)
    fast: list[Callable[..., Logs]] = []
    for update in updates:
        update = Update(update.loss_fn, update.optimizers, update.clip_groups, context)
        fast.append(StaticUpdate(update) if performance.cuda_graphs else update)
    return Updates(*fast, imagination=imagination)


def draw_inputs(kind: str, cfg: Config, replay: ReplayBuffer, rng: np.random.Generator,
                device: torch.device | str) -> tuple:
    """The inputs of one update of ``kind`` (``diffusion``, ``reward_end`` or ``actor_critic``), drawn
    recency-weighted from the replay: a batch of windows for a world-model update; for an actor-critic update,
    twice its batch of real contexts to start and restart rollouts from."""
    if kind == "actor_critic":
        context_length = cfg.world_model.denoiser.context_length
        return sample_contexts(replay, 2 * cfg.actor_critic.batch_size, context_length, rng,
                               cfg.replay.sample_weights, device)
    sample = {"diffusion": sample_diffusion_batch, "reward_end": sample_reward_end_batch}[kind]
    return (sample(replay, cfg.world_model, rng, cfg.replay.sample_weights).to_torch(device),)
