"""Batched imagined rollouts for training the actor-critic inside the world model.

Each rollout starts from a real context of ``L`` frames sampled from the replay (recency-weighted, see
``replay.sample_contexts``), as in DIAMOND. The world model encodes it and warms up its reward model on the
context's transitions. The actor-critic's LSTM is warmed up on the first ``L - 1`` inputs and acts from
the last one. Then, for ``horizon`` steps, the policy samples an action, and the world model samples the next
latent (3 Euler steps), a reward and an end flag.

A rollout that ends restarts in place, as in DIAMOND: it goes on from a fresh real context (the world
model and the actor's LSTM warmed up on it like the first one), and every one of the B x H steps counts in
the loss; the lambda-returns stop at the end, so nothing after it leaks back. The fresh contexts are drawn
with the first ones and warmed up in the same batch, so a restart is a few ``torch.where``s and the host never
waits for the device (DIAMOND asks the device how many rollouts ended, at every step). Without them
(``actor_critic.after_end=mask``), the steps after an end are masked out of the loss instead. The world model
runs without gradient. The actor-critic keeps its gradient through time (BPTT over the horizon).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from jedi_core.config import ActorCriticConfig
from jedi_core.cuda_graphs import StaticUpdate
from jedi_core.nn.actor_critic import ActorCritic, lambda_returns, reinforce_loss
from jedi_core.nn.blocks import LSTMState
from jedi_core.nn.ops import masked_mean, sample_categorical
from jedi_core.optim import optimizer_step
from jedi_core.runtime import Logs
from jedi_core.world_model import ImaginationState, WorldModel

#: ``contexts(n)``: n real contexts to imagine from, (n, L, 3, H, W) frames and the (n, L - 1) actions.
ContextSampler = Callable[[int], tuple[Tensor, Tensor]]


@dataclass
class Rollout:
    """H imagined steps of B rollouts; logits and values keep their gradient."""

    logits: Tensor  # (B, H, A): of the policy the actions were drawn from (the actor's logits / temperature)
    values: Tensor  # (B, H)
    next_values: Tensor  # (B, H), detached: V of the state each step reached (unused where it ended)
    actions: Tensor  # (B, H)
    rewards: Tensor  # (B, H), in {-1, 0, 1}
    ends: Tensor  # (B, H), bool
    alive: Tensor  # (B, H), bool: no end before this step (the steps of the rollout's first episode)
    in_loss: Tensor  # (B, H), bool: the steps the loss averages over (all, where ended rollouts restarted)
    latents: Tensor  # (B, H + 1, C, h, w): the starting latent and every imagined one, for viewing


def imagine(world_model: WorldModel, actor_critic: ActorCritic, frames: Tensor, actions: Tensor, horizon: int,
            temperature: float = 1.0, generator: torch.Generator | None = None,
            restarts: tuple[Tensor, Tensor] | None = None, captured: bool = False) -> Rollout:
    """Roll the policy out for ``horizon`` steps inside the world model from the given real contexts.

    ``restarts`` (fresh contexts: R frame windows and their actions, shaped like ``frames`` and ``actions``):
    a rollout that ends goes on from the next of them, in order of the ends, cycling if more than R end.
    Without them, the steps after an end are left out of ``Rollout.in_loss``.

    The whole rollout, world model and policy, runs in one precision context: the world model's
    (``performance.precision``). Every network returns fp32, so the rollout's tensors are fp32 either way.
    ``captured``: the rollout is part of an update that a CUDA graph records whole, so its world-model steps
    are not graphs of their own.
    """
    with world_model.autocast(cache_enabled=not captured):
        return _imagine(world_model, actor_critic, frames, actions, horizon, temperature, generator, restarts,
                        step_graphs=not captured)


def _warm_up(world_model: WorldModel, actor_critic: ActorCritic, frames: Tensor, actions: Tensor
             ) -> tuple[ImaginationState, LSTMState]:
    """Encode the contexts, warm up the reward/end model on their transitions and the actor's LSTM on their
    frames before the last one (DIAMOND's burn-in); the actor then acts from the last one."""
    state = world_model.burn_in(frames, actions)
    hidden = actor_critic.initial_state(frames.shape[0], frames.device)
    with torch.no_grad():
        for step in range(state.latents.shape[1] - 1):
            _, _, hidden = actor_critic(state.latents[:, step], hidden)
    return state, hidden


def _imagine(world_model: WorldModel, actor_critic: ActorCritic, frames: Tensor, actions: Tensor,
             horizon: int, temperature: float, generator: torch.Generator | None,
             restarts: tuple[Tensor, Tensor] | None, step_graphs: bool) -> Rollout:
    batch = frames.shape[0]
    if restarts is None:
        state, hidden = _warm_up(world_model, actor_critic, frames, actions)
    else:  # one warm-up for the first contexts and the fresh ones
        both, both_hidden = _warm_up(world_model, actor_critic, torch.cat([frames, restarts[0]]),
                                     torch.cat([actions, restarts[1]]))
        state, fresh = both.rows(slice(None, batch)), both.rows(slice(batch, None))
        hidden = (both_hidden[0][:batch], both_hidden[1][:batch])
        fresh_hidden = (both_hidden[0][batch:], both_hidden[1][batch:])
        restarted_so_far = torch.zeros((), dtype=torch.long, device=frames.device)
    current = state.latents[:, -1]
    world_model_step = world_model.imagine_step
    if step_graphs:
        world_model_step = world_model.step_function(state, generator)
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
        current, reward, end, state = world_model_step(state, action, generator)
        logits.append(step_logits)
        values.append(value)
        taken.append(action)
        rewards.append(reward)
        ends.append(end)
        latents.append(current)
        if restarts is not None:
            # The k-th rollout to end (counting from the first step) takes fresh context k, cycling.
            slot = (restarted_so_far + torch.cumsum(end.long(), 0) - 1) % len(restarts[0])
            state = state.where(end, fresh.rows(slot))
            hidden = tuple(torch.where(end[:, None], warm[slot], mine)
                           for mine, warm in zip(hidden, fresh_hidden, strict=True))
            current = state.latents[:, -1]
            restarted_so_far = restarted_so_far + end.sum()
    with torch.no_grad():
        final_value = actor_critic(current, hidden)[1]
    values_t = torch.stack(values, dim=1)
    ends_t = torch.stack(ends, dim=1)
    ended_before = torch.cumsum(ends_t.int(), dim=1) - ends_t.int()
    alive = ended_before == 0
    return Rollout(logits=torch.stack(logits, dim=1), values=values_t,
                   next_values=torch.cat([values_t[:, 1:].detach(), final_value[:, None]], dim=1),
                   actions=torch.stack(taken, dim=1), rewards=torch.stack(rewards, dim=1), ends=ends_t,
                   alive=alive, in_loss=alive if restarts is None else torch.ones_like(alive),
                   latents=torch.stack(latents, dim=1))


def actor_critic_loss(rollout: Rollout, cfg: ActorCriticConfig) -> tuple[Tensor, dict[str, Tensor]]:
    """Lambda-returns on the imagined rewards (cut at each end), then REINFORCE with baseline over the steps
    in the loss (``Rollout.in_loss``)."""
    no_truncation = torch.zeros_like(rollout.ends)
    returns = lambda_returns(rollout.rewards, rollout.next_values, rollout.ends, no_truncation, cfg.gamma,
                             cfg.lambda_)
    in_loss = rollout.in_loss
    loss, logs = reinforce_loss(rollout.logits, rollout.values, rollout.actions, returns, cfg.entropy_weight,
                                cfg.value_weight, mask=in_loss)
    logs.update(imagined_reward=(rollout.rewards * in_loss).sum() / rollout.rewards.shape[0],
                imagined_end_rate=masked_mean(rollout.ends.float(), in_loss))
    return loss, logs


def actor_critic_training_step(world_model: WorldModel, actor_critic: ActorCritic, contexts: ContextSampler,
                               cfg: ActorCriticConfig, optimizer: torch.optim.Optimizer,
                               scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
                               check_finite: bool = True) -> Logs:
    """One actor-critic update: imagine from real contexts, lambda-returns, REINFORCE, then
    :func:`~jedi_core.optim.optimizer_step` (``check_finite`` as in :meth:`WorldModel.training_step`).

    ``contexts(n)`` draws n real contexts (``replay.sample_contexts``): ``actor_critic.batch_size`` to start
    from, and as many again to restart ended rollouts from (``actor_critic.after_end=restart``), in one draw.
    Returns the logs as 0-dim device tensors (``runtime.to_floats`` reads them).
    """
    world_model.eval()
    actor_critic.train()
    batch = cfg.batch_size
    frames, actions = contexts(2 * batch if cfg.after_end == "restart" else batch)
    clip_groups = {"grad_norm_actor_critic": (list(actor_critic.parameters()), cfg.grad_clip)}
    if world_model.cuda_graphs:  # the whole update, its imagined rollout included, replayed from a CUDA graph
        loss_fn = functools.partial(imagined_loss, world_model, actor_critic, cfg=cfg, captured=True)
        update = world_model.captured(("actor_critic", id(actor_critic), id(optimizer)), frames,
                                      lambda: StaticUpdate(loss_fn, optimizer, clip_groups))
        return update.step([frames, actions], optimizer, scheduler, check_finite)
    loss, logs = imagined_loss(world_model, actor_critic, frames, actions, cfg)
    return optimizer_step(loss, logs, optimizer, scheduler, clip_groups, check_finite)


def imagined_loss(world_model: WorldModel, actor_critic: ActorCritic, frames: Tensor, actions: Tensor,
                  cfg: ActorCriticConfig, captured: bool = False) -> tuple[Tensor, dict[str, Tensor]]:
    """The actor-critic's loss on a rollout imagined from ``frames`` and ``actions``: ``cfg.batch_size``
    contexts to start from, and with ``after_end=restart`` as many again to restart from."""
    batch = cfg.batch_size
    restarts = (frames[batch:], actions[batch:]) if cfg.after_end == "restart" else None
    rollout = imagine(world_model, actor_critic, frames[:batch], actions[:batch], cfg.horizon,
                      cfg.temperature, restarts=restarts, captured=captured)
    return actor_critic_loss(rollout, cfg)
