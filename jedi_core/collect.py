"""Filling a replay with real experience. For now: the uniformly random policy (the initial collection)."""

from __future__ import annotations

import numpy as np

from jedi_core.config import EnvConfig
from jedi_core.data import ReplayBuffer
from jedi_core.envs import make_env


def collect_random_steps(env_cfg: EnvConfig, num_steps: int, seed: int, replay: ReplayBuffer | None = None
                         ) -> ReplayBuffer:
    """Play ``num_steps`` uniformly random actions and record every transition (life-loss flags included)."""
    replay = ReplayBuffer() if replay is None else replay
    env = make_env(env_cfg)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    episode = replay.new_episode(obs)
    for _ in range(num_steps):
        action = int(rng.integers(env.action_space.n))
        obs, reward, terminated, truncated, info = env.step(action)
        episode.append(action, float(reward), obs, terminated=terminated, truncated=truncated,
                       life_loss=bool(info.get("life_loss", False)))
        if terminated or truncated:
            obs, _ = env.reset()
            episode = replay.new_episode(obs)
    env.close()
    return replay
