"""Catch: a tiny 64x64 RGB game with the Atari env's API, small enough to learn on a CPU in minutes.

A ball drops from a random column of an 8x8 grid, one row per step; a paddle three cells wide on the
bottom row moves left, stays or moves right. Catching the ball gives +1, missing it -1, and either ends
the episode after 7 steps. The optimal return is +1 from every start; the uniformly random policy's return
is -0.25 (:func:`random_policy_return`). Tests, notebooks and CI learn on it.

The paddle is three cells wide so that random play catches 3 balls in 8: a reward model trained on random
play sees enough catches to learn them in a CPU budget (with a one-cell paddle, 1 in 8, it took several
times longer).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

GRID = 8  # cells per side
CELL = 8  # pixels per cell: 8 x 8 = 64
PADDLE_WIDTH = 3  # cells; odd, centred on the paddle's column
PADDLE_START = GRID // 2
ACTION_MEANINGS = ("NOOP", "LEFT", "RIGHT")
_MOVES = (0, -1, 1)
_BACKGROUND = (24, 24, 40)
_BALL = (250, 80, 60)
_PADDLE = (70, 200, 230)
_PADDLE_CAUGHT = (120, 235, 90)
_BALL_INSET = 2  # pixels of margin around the ball inside its cell


class CatchEnv(gym.Env):
    """Catch the falling ball. Same observation and info conventions as :func:`make_atari_env`."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 8}
    optimal_return = 1.0

    def __init__(self, render_mode: str | None = None):
        self.observation_space = gym.spaces.Box(0, 255, (GRID * CELL, GRID * CELL, 3), np.uint8)
        self.action_space = gym.spaces.Discrete(len(ACTION_MEANINGS))
        self.render_mode = render_mode
        self._ball_row = self._ball_col = 0
        self._paddle = PADDLE_START

    def get_action_meanings(self) -> list[str]:
        return list(ACTION_MEANINGS)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._ball_row, self._ball_col = 0, int(self.np_random.integers(GRID))
        self._paddle = PADDLE_START
        return self._render_frame(), {"life_loss": False, "lives": 1}

    def step(self, action):
        if not self.action_space.contains(int(action)):
            raise ValueError(f"action {action!r} is not one of "
                             f"0..{self.action_space.n - 1} {ACTION_MEANINGS}")
        reach = PADDLE_WIDTH // 2
        self._paddle = int(np.clip(self._paddle + _MOVES[int(action)], reach, GRID - 1 - reach))
        self._ball_row += 1
        terminated = self._ball_row == GRID - 1
        reward = (1.0 if abs(self._ball_col - self._paddle) <= reach else -1.0) if terminated else 0.0
        info = {"life_loss": terminated and reward < 0, "lives": int(not (terminated and reward < 0)),
                "frame_skip": 1}
        return self._render_frame(), reward, terminated, False, info

    def render(self) -> np.ndarray:
        return self._render_frame()

    def _render_frame(self) -> np.ndarray:
        frame = np.empty(self.observation_space.shape, np.uint8)
        frame[:] = _BACKGROUND
        # A catch lights the paddle up, as games flash on a score: the final frames of a catch and of a miss
        # then differ over three whole cells, which even an untrained encoder's latents carry.
        caught = self._ball_row == GRID - 1 and abs(self._ball_col - self._paddle) <= PADDLE_WIDTH // 2
        for col in range(self._paddle - PADDLE_WIDTH // 2, self._paddle + PADDLE_WIDTH // 2 + 1):
            _paint(frame, GRID - 1, col, _PADDLE_CAUGHT if caught else _PADDLE)
        # The ball is smaller than a cell and drawn last, so a caught ball shows inside the paddle.
        _paint(frame, self._ball_row, self._ball_col, _BALL, inset=_BALL_INSET)
        return frame


def _paint(frame: np.ndarray, row: int, col: int, colour: tuple[int, int, int], inset: int = 0) -> None:
    top, left = row * CELL + inset, col * CELL + inset
    frame[top:top + CELL - 2 * inset, left:left + CELL - 2 * inset] = colour


def random_policy_return() -> float:
    """Expected return of the uniformly random policy: -0.25.

    The ball's column is uniform and independent of anything a ball-blind policy does, so *any* such
    policy (the random one included) catches with probability PADDLE_WIDTH/GRID = 3/8 wherever its paddle
    ends up. Beating -0.25 therefore needs a policy that looks at the ball.
    """
    return 2.0 * PADDLE_WIDTH / GRID - 1.0
