"""The Atari100k protocol as one environment factory.

``ALE/<Game>-v5`` with ``frameskip=1`` and no sticky actions, gymnasium's ``AtariPreprocessing``
(30 no-ops, skip 4 with a max-pool over the last two frames, INTER_AREA resize to 64x64 RGB), a
108,000-frame cap, and a *life-loss flag* in ``info["life_loss"]``. The flag ends a training segment
(the world model's termination target) but never an episode: ``terminated`` stays the real game over,
so evaluation plays full games. ``terminal_on_life_loss=True`` is not used because under a vector env
it would reset the game at every lost life.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import AtariPreprocessing

from jedi_core.envs.games import canonical_game_name

try:
    import ale_py
except ImportError as error:  # pragma: no cover - ale-py is a hard dependency
    raise ImportError("ale-py is missing: run `pip install -e .` in the jedi folder "
                      "(ROMs ship in the wheel)") from error

# Silence the ALE banner before the first emulator starts: it goes to C++ stderr and would
# otherwise appear in the first notebook cell that builds an environment.
ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
gym.register_envs(ale_py)


class StochasticFrameSkip(AtariPreprocessing):
    """``AtariPreprocessing`` whose frame skip is drawn uniformly from ``[low, high]`` every step.

    The paper's stochastic-Atari variant: the agent no longer knows how far the game advances per
    action, which adds aleatoric uncertainty for the world model to capture. The skip used is reported
    in ``info["frame_skip"]``; the draw is seeded by ``reset(seed=...)``.
    """

    def __init__(self, env: gym.Env, skip_range: tuple[int, int] = (2, 6), **kwargs: Any):
        low, high = skip_range
        if not 2 <= low <= high:  # the max-pool over the last two frames needs at least two frames
            raise ValueError(f"skip_range {skip_range!r} must satisfy 2 <= low <= high")
        super().__init__(env, frame_skip=high, **kwargs)
        self.skip_range = (low, high)
        self._skip_rng = np.random.default_rng()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None:
            self._skip_rng = np.random.default_rng([seed, 0x5C1B])
        return super().reset(seed=seed, options=options)

    def step(self, action):
        self.frame_skip = int(self._skip_rng.integers(self.skip_range[0], self.skip_range[1] + 1))
        return super().step(action)


class LifeLossInfo(gym.Wrapper):
    """Reports ``info["life_loss"]`` (a life was lost this step), ``info["lives"]`` and
    ``info["frame_skip"]``.

    It never changes ``terminated``: a lost life ends a training segment, not the episode.
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self._lives = 0

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        self._lives = self.env.unwrapped.ale.lives()
        return obs, {**info, "life_loss": False, "lives": self._lives}

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        lives = self.env.unwrapped.ale.lives()
        life_loss = lives < self._lives
        self._lives = lives
        skip = getattr(self.env, "frame_skip", 1)
        return obs, reward, terminated, truncated, {**info, "life_loss": life_loss, "lives": lives,
                                                    "frame_skip": skip}


def make_atari_env(
    game: str,
    *,
    frame_skip: int = 4,
    stochastic_frame_skip: bool = False,
    frame_skip_range: tuple[int, int] = (2, 6),
    noop_max: int = 30,
    screen_size: int = 64,
    max_episode_frames: int = 108_000,
    repeat_action_probability: float = 0.0,
    render_mode: str | None = None,
) -> gym.Env:
    """Build one Atari100k game exactly as the protocol says (the defaults are the protocol).

    Observations are ``(screen_size, screen_size, 3)`` uint8 RGB; actions index the minimal action set.
    """
    name = canonical_game_name(game)
    env = gym.make(
        f"ALE/{name}-v5",
        frameskip=1,  # skipping (and max-pooling) happens in AtariPreprocessing
        repeat_action_probability=repeat_action_probability,
        full_action_space=False,
        max_num_frames_per_episode=max_episode_frames,
        render_mode=render_mode,
    )
    common = dict(noop_max=noop_max, screen_size=screen_size, grayscale_obs=False,
                  terminal_on_life_loss=False)
    if stochastic_frame_skip:
        env = StochasticFrameSkip(env, skip_range=frame_skip_range, **common)
    else:
        env = AtariPreprocessing(env, frame_skip=frame_skip, **common)
    return LifeLossInfo(env)
