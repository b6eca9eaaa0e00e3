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
from jedi_core.nn.actor_critic import ActorCritic
from jedi_core.nn.blocks import LSTMState
from jedi_core.optim import linear_warmup, make_adamw
from jedi_core.replay import frames_to_float
from jedi_core.runtime import compile_modules, use_channels_last
from jedi_core.world_model import build_world_model


class Agent(nn.Module):
    """A world model and the actor-critic that learns inside it: what a run trains, saves and plays with.

    Built from a whole config: the world model its ``method`` asks for (JEDI's latents or DIAMOND's pixels),
    at ``performance.precision``, and an actor-critic on what the world model imagines.
    """

    def __init__(self, cfg: Config, num_actions: int):
        super().__init__()
        self.cfg = cfg
        self.num_actions = num_actions
        self.world_model = build_world_model(cfg, num_actions)
        channels, size, _ = self.world_model.latent_shape
        ac_cfg = cfg.actor_critic
        self.actor_critic = ActorCritic(channels, size, num_actions, ac_cfg.channels, ac_cfg.downsample,
                                        ac_cfg.lstm_dim)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def make_actor_critic_optimizer(self) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
        """The actor-critic's AdamW (DIAMOND's recipe) and its linear warm-up."""
        ac_cfg = self.cfg.actor_critic
        optimizer = make_adamw({"actor_critic": (self.actor_critic, ac_cfg.lr)}, ac_cfg.weight_decay,
                               ac_cfg.adam_eps)
        return optimizer, linear_warmup(optimizer, ac_cfg.warmup_steps)

    def per_step_networks(self) -> dict[str, nn.Module]:
        """The networks every step calls, by their names in the agent's state dict: those of each imagined
        step, and JEDI's encoder, which reads every real frame, burn-in and world-model batch.

        The reward/end model's conv tower, not its LSTM: Dynamo does not trace nn.LSTM (one cuDNN call
        anyway). The pixel baseline has no encoder to compile (an identity).
        """
        networks = {"world_model.denoiser.net": self.world_model.denoiser.net,
                    "world_model.reward_end.encoder": self.world_model.reward_end.encoder,
                    "actor_critic": self.actor_critic}
        if not isinstance(self.world_model.encoder, nn.Identity):
            networks["world_model.encoder"] = self.world_model.encoder
        return networks

    def compile_per_step_networks(self, mode: str, backend: str = "inductor") -> list[str]:
        """``performance.compile``: compile :meth:`per_step_networks` in place; returns their names.

        ``reduce-overhead`` also captures CUDA graphs, which removes the kernel-launch cost that dominates
        JEDI's small 8x8 latent U-Net. Checkpoints are the same with and without it.
        """
        return compile_modules(self.per_step_networks(), mode, backend)

    @torch.no_grad()
    def act(self, observations: np.ndarray, state: LSTMState, epsilon: float = 0.0,
            generator: torch.Generator | None = None) -> tuple[np.ndarray, LSTMState]:
        """Actions for a batch of real uint8 frames (N, H, W, 3), sampled from the policy."""
        frames = frames_to_float(torch.from_numpy(np.ascontiguousarray(observations)).to(self.device))
        inputs = self.world_model.encode(frames)
        actions, state = self.actor_critic.act(inputs, state, self.cfg.actor_critic.temperature, epsilon,
                                               generator)
        return actions.cpu().numpy(), state

    def initial_state(self, batch_size: int = 1) -> LSTMState:
        """The actor-critic's zeroed LSTM state for ``batch_size`` episodes (each real episode starts so)."""
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
def play_episode(agent: Agent, env: gym.Env, seed: int, max_steps: int | None = None,
                 keep_frames: bool = False) -> EpisodeRecording:
    """One evaluation episode: sampled policy, epsilon 0, to the real game over (lost lives do not end it).

    Frames are kept only on request: a full Atari episode can hold 27,000 of them (330 MB).
    """
    agent.eval()
    obs, _ = env.reset(seed=seed)
    frames = [obs]
    actions = []
    rewards = []
    state = agent.initial_state(1)
    done = False
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


def build_agent(cfg: Config, num_actions: int, device: torch.device | str) -> Agent:
    """The agent as a run builds it: on ``device``, its weights in the run's memory format
    (``performance.channels_last``), its per-step networks compiled where ``performance.compile`` asks."""
    agent = Agent(cfg, num_actions).to(device)
    use_channels_last(agent, cfg.performance.channels_last, device)
    agent.compile_per_step_networks(cfg.performance.compile)
    return agent
