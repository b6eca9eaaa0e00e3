"""Imagined rollouts, and the actor-critic's update on them (DIAMOND's ``WorldModelEnv`` and env loop).

A rollout starts from a real context of ``L`` frames sampled from the replay (recency-weighted, see
``replay.sample_contexts``). The world model encodes it and warms up its reward model on the context's
transitions; the actor-critic's LSTM is warmed up on the first ``L - 1`` inputs and acts from the last one.
Then, step by step, the policy samples an action, and the world model samples the next latent (3 Euler
steps), a reward and an end flag. The world model runs without gradient; the actor-critic keeps its gradient
through time (BPTT over the update's steps).

Training (:class:`Imagination`) keeps ``batch_size`` rollouts going across updates, as DIAMOND does: each
update imagines ``horizon`` more steps of each, carrying the world model's and the actor's memory over
(detached). A rollout that ends, or reaches ``horizon`` steps since its start (a truncation, bootstrapped
by the value), restarts in place from a fresh real context, its burn-in with gradient on; every step of
every rollout is in the loss. The fresh contexts are drawn and warmed up in one batch at the start of the
update, so a restart is a few ``torch.where``s and the host never waits for the device (DIAMOND asks the
device how many rollouts ended, at every step).

:func:`imagine` rolls the policy out once from given contexts, for looking at: no restart, a rollout goes on
past its end (``Rollout.alive`` marks the steps before it).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from jedi_core.config import ActorCriticConfig
from jedi_core.nn.actor_critic import ActorCritic, lambda_returns, reinforce_loss
from jedi_core.nn.blocks import LSTMState
from jedi_core.nn.ops import sample_categorical
from jedi_core.optim import OptimizerAndSchedule, Update
from jedi_core.world_model import ImaginationState, WorldModel

#: ``contexts(n)``: n real contexts to imagine from, (n, L, 3, H, W) frames and the (n, L - 1) actions.
ContextSampler = Callable[[int], tuple[Tensor, Tensor]]
#: What a rollout calls at each step: ``WorldModel.imagine_step``, or a replay of it (``cuda_graphs``).
WorldModelStep = Callable[..., tuple[Tensor, Tensor, Tensor, ImaginationState]]


@dataclass
class Rollout:
    """H imagined steps of B rollouts; logits and values keep their gradient."""

    logits: Tensor  # (B, H, A): of the policy the actions were drawn from (the actor's logits / temperature)
    values: Tensor  # (B, H)
    next_values: Tensor  # (B, H), detached: V of the state each step reached, before any restart
    actions: Tensor  # (B, H)
    rewards: Tensor  # (B, H), in {-1, 0, 1}
    ends: Tensor  # (B, H), bool
    truncations: Tensor  # (B, H), bool: the rollout reached its horizon there, and restarted
    latents: Tensor  # (B, H + 1, C, h, w): the latent each step acted on, then the one the last step reached

    @property
    def alive(self) -> Tensor:
        """(B, H) bool: no end before this step (the steps of each rollout's first episode)."""
        ends = self.ends.int()
        return torch.cumsum(ends, dim=1) - ends == 0


@dataclass
class _Fresh:
    """Warmed-up real contexts to (re)start rollouts from: the world model's state, the actor's LSTM state
    before it reads the last frame, and what it outputs on that frame (with gradient)."""

    state: ImaginationState
    hidden: LSTMState
    output: tuple[Tensor, Tensor, LSTMState]


def _warm_up(world_model: WorldModel, actor_critic: ActorCritic, frames: Tensor, actions: Tensor) -> _Fresh:
    """Encode the contexts and warm up the reward/end model on their transitions (no gradient), and the
    actor's LSTM on their frames before the last one, with gradient (DIAMOND's burn-in); then the actor's
    output on the last frame."""
    state = world_model.burn_in(frames, actions)
    hidden = actor_critic.initial_state(frames.shape[0], frames.device)
    for step in range(state.latents.shape[1] - 1):
        hidden = actor_critic(state.latents[:, step], hidden)[2]
    return _Fresh(state, hidden, actor_critic(state.latents[:, -1], hidden))


def _rollout(world_model: WorldModel, actor_critic: ActorCritic, state: ImaginationState,
             output: tuple[Tensor, Tensor, LSTMState], steps: int, temperature: float,
             generator: torch.Generator | None, world_model_step: WorldModelStep,
             fresh: _Fresh | None = None, age: Tensor | None = None, horizon: int = 0
             ) -> tuple[Rollout, ImaginationState, LSTMState, Tensor | None]:
    """``steps`` steps of the policy in the world model from ``state``, whose current latent the actor has
    read into ``output`` (logits, value, LSTM state). With ``fresh``, a rollout that ends or reaches
    ``horizon`` steps of ``age`` restarts from the next fresh context (the k-th to restart takes context k,
    cycling).

    Returns the rollout, and what the next steps go on from: the world model's state, the actor's LSTM state
    before it reads the current latent, and the rollouts' ages.
    """
    names = ("logits", "values", "next_values", "actions", "rewards", "ends", "truncations", "latents")
    records: dict[str, list[Tensor]] = {name: [] for name in names}
    restarted = torch.zeros((), dtype=torch.long, device=state.latents.device)
    hidden = None
    for _ in range(steps):
        logits, value, hidden = output
        if temperature != 1.0:  # a host float: at the default no extra kernel runs in this hot loop
            # REINFORCE needs the log-probabilities of the policy that drew the actions: the tempered one.
            logits = logits / temperature
        action = sample_categorical(logits.detach().softmax(-1), generator)
        records["latents"].append(state.latents[:, -1])
        next_latent, reward, end, state = world_model_step(state, action, generator)
        output = actor_critic(next_latent, hidden)  # where the rollout goes on, unless it restarts
        next_value = output[1].detach()  # the bootstrap of a truncation: V of the state reached
        truncated = torch.zeros_like(end)
        if fresh is not None:
            age = age + 1
            truncated = (age >= horizon) & ~end
            restart = end | truncated
            slot = (restarted + torch.cumsum(restart.long(), 0) - 1) % fresh.state.latents.shape[0]
            state = state.where(restart, fresh.state.rows(slot))
            hidden = _pick(restart, fresh.hidden, hidden, slot)
            output = _pick(restart, fresh.output, output, slot)
            age = torch.where(restart, 0, age)
            restarted = restarted + restart.sum()
        for name, record in zip(names[:-1], (logits, value, next_value, action, reward, end, truncated),
                                strict=True):  # "latents" is recorded before the step
            records[name].append(record)
    records["latents"].append(next_latent)  # the last latent reached, before any restart
    rollout = Rollout(**{name: torch.stack(values, dim=1) for name, values in records.items()})
    return rollout, state, hidden, age


def _pick(replace: Tensor, fresh: tuple, mine: tuple, slot: Tensor) -> tuple:
    """Row b of each (nested) tensor from ``fresh`` at row ``slot[b]`` where ``replace[b]``, else ``mine``."""
    if isinstance(mine, Tensor):
        return torch.where(replace.view(-1, *[1] * (mine.dim() - 1)), fresh[slot], mine)
    return tuple(_pick(replace, theirs, ours, slot) for theirs, ours in zip(fresh, mine, strict=True))


def imagine(world_model: WorldModel, actor_critic: ActorCritic, frames: Tensor, actions: Tensor, horizon: int,
            temperature: float = 1.0, generator: torch.Generator | None = None,
            world_model_step: WorldModelStep | None = None) -> Rollout:
    """Roll the policy out for ``horizon`` steps inside the world model from the given real contexts (frames
    (B, L, 3, H, W) and the (B, L - 1) actions between them), once, without restarts: for looking at.

    Runs at the caller's precision (wrap it in ``runtime.autocast`` for bf16); every network returns fp32.
    """
    start = _warm_up(world_model, actor_critic, frames, actions)
    return _rollout(world_model, actor_critic, start.state, start.output, horizon, temperature, generator,
                    world_model_step or world_model.imagine_step)[0]


class Imagination:
    """``batch_size`` imagined rollouts that go on across actor-critic updates (see the module docstring).

    Each call imagines ``horizon`` more steps of every rollout; the first call starts them from the first
    ``batch_size`` of its fresh contexts. What carries over between calls lives in tensors that later calls
    overwrite in place, so a CUDA graph of the whole update reads and writes the same memory each replay.
    """

    def __init__(self, batch_size: int, horizon: int, temperature: float = 1.0):
        self.batch_size = batch_size
        self.horizon = horizon
        self.temperature = temperature
        # The world model's latents, actions and reward/end LSTM state, the actor's LSTM state, the ages.
        self.carried: list[Tensor] = []

    def __call__(self, world_model: WorldModel, actor_critic: ActorCritic, frames: Tensor, actions: Tensor,
                 generator: torch.Generator | None = None, world_model_step: WorldModelStep | None = None
                 ) -> Rollout:
        """``horizon`` more steps of every rollout; ``frames`` and ``actions``: the fresh contexts to restart
        from (``2 * batch_size`` of them, as :func:`actor_critic_update` is called)."""
        fresh = _warm_up(world_model, actor_critic, frames, actions)
        batch = self.batch_size
        if not self.carried:  # the first update: every rollout starts from a fresh context
            first = slice(None, batch)
            state, output = fresh.state.rows(first), _pick_rows(fresh.output, first)
            age = torch.zeros(batch, dtype=torch.long, device=frames.device)
            fresh = _Fresh(fresh.state.rows(slice(batch, None)), _pick_rows(fresh.hidden, slice(batch, None)),
                           _pick_rows(fresh.output, slice(batch, None)))
        else:
            # Copies: autograd keeps its inputs, and this call overwrites the carried tensors at its end.
            latents, past_actions, *memory, hidden_h, hidden_c, age = [t.clone() for t in self.carried]
            state = ImaginationState(latents, past_actions, (memory[0], memory[1]) if memory else None)
            output = actor_critic(latents[:, -1], (hidden_h, hidden_c))
        rollout, state, hidden, age = _rollout(
            world_model, actor_critic, state, output, self.horizon, self.temperature, generator,
            world_model_step or world_model.imagine_step, fresh, age, self.horizon)
        self._carry([state.latents, state.actions, *(state.reward_end_state or ()), *hidden, age])
        return rollout

    def _carry(self, tensors: list[Tensor]) -> None:
        tensors = [tensor.detach() for tensor in tensors]
        if not self.carried:
            self.carried = [tensor.clone() for tensor in tensors]
        else:
            for carried, tensor in zip(self.carried, tensors, strict=True):
                carried.copy_(tensor)

    def reset(self) -> None:
        """Forget the rollouts: the next call starts new ones (a resumed run does)."""
        self.carried = []


def _pick_rows(nested: tuple, index: slice) -> tuple:
    if isinstance(nested, Tensor):
        return nested[index]
    return tuple(_pick_rows(item, index) for item in nested)


def actor_critic_loss(rollout: Rollout, cfg: ActorCriticConfig) -> tuple[Tensor, dict[str, Tensor]]:
    """Lambda-returns on the imagined rewards (cut at each end, bootstrapped at each truncation), then
    REINFORCE with baseline over every step."""
    returns = lambda_returns(rollout.rewards, rollout.next_values, rollout.ends, rollout.truncations,
                             cfg.gamma, cfg.lambda_)
    loss, logs = reinforce_loss(rollout.logits, rollout.values, rollout.actions, returns, cfg.entropy_weight,
                                cfg.value_weight)
    logs.update(imagined_reward=rollout.rewards.sum() / rollout.rewards.shape[0],
                imagined_end_rate=rollout.ends.float().mean())
    return loss, logs


def imagined_loss(imagination: Imagination, world_model: WorldModel, actor_critic: ActorCritic,
                  cfg: ActorCriticConfig, frames: Tensor, actions: Tensor
                  ) -> tuple[Tensor, dict[str, Tensor]]:
    """The actor-critic's loss on ``horizon`` more imagined steps of every rollout, ``frames`` and ``actions``
    being the fresh contexts to restart from."""
    world_model.eval()
    actor_critic.train()
    return actor_critic_loss(imagination(world_model, actor_critic, frames, actions), cfg)


def actor_critic_update(imagination: Imagination, world_model: WorldModel, actor_critic: ActorCritic,
                        cfg: ActorCriticConfig, optimizer: OptimizerAndSchedule) -> Update:
    """Algorithm 1's actor-critic update: called with fresh contexts to restart from (``2 * batch_size``,
    from ``replay.sample_contexts``), it imagines ``horizon`` more steps of every rollout and steps the
    actor-critic."""
    clip_groups = {"grad_norm_actor_critic": (list(actor_critic.parameters()), cfg.grad_clip)}
    return Update(functools.partial(imagined_loss, imagination, world_model, actor_critic, cfg), [optimizer],
                  clip_groups)
