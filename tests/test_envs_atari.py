"""jedi_core.envs (Atari): the Atari100k protocol on real ALE games (ROMs ship in the ale-py wheel)."""

import dataclasses

import numpy as np
import pytest

from jedi_core.analysis.metrics import load_reference
from jedi_core.config import EnvConfig
from jedi_core.envs import ATARI100K_GAMES, UnknownGameError, canonical_game_name, make_env, make_vector_env
from jedi_core.envs.atari import make_atari_env


def test_the_26_games_match_the_published_reference():
    assert sorted(ATARI100K_GAMES) == sorted(load_reference().games)
    assert len(ATARI100K_GAMES) == 26


def test_observations_are_64x64_rgb_uint8():
    env = make_atari_env("Pong")
    obs, info = env.reset(seed=0)
    assert env.observation_space.shape == (64, 64, 3)
    for _ in range(5):
        assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8
        assert 0 <= obs.min() and obs.max() <= 255 and obs.max() > obs.min()  # a real picture, not blank
        obs, *_ = env.step(env.action_space.sample())
    env.close()


@pytest.mark.parametrize("game", ["Breakout", "Pong", "Freeway", "MsPacman", "Seaquest", "KungFuMaster"])
def test_minimal_action_set_sizes(game):
    env = make_atari_env(game)
    assert env.action_space.n == ATARI100K_GAMES[game]
    env.close()


def _rollout(env, seed, actions):
    obs, _ = env.reset(seed=seed)
    frames = [obs]
    for action in actions:
        obs, *_ = env.step(action)
        frames.append(obs)
    return np.stack(frames)


def test_seeded_resets_are_reproducible():
    actions = np.random.default_rng(0).integers(0, 4, size=40)
    env = make_atari_env("Breakout")
    first, second = _rollout(env, 3, actions), _rollout(env, 3, actions)
    np.testing.assert_array_equal(first, second)
    # Up to 30 no-ops at reset, their number drawn from the seed.
    noop_frames = {env.reset(seed=s)[1]["episode_frame_number"] for s in range(12)}
    assert len(noop_frames) > 3 and all(1 <= n <= 30 for n in noop_frames)
    env.close()


def test_life_loss_is_flagged_but_does_not_end_the_episode():
    env = make_atari_env("Breakout")
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    lives_lost, terminated = [], False
    for _ in range(3000):
        _, _, terminated, truncated, info = env.step(int(rng.integers(env.action_space.n)))
        if info["life_loss"]:
            lives_lost.append((info["lives"], terminated))
        if terminated or truncated:
            break
    assert terminated, "a random policy loses all 5 Breakout lives within 3000 steps"
    assert [lives for lives, _ in lives_lost] == [4, 3, 2, 1, 0]
    assert [ended for _, ended in lives_lost] == [False, False, False, False, True]
    env.close()


def test_frame_cap_truncates_the_episode():
    env = make_atari_env("Pong", max_episode_frames=200)
    _, info = env.reset(seed=0)
    noops = info["episode_frame_number"]
    for step in range(1, 100):  # noqa: B007 (step is read after the loop)
        _, _, terminated, truncated, info = env.step(0)
        if terminated or truncated:
            break
    assert truncated and not terminated
    assert info["episode_frame_number"] == 200 and step == -(-(200 - noops) // 4)  # 4 frames per step
    env.close()


def test_stochastic_frame_skip_draws_inside_2_to_6():
    env = make_atari_env("Pong", stochastic_frame_skip=True)
    _, info = env.reset(seed=0)
    skips, frames_before = [], info["episode_frame_number"]
    for _ in range(300):
        _, _, _, _, info = env.step(0)
        skips.append(info["frame_skip"])
        assert info["episode_frame_number"] - frames_before == info["frame_skip"]
        frames_before = info["episode_frame_number"]
    assert set(skips) == {2, 3, 4, 5, 6}
    env.reset(seed=0)
    assert [env.step(0)[4]["frame_skip"] for _ in range(300)] == skips  # seeded
    env.close()


def test_fixed_frame_skip_advances_four_frames():
    env = make_atari_env("Pong")
    _, info = env.reset(seed=0)
    before = info["episode_frame_number"]
    assert env.step(0)[4]["episode_frame_number"] - before == 4
    env.close()


def test_unknown_game_lists_names_and_suggests_closest():
    with pytest.raises(UnknownGameError, match=r"'Pongg': did you mean 'Pong'\?.*Alien, Amidar, Assault"):
        make_atari_env("Pongg")
    with pytest.raises(UnknownGameError, match="Montezuma"):
        canonical_game_name("MontezumaRevenge")
    assert canonical_game_name("ms_pacman") == "MsPacman"
    assert canonical_game_name("ALE/Breakout-v5") == "Breakout"


def test_vector_env_steps_several_games_together():
    cfg = EnvConfig(game="Breakout", num_envs=3)
    envs = make_vector_env(cfg)
    obs, info = envs.reset(seed=0)
    assert obs.shape == (3, 64, 64, 3) and obs.dtype == np.uint8
    assert len(set(info["episode_frame_number"])) > 1  # seeds 0, 1, 2 draw different no-op counts
    for _ in range(3):
        obs, reward, terminated, truncated, info = envs.step(np.array([1, 2, 3]))
    assert reward.shape == terminated.shape == info["life_loss"].shape == (3,)
    envs.close()


def test_make_env_follows_the_config():
    env = make_env(dataclasses.replace(EnvConfig(), game="Pong", screen_size=32))
    assert env.reset(seed=0)[0].shape == (32, 32, 3)
    env.close()
