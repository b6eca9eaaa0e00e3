"""jedi_core.training.collect: while training, a lost life ends the replay episode and the actor's memory
(DIAMOND's single-life episodes), and the game plays on; with the split off, whole games are kept."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from jedi_core.agent import Agent
from jedi_core.presets import make_config
from jedi_core.replay import ReplayBuffer
from jedi_core.training import collect
from jedi_core.training.collect import Collector, collect_random_steps

LIFE_LOSSES = (2, 6)  # steps (0-based) at which a life is lost
GAME_STEPS = 10  # the game is over after this many steps


class ThreeLives(gym.Env):
    """A game of 10 steps with lives lost at steps 2 and 6; frame t is filled with t; reward 1 per step."""

    observation_space = gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    action_space = gym.spaces.Discrete(3)

    def reset(self, *, seed=None, options=None):
        self.t = 0
        return np.zeros((64, 64, 3), np.uint8), {"life_loss": False}

    def step(self, action):
        life_loss = self.t in LIFE_LOSSES
        self.t += 1
        frame = np.full((64, 64, 3), self.t, np.uint8)
        return frame, 1.0, self.t == GAME_STEPS, False, {"life_loss": life_loss}


@pytest.fixture
def three_lives(monkeypatch):
    monkeypatch.setattr(collect, "make_env", lambda env_cfg: ThreeLives())


@pytest.mark.parametrize("split", [True, False])
def test_a_lost_life_ends_the_replay_episode_and_the_actors_memory(split, three_lives):
    cfg = make_config("smoke", [f"replay.split_at_life_loss={split}"])
    torch.manual_seed(0)
    agent = Agent(cfg, num_actions=3)
    states_seen = []
    act = agent.act

    def recording_act(observations, state, epsilon=0.0, generator=None):
        states_seen.append(state[0].clone())
        return act(observations, state, epsilon, generator)

    agent.act = recording_act
    replay = ReplayBuffer()
    returns = Collector(cfg, replay, agent, seed=0).collect(GAME_STEPS, 0.0, np.random.default_rng(0))

    assert returns == [float(GAME_STEPS)]  # the game's return adds up across lives
    zeroed = [t for t, state in enumerate(states_seen) if not state.any()]
    if split:
        assert [episode.num_steps for episode in replay.episodes] == [3, 4, 3]
        for before, after in zip(replay.episodes, replay.episodes[1:], strict=False):
            assert before.finished and before.life_loss[-1] and not before.terminated[-1]
            np.testing.assert_array_equal(after.obs[0], before.obs[-1])  # the game played on
        assert zeroed == [0, 3, 7]  # the memory starts afresh after each lost life
    else:
        assert [episode.num_steps for episode in replay.episodes] == [GAME_STEPS]
        assert replay.episodes[0].life_loss.sum() == len(LIFE_LOSSES)
        assert zeroed == [0]
    assert replay.episodes[-1].terminated[-1]
    frames = np.concatenate([episode.obs[1:, 0, 0, 0] for episode in replay.episodes])
    np.testing.assert_array_equal(frames, np.arange(1, GAME_STEPS + 1))  # no step lost or repeated


def test_random_collection_splits_the_same_way(three_lives):
    whole = collect_random_steps(make_config("smoke").env, GAME_STEPS, seed=0)
    split = collect_random_steps(make_config("smoke").env, GAME_STEPS, seed=0, split_at_life_loss=True)
    assert [episode.num_steps for episode in whole.episodes] == [GAME_STEPS, 0]
    assert [episode.num_steps for episode in split.episodes] == [3, 4, 3, 0]


def test_finish_at_life_loss_refuses_an_episode_that_lost_no_life():
    replay = ReplayBuffer()
    episode = replay.new_episode(np.zeros((64, 64, 3), np.uint8))
    episode.append(0, 0.0, np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="did not lose a life"):
        episode.finish_at_life_loss()
