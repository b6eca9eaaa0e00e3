"""Environments: the Atari100k protocol, the toy Catch game, and several of either stepped together."""

from __future__ import annotations

from typing import TYPE_CHECKING

import gymnasium as gym

from jedi_core.envs.games import ATARI100K_GAMES, UnknownGameError, canonical_game_name, num_actions

if TYPE_CHECKING:
    from jedi_core.config import EnvConfig

__all__ = ["ATARI100K_GAMES", "UnknownGameError", "canonical_game_name", "num_actions", "make_env",
           "make_vector_env", "env_num_actions"]


def make_env(cfg: EnvConfig, render_mode: str | None = None) -> gym.Env:
    """One environment as the config describes: an Atari100k game or the toy game."""
    if cfg.kind == "toy":
        from jedi_core.envs.toy import CatchEnv

        return CatchEnv(render_mode=render_mode)
    from jedi_core.envs.atari import make_atari_env

    return make_atari_env(
        cfg.game, frame_skip=cfg.frame_skip, stochastic_frame_skip=cfg.stochastic_frame_skip,
        frame_skip_range=cfg.frame_skip_range, noop_max=cfg.noop_max, screen_size=cfg.screen_size,
        max_episode_frames=cfg.max_episode_frames, repeat_action_probability=cfg.repeat_action_probability,
        render_mode=render_mode)


def make_vector_env(cfg: EnvConfig, num_envs: int | None = None) -> gym.vector.VectorEnv:
    """``num_envs`` environments stepped together for collection (``cfg.vector_mode``: sync or async).

    Finished environments reset in the same step (``AutoresetMode.SAME_STEP``): the returned observation
    is already the next episode's first frame and the last frame of the finished one is in
    ``info["final_obs"]``, so a collector never loses a transition. Seed with ``reset(seed=s)``:
    environment ``i`` then gets seed ``s + i``.
    """
    count = cfg.num_envs if num_envs is None else num_envs
    if count < 1:
        raise ValueError(f"num_envs must be at least 1, got {count}")
    factories = [lambda: make_env(cfg) for _ in range(count)]
    vector_cls = gym.vector.AsyncVectorEnv if cfg.vector_mode == "async" else gym.vector.SyncVectorEnv
    return vector_cls(factories, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)


def env_num_actions(cfg: EnvConfig) -> int:
    """Number of discrete actions of the configured environment (no emulator needed)."""
    if cfg.kind == "toy":
        from jedi_core.envs.toy import ACTION_MEANINGS

        return len(ACTION_MEANINGS)
    return num_actions(cfg.game)
