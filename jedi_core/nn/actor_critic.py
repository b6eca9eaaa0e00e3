"""LSTM actor-critic, lambda-returns and the REINFORCE-with-baseline loss (DIAMOND's recipe).

JEDI's actor-critic reads the *detached* 16x8x8 latent (it never trains the encoder); DIAMOND's reads the
64x64 frame. Either way: a small conv stem, an LSTMCell for memory, and linear actor and critic heads that
start at zero, so the first policy is uniform and the first value is 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Categorical

from jedi_core.nn.blocks import LSTMState, conv_stem, init_lstm
from jedi_core.nn.ops import fp32_outputs, masked_mean, sample_categorical


class ActorCritic(nn.Module):
    """The policy and its value baseline: a conv stem, an LSTMCell, zero-initialised actor and critic heads.

    It reads one input per step: JEDI's detached latent, or the frame for the pixel baseline. The heads
    start at zero, so the first policy is uniform and the first value 0. Outputs are fp32 under any
    autocast (:func:`~jedi_core.nn.ops.fp32_outputs`).
    """

    def __init__(self, in_channels: int, in_size: int, num_actions: int, channels: Sequence[int],
                 downsample: Sequence[int], lstm_dim: int):
        super().__init__()
        # DIAMOND flattens the stem's residual stream straight into the LSTM, with nothing between.
        self.stem = nn.Sequential(*conv_stem(in_channels, channels, downsample), nn.Flatten())
        features = channels[-1] * (in_size // 2 ** sum(downsample)) ** 2
        self.lstm = nn.LSTMCell(features, lstm_dim)
        init_lstm(self.lstm)
        self.actor = nn.Linear(lstm_dim, num_actions)
        self.critic = nn.Linear(lstm_dim, 1)
        for head in (self.actor, self.critic):
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
        self.lstm_dim = lstm_dim
        fp32_outputs(self)

    def initial_state(self, batch_size: int, device: torch.device | str = "cpu") -> LSTMState:
        zeros = torch.zeros(batch_size, self.lstm_dim, device=device)
        return zeros, zeros.clone()

    def forward(self, inputs: Tensor, state: LSTMState) -> tuple[Tensor, Tensor, LSTMState]:
        """inputs (B, C, H, W) -> action logits (B, A), value (B,), new LSTM state."""
        hidden, cell = self.lstm(self.stem(inputs), state)
        return self.actor(hidden), self.critic(hidden).squeeze(-1), (hidden, cell)

    @torch.no_grad()
    def act(self, inputs: Tensor, state: LSTMState, temperature: float = 1.0, epsilon: float = 0.0,
            generator: torch.Generator | None = None) -> tuple[Tensor, LSTMState]:
        """Sample actions (with an epsilon chance of a uniformly random one), and the new state."""
        logits, _, state = self(inputs, state)
        probabilities = (logits / temperature).softmax(-1)
        if epsilon > 0:
            probabilities = (1 - epsilon) * probabilities + epsilon / probabilities.shape[-1]
        return sample_categorical(probabilities, generator), state


@torch.no_grad()
def lambda_returns(rewards: Tensor, next_values: Tensor, ends: Tensor, truncations: Tensor, gamma: float,
                   lambda_: float) -> Tensor:
    """Lambda-returns over (B, T) rollouts.

    ``G_t = r_t + gamma * (1 - end_t) * [(1 - lambda) V(s_t+1) + lambda G_t+1]``. At a truncation, and at
    the last step of the rollout, G_t+1 does not exist (or belongs to a reset episode), so the bootstrap is
    ``V(s_t+1)`` alone. ``next_values[:, t]`` is V of the state *reached* at step t, before any reset.
    """
    steps = rewards.shape[1]
    returns = torch.empty_like(rewards)
    continuing = 1.0 - ends.to(rewards.dtype)
    following = next_values[:, -1]
    for t in reversed(range(steps)):
        cut = truncations[:, t].bool() | (t == steps - 1)
        mixed = (1 - lambda_) * next_values[:, t] + lambda_ * following
        bootstrap = torch.where(cut, next_values[:, t], mixed)
        returns[:, t] = rewards[:, t] + gamma * continuing[:, t] * bootstrap
        following = returns[:, t]
    return returns


def reinforce_loss(logits: Tensor, values: Tensor, actions: Tensor, returns: Tensor, entropy_weight: float,
                   value_weight: float = 1.0, mask: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """REINFORCE with the value as baseline, a value regression to the returns and an entropy bonus.

    Every term is a mean over the steps where ``mask`` is True (all of them without one). Logs are detached
    0-dim tensors. ``validate_args=False``: the distribution's argument checks would make the host wait for
    the device at every update.
    """
    distribution = Categorical(logits=logits, validate_args=False)
    mask = torch.ones_like(values, dtype=torch.bool) if mask is None else mask

    def mean(x: Tensor) -> Tensor:
        return masked_mean(x, mask)

    advantages = (returns - values).detach()
    policy_loss = -mean(distribution.log_prob(actions) * advantages)
    value_loss = mean((values - returns).pow(2))
    entropy = mean(distribution.entropy())
    loss = policy_loss + value_weight * value_loss - entropy_weight * entropy
    with torch.no_grad():
        logs = {"policy_loss": policy_loss.detach(), "value_loss": value_loss.detach(),
                "entropy": entropy.detach(),
                "return_mean": mean(returns), "value_mean": mean(values.detach())}
    return loss, logs
