"""The agent: a world model and an actor-critic, and how they act in the real environment.

In the real environment the actor-critic reads ``world_model.encode(frame)``, detached: JEDI's latent, or the
frame itself for the pixel baseline, exactly what it reads in imagination. Each real episode starts from a
zeroed LSTM state.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
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


@dataclass
class EpisodeRecording:
    """One played episode: its actions and rewards, and its frames when they were kept."""

    actions: np.ndarray  # (T,)
    rewards: np.ndarray  # (T,) float64
    frames: np.ndarray | None = None  # (T+1, H, W, 3) uint8, the reset frame first

    @property
    def total_reward(self) -> float:
        return float(self.rewards.sum())


@torch.no_grad()
def play_episode(agent: Agent, env: gym.Env, seed: int, max_steps: int | None = None, keep_frames: bool = False
                 ) -> EpisodeRecording:
    """One evaluation episode: sampled policy, epsilon 0, to the real game over (lost lives do not end it).

    Frames are kept only on request: a full Atari episode can hold 27,000 of them (330 MB).
    """
    agent.eval()
    obs, _ = env.reset(seed=seed)
    frames, actions, rewards, state, done = [obs], [], [], agent.initial_state(1), False
    while not done and (max_steps is None or len(actions) < max_steps):
        action, state = agent.act(obs[None], state, epsilon=0.0)
        obs, reward, terminated, truncated, _ = env.step(int(action[0]))
        if keep_frames:
            frames.append(obs)
        actions.append(int(action[0]))
        rewards.append(float(reward))
        done = terminated or truncated
    return EpisodeRecording(np.array(actions, np.int64), np.array(rewards, np.float64),
                            np.stack(frames) if keep_frames else None)
