"""jedi_core.training.collect.evaluate: episodes played on several environments side by side, each started
once and played to its end, give what one environment playing them one by one gives (returns and frames) when
the policy is deterministic."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from jedi_core.agent import Agent, play_episode
from jedi_core.configlib import ConfigError
from jedi_core.envs import env_num_actions, make_env
from jedi_core.presets import make_config
from jedi_core.replay import frames_to_float
from jedi_core.training import collect
from jedi_core.training.collect import evaluate

EPISODES = 7
SEED = 100


class Recorded(gym.Wrapper):
    """Records each episode's frames, actions and rewards under its reset seed.

    With ``uneven``, the episode reset with seed ``s`` is truncated after ``4 + s % 4`` steps (the toy game
    ends after 7), so that episodes end at different times and environments pick up new ones out of step.
    """

    def __init__(self, env: gym.Env, log: dict, uneven: bool = False):
        super().__init__(env)
        self.log = log
        self.uneven = uneven

    def reset(self, *, seed=None, options=None):
        obs, info = self.env.reset(seed=seed, options=options)
        assert seed not in self.log, f"the episode of seed {seed} was started twice"
        self.seed = seed
        self.log[seed] = {"frames": [obs], "actions": [], "rewards": []}
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        episode = self.log[self.seed]
        episode["frames"].append(obs)
        episode["actions"].append(int(action))
        episode["rewards"].append(float(reward))
        if self.uneven and len(episode["actions"]) >= 4 + self.seed % 4:
            truncated = True
        return obs, reward, terminated, truncated, info


@torch.no_grad()
def greedy(agent: Agent, env_cfg) -> Agent:
    """Make ``agent`` act on the argmax of its logits: a deterministic policy that depends on the frames and
    on the LSTM state. The logits are first centred on their mean over a short rollout: an untrained agent's
    logits share one large direction, and their plain argmax would be the same action at every step."""
    torch.nn.init.normal_(agent.actor_critic.actor.weight, std=1.0)
    env = make_env(env_cfg)
    obs, _ = env.reset(seed=0)
    state = agent.initial_state(1)
    logits = []
    for _ in range(7):
        inputs = agent.world_model.encode(frames_to_float(torch.from_numpy(obs[None])))
        step_logits, _, state = agent.actor_critic(inputs, state)
        logits.append(step_logits)
        obs, *_ = env.step(0)
    offset = torch.cat(logits).mean(0)

    def act(inputs, state, temperature=1.0, epsilon=0.0, generator=None):
        step_logits, _, state = agent.actor_critic(inputs, state)
        return (step_logits - offset).argmax(-1), state

    agent.actor_critic.act = act
    return agent


def agent_for(cfg) -> Agent:
    torch.manual_seed(0)
    return Agent(cfg, env_num_actions(cfg.env))


def one_by_one(agent, cfg, episodes, max_steps, uneven) -> tuple[list[float], dict]:
    """The reference: one environment playing the episodes in turn through ``play_episode``."""
    log = {}
    env = Recorded(make_env(cfg.env), log, uneven)
    returns = [play_episode(agent, env, SEED + index, max_steps).total_reward for index in range(episodes)]
    return returns, log


def side_by_side(agent, cfg, episodes, max_steps, uneven, monkeypatch) -> tuple[list[float], dict, int]:
    """``evaluate`` with every environment it makes recorded; also returns how many it made."""
    log = {}
    made = []

    def recorded_env(env_cfg):
        made.append(env_cfg)
        return Recorded(make_env(env_cfg), log, uneven)

    monkeypatch.setattr(collect, "make_env", recorded_env)
    return evaluate(agent, cfg, episodes, SEED, max_steps), log, len(made)


def assert_same_episodes(log, reference, episodes):
    assert sorted(log) == [SEED + index for index in range(episodes)]  # each episode started once
    for seed, episode in reference.items():
        np.testing.assert_array_equal(np.stack(log[seed]["frames"]), np.stack(episode["frames"]))
        assert log[seed]["actions"] == episode["actions"]


@pytest.mark.parametrize("eval_envs", [1, 3, 16])
@pytest.mark.parametrize("max_steps", [None, 5])
def test_side_by_side_matches_one_by_one_under_a_deterministic_policy(eval_envs, max_steps, monkeypatch):
    cfg = make_config("smoke", ["env.kind=toy", f"env.eval_envs={eval_envs}"])
    agent = greedy(agent_for(cfg), cfg.env)
    expected, reference = one_by_one(agent, cfg, EPISODES, max_steps, uneven=True)
    returns, log, made = side_by_side(agent, cfg, EPISODES, max_steps, uneven=True, monkeypatch=monkeypatch)

    assert made == min(eval_envs, EPISODES)
    assert returns == expected  # the same returns, in episode order
    assert_same_episodes(log, reference, EPISODES)
    lengths = [len(episode["actions"]) for episode in reference.values()]
    assert len(set(lengths)) > 1  # the episodes end at different times
    assert len({action for episode in reference.values() for action in episode["actions"]}) > 1
    if max_steps is None:
        assert any(returns)  # some episodes reached the game's reward


def test_every_episode_is_played_to_its_end_and_returned_in_order_under_the_sampled_policy(monkeypatch):
    cfg = make_config("smoke", ["env.kind=toy", "env.eval_envs=3"])
    agent = agent_for(cfg)
    torch.nn.init.normal_(agent.actor_critic.actor.weight, std=0.05)  # a policy that is not uniform
    returns, log, made = side_by_side(agent, cfg, 10, None, uneven=True, monkeypatch=monkeypatch)

    assert made == 3
    assert sorted(log) == [SEED + index for index in range(10)]
    for index, total in enumerate(returns):
        episode = log[SEED + index]
        assert len(episode["actions"]) == 4 + (SEED + index) % 4  # played to its end, not cut short
        assert total == sum(episode["rewards"])


def test_no_episodes_and_a_bad_eval_envs():
    cfg = make_config("smoke", ["env.kind=toy"])
    assert evaluate(agent_for(cfg), cfg, 0, SEED) == []
    assert make_config("atari100k").env.eval_envs == 16
    with pytest.raises(ConfigError, match="eval_envs"):
        make_config("smoke", ["env.eval_envs=0"])


def test_side_by_side_matches_one_by_one_on_a_real_atari_game(monkeypatch):
    cfg = make_config("smoke", ["env.game=Pong", "env.eval_envs=2"])
    agent = greedy(agent_for(cfg), cfg.env)
    expected, reference = one_by_one(agent, cfg, 3, 50, uneven=False)
    returns, log, made = side_by_side(agent, cfg, 3, 50, uneven=False, monkeypatch=monkeypatch)

    assert made == 2
    assert returns == expected
    assert_same_episodes(log, reference, 3)
    assert all(len(episode["actions"]) == 50 for episode in log.values())


def test_two_run_seeds_final_evaluations_share_no_reset_seed(tmp_path, monkeypatch):
    """Each run seed plays its own 100 (up to 1,000) final episodes: seed-to-seed spread is not understated
    by replaying the same games, and no final game replays a collected or periodically evaluated start."""
    from jedi_core.presets import make_config
    from jedi_core.training import loop
    from jedi_core.training.collect import RESET_SEED_STRIDE

    played = {}

    def recording(agent, cfg, episodes, seed, max_steps=None, progress=False):
        played[cfg.seed] = set(range(seed, seed + episodes))
        return [0.0] * episodes

    monkeypatch.setattr(loop, "evaluate", recording)
    run_seeds = (0, 1, 2, 99)
    for run_seed in run_seeds:
        cfg = make_config("smoke", ["env.kind=toy", f"seed={run_seed}", "eval_episodes=1000"])
        (tmp_path / str(run_seed)).mkdir()
        loop.Trainer(cfg, tmp_path / str(run_seed), quiet=True).final_evaluation()
    assert all(len(played[seed]) == 1000 for seed in run_seeds)
    for first in run_seeds:
        for second in run_seeds:
            assert first == second or not played[first] & played[second], (first, second)
        collected = range(first * RESET_SEED_STRIDE, first * RESET_SEED_STRIDE + 100_000)
        assert not played[first] & set(collected)
        periodic = range(loop.PERIODIC_EVAL_SEED, loop.PERIODIC_EVAL_SEED + 10_000)
        assert not played[first] & set(periodic)
