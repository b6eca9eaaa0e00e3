"""The agent: a world model and an actor-critic, and how they act in the real environment.

In the real environment the actor-critic reads ``world_model.encode(frame)``, detached: JEDI's latent, or the
frame itself for the pixel baseline, exactly what it reads in imagination. Each real episode starts from a
zeroed LSTM state.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from jedi_core.config import Config
from jedi_core.data import frames_to_float
from jedi_core.nn.actor_critic import ActorCritic, LSTMState
from jedi_core.optim import linear_warmup, make_adamw
from jedi_core.world_model import build_world_model


class Agent(nn.Module):
    def __init__(self, cfg: Config, num_actions: int):
        super().__init__()
        self.cfg, self.num_actions = cfg, num_actions
        self.world_model = build_world_model(cfg, num_actions)
        channels, size, _ = self.world_model.latent_shape
        ac = cfg.actor_critic
        self.actor_critic = ActorCritic(channels, size, num_actions, ac.channels, ac.downsample, ac.lstm_dim)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def make_actor_critic_optimizer(self) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
        ac = self.cfg.actor_critic
        optimizer = make_adamw({"actor_critic": (self.actor_critic, ac.lr)}, ac.weight_decay, ac.adam_eps)
        return optimizer, linear_warmup(optimizer, ac.warmup_steps)

    @torch.no_grad()
    def act(self, observations: np.ndarray, state: LSTMState, epsilon: float = 0.0,
            generator: torch.Generator | None = None) -> tuple[np.ndarray, LSTMState]:
        """Actions for a batch of real uint8 frames (N, H, W, 3), sampled from the policy."""
        frames = frames_to_float(torch.from_numpy(np.ascontiguousarray(observations)).to(self.device))
        inputs = self.world_model.encode(frames)
        actions, state = self.actor_critic.act(inputs, state, self.cfg.actor_critic.temperature, epsilon, generator)
        return actions.cpu().numpy(), state

    def initial_state(self, batch_size: int = 1) -> LSTMState:
        return self.actor_critic.initial_state(batch_size, self.device)
