"""Batched imagined rollouts for training the actor-critic inside the world model.

Each rollout starts from a real context of ``L`` frames sampled from the replay (recency-weighted, see
``replay.sample_contexts``), as in DIAMOND. The world model encodes it and warms up its reward model on the
context's transitions. The actor-critic's LSTM is warmed up on the first ``L - 1`` inputs and acts from
the last one. Then, for
``horizon`` steps, the policy samples an action, and the world model samples the next latent (3 Euler steps),
a reward and an end flag.

A rollout that ends is not reset in place: the steps after its end are masked out of the loss. This is
simpler than DIAMOND's in-place resets, and it is equivalent in expectation, because every update starts
fresh rollouts anyway (horizon = the update's chunk length). The world model runs without gradient. The
actor-critic keeps its gradient through time (BPTT over the horizon).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from jedi_core.config import ActorCriticConfig
from jedi_core.nn.actor_critic import ActorCritic, lambda_returns, reinforce_loss
from jedi_core.nn.ops import masked_mean, sample_categorical
from jedi_core.optim import optimizer_step
from jedi_core.runtime import Logs
from jedi_core.world_model import WorldModel


@dataclass
class Rollout:
    """H imagined steps of B rollouts; logits and values keep their gradient."""

    logits: Tensor  # (B, H, A): of the policy the actions were drawn from (the actor's logits / temperature)
    values: Tensor  # (B, H)
    next_values: Tensor  # (B, H), detached: V of the state each step reached
    actions: Tensor  # (B, H)
    rewards: Tensor  # (B, H), in {-1, 0, 1}
    ends: Tensor  # (B, H), bool
    alive: Tensor  # (B, H), bool: no end before this step
    latents: Tensor  # (B, H + 1, C, h, w): the starting latent and every imagined one, for viewing


def imagine(world_model: WorldModel, actor_critic: ActorCritic, frames: Tensor, actions: Tensor, horizon: int,
            temperature: float = 1.0, generator: torch.Generator | None = None) -> Rollout:
    """Roll the policy out for ``horizon`` steps inside the world model from the given real contexts.

    The whole rollout, world model and policy, runs in one precision context: the world model's
    (``performance.precision``). Every network returns fp32, so the rollout's tensors are fp32 either way.
    """
    with world_model.autocast():
        return _imagine(world_model, actor_critic, frames, actions, horizon, temperature, generator)


def _imagine(world_model: WorldModel, actor_critic: ActorCritic, frames: Tensor, actions: Tensor,
             horizon: int, temperature: float, generator: torch.Generator | None) -> Rollout:
    state = world_model.burn_in(frames, actions)
    batch = frames.shape[0]
    hidden = actor_critic.initial_state(batch, frames.device)
    with torch.no_grad():
        for step in range(state.latents.shape[1] - 1):  # burn-in on the context before its last frame
            _, _, hidden = actor_critic(state.latents[:, step], hidden)
    current = state.latents[:, -1]
    logits = []
    values = []
    taken = []
    rewards = []
    ends = []
    latents = [current]
    for _ in range(horizon):
        step_logits, value, hidden = actor_critic(current, hidden)
        if temperature != 1.0:  # a host float: at the default no extra kernel runs in this hot loop
            # REINFORCE needs the log-probabilities of the policy that drew the actions: the tempered one.
            step_logits = step_logits / temperature
        action = sample_categorical(step_logits.detach().softmax(-1), generator)
        current, reward, end, state = world_model.imagine_step(state, action, generator)
        logits.append(step_logits)
        values.append(value)
        taken.append(action)
        rewards.append(reward)
        ends.append(end)
        latents.append(current)
    with torch.no_grad():
        final_value = actor_critic(current, hidden)[1]
    values_t = torch.stack(values, dim=1)
    ends_t = torch.stack(ends, dim=1)
    ended_before = torch.cumsum(ends_t.int(), dim=1) - ends_t.int()
    return Rollout(logits=torch.stack(logits, dim=1), values=values_t,
                   next_values=torch.cat([values_t[:, 1:].detach(), final_value[:, None]], dim=1),
                   actions=torch.stack(taken, dim=1), rewards=torch.stack(rewards, dim=1), ends=ends_t,
                   alive=ended_before == 0, latents=torch.stack(latents, dim=1))


def actor_critic_loss(rollout: Rollout, cfg: ActorCriticConfig) -> tuple[Tensor, dict[str, Tensor]]:
    """Lambda-returns on the imagined rewards, then REINFORCE with baseline over the steps still alive."""
    no_truncation = torch.zeros_like(rollout.ends)
    returns = lambda_returns(rollout.rewards, rollout.next_values, rollout.ends, no_truncation, cfg.gamma,
                             cfg.lambda_)
    alive = rollout.alive
    loss, logs = reinforce_loss(rollout.logits, rollout.values, rollout.actions, returns, cfg.entropy_weight,
                                cfg.value_weight, mask=alive)
    logs.update(imagined_reward=(rollout.rewards * alive).sum() / rollout.rewards.shape[0],
                imagined_end_rate=masked_mean(rollout.ends.float(), alive))
    return loss, logs


def actor_critic_training_step(world_model: WorldModel, actor_critic: ActorCritic, frames: Tensor,
                               actions: Tensor, cfg: ActorCriticConfig, optimizer: torch.optim.Optimizer,
                               scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
                               check_finite: bool = True) -> Logs:
    """One actor-critic update: imagine from the given real contexts, lambda-returns, REINFORCE, then
    :func:`~jedi_core.optim.optimizer_step` (``check_finite`` as in :meth:`WorldModel.training_step`).

    Returns the logs as 0-dim device tensors (``runtime.to_floats`` reads them).
    """
    world_model.eval()
    actor_critic.train()
    rollout = imagine(world_model, actor_critic, frames, actions, cfg.horizon, cfg.temperature)
    loss, logs = actor_critic_loss(rollout, cfg)
    clip_groups = {"grad_norm_actor_critic": (list(actor_critic.parameters()), cfg.grad_clip)}
    return optimizer_step(loss, logs, optimizer, scheduler, clip_groups, check_finite)
