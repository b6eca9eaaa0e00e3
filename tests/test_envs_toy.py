"""jedi_core.envs.toy: the Catch game, with the Atari environments' API."""

import numpy as np
import pytest

from jedi_core.config import EnvConfig
from jedi_core.envs import env_num_actions, make_env, make_vector_env
from jedi_core.envs.toy import GRID, CatchEnv, random_policy_return


def _ball_and_paddle_columns(frame):
    ball = np.argwhere((frame[:-8] == (250, 80, 60)).all(-1))
    paddle = np.argwhere((frame[-8:] == (70, 200, 230)).all(-1))
    return ball[0][1] // 8, int(np.round(paddle[:, 1].mean() - 3.5)) // 8  # the paddle's centre column


def _play(env, policy, episodes, seed):
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        done, total = False, 0.0
        while not done:
            obs, reward, terminated, truncated, _ = env.step(policy(obs))
            total += reward
            done = terminated or truncated
        returns.append(total)
    return np.array(returns)


def _chase_the_ball(frame):
    ball, paddle = _ball_and_paddle_columns(frame)
    return 0 if ball == paddle else (1 if ball < paddle else 2)


def test_same_api_as_atari_envs():
    env = make_env(EnvConfig(kind="toy"))
    obs, info = env.reset(seed=0)
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8 and info["life_loss"] is False
    assert env.action_space.n == env_num_actions(EnvConfig(kind="toy")) == 3
    obs, reward, terminated, truncated, info = env.step(0)
    assert set(info) >= {"life_loss", "lives", "frame_skip"}


def test_optimal_policy_reaches_the_optimal_return():
    returns = _play(CatchEnv(), _chase_the_ball, episodes=50, seed=0)
    assert (returns == CatchEnv.optimal_return).all()


def test_random_policy_return_matches_monte_carlo():
    rng = np.random.default_rng(0)
    returns = _play(CatchEnv(), lambda obs: int(rng.integers(3)), episodes=4000, seed=0)
    standard_error = returns.std() / np.sqrt(len(returns))
    assert random_policy_return() == pytest.approx(-0.25)
    assert abs(returns.mean() - random_policy_return()) < 4 * standard_error


def test_episode_lasts_until_the_ball_reaches_the_paddle_row():
    env = CatchEnv()
    env.reset(seed=1)
    lengths = [env.step(0)[2] for _ in range(GRID - 1)]
    assert lengths == [False] * (GRID - 2) + [True]


def test_seeded_reset_is_reproducible_and_bad_actions_are_refused():
    env = CatchEnv()
    starts = [env.reset(seed=s)[0] for s in (5, 5)]
    np.testing.assert_array_equal(*starts)
    with pytest.raises(ValueError, match="action 3 is not one of 0..2"):
        env.step(3)


def test_toy_runs_in_a_vector_env():
    envs = make_vector_env(EnvConfig(kind="toy", num_envs=2))
    envs.reset(seed=0)
    for _ in range(GRID - 1):
        _, _, terminated, _, info = envs.step(np.array([0, 0]))
    assert terminated.all() and "final_obs" in info  # same-step autoreset keeps the last frame
    envs.close()
