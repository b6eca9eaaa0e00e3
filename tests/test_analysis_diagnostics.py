"""jedi_core.analysis.diagnostics: the reward/end recall reads every held-out transition once, padding left
out, and counts hits per class as the definition says; the one-step recall tells a reward model that knows an
event from a denoiser that does not draw it."""

import math

import numpy as np
import pytest
import torch

from jedi_core.analysis.diagnostics import (
    SATURATED_CELL,
    one_step_reward_recall,
    reward_end_recall,
    reward_lstm_state,
)
from jedi_core.presets import make_config
from jedi_core.replay import ReplayBuffer
from jedi_core.world_model import build_world_model


class ActionReadingRewardEnd(torch.nn.Module):
    """Predicts reward class ``action % 3`` and an end when ``action >= 3``: the test sets each prediction."""

    def forward(self, latents, actions):
        reward_logits = torch.nn.functional.one_hot(actions % 3, 3).float()
        end_logits = torch.nn.functional.one_hot((actions >= 3).long(), 2).float()
        return reward_logits, end_logits, None


def test_recall_per_class_matches_the_definition():
    rng = np.random.default_rng(0)
    replay = ReplayBuffer()
    all_rewards, all_ends, all_actions = [], [], []
    for length in (10, 3):
        episode = replay.new_episode(np.zeros((64, 64, 3), np.uint8))
        for t in range(length):
            reward, action = float(rng.choice([-2.0, 0.0, 0.0, 1.0])), int(rng.integers(6))
            end = t == length - 1
            life_loss = t == 1
            frame = np.zeros((64, 64, 3), np.uint8)
            episode.append(action, reward, frame, terminated=end, life_loss=life_loss)
            all_rewards.append(np.sign(reward) + 1)
            all_ends.append(int(end or life_loss))
            all_actions.append(action)
    world_model = build_world_model(make_config("smoke"), num_actions=6)
    world_model.reward_end = ActionReadingRewardEnd()
    result = reward_end_recall(world_model, replay, window=4, batch_size=2)

    actions, rewards, ends = np.array(all_actions), np.array(all_rewards), np.array(all_ends)
    for index, name in enumerate(("-1", "0", "+1")):
        of_class = rewards == index
        expected = (actions[of_class] % 3 == index).mean() if of_class.any() else math.nan
        assert result["counts"][name] == of_class.sum()
        assert math.isclose(result["reward"][name], expected) or (math.isnan(expected)
                                                                   and math.isnan(result["reward"][name]))
    for index, name in enumerate(("no end", "end")):
        of_class = ends == index
        assert result["counts"][name] == of_class.sum()
        assert math.isclose(result["end"][name], ((actions[of_class] >= 3) == index).mean())
    # Every transition once, no padding.
    assert sum(result["counts"][name] for name in ("no end", "end")) == 13


class BrightMeansReward(torch.nn.Module):
    """Predicts +1 for a transition whose next latent is bright (positive), else 0."""

    def forward(self, latents, actions, state=None):
        bright = (latents[:, 1:].flatten(2).mean(-1) > 0).long()  # (B, T)
        return torch.nn.functional.one_hot(bright + 1, 3).float(), torch.zeros(*bright.shape, 2), state


class DarkDenoiser(torch.nn.Module):
    """Draws every next latent dark: the reward event never appears in imagination."""

    def sample_next(self, context, actions, generator=None):
        return -torch.ones_like(context[:, -1])


def test_one_step_recall_separates_the_reward_model_from_the_denoiser():
    replay = ReplayBuffer()
    rewarded = 0
    for episode_seed in range(2):
        episode = replay.new_episode(np.zeros((64, 64, 3), np.uint8))
        for t in range(12):
            reward = float((t + episode_seed) % 3 == 0)  # a bright frame follows each rewarded step
            rewarded += reward > 0 and t >= 3  # transitions after a full 4-frame context
            episode.append(t % 3, reward, np.full((64, 64, 3), 255 if reward else 0, np.uint8),
                           terminated=t == 11)
    world_model = build_world_model(make_config("smoke"), num_actions=3)
    world_model.encode = lambda frames: frames.mean(dim=(-3, -2, -1), keepdim=True)  # bright frame -> +1
    world_model.reward_end = BrightMeansReward()
    world_model.denoiser = DarkDenoiser()

    result = one_step_reward_recall(world_model, replay, per_class=5, rng=np.random.default_rng(0))
    assert result["counts"] == {"-1": 0, "0": 5, "+1": min(5, rewarded)}
    assert result["real"]["+1"] == 1.0 and result["real"]["0"] == 1.0   # the reward model knows the event
    assert result["imagined"]["+1"] == 0.0 and result["imagined"]["0"] == 1.0  # the denoiser never draws it
    assert math.isnan(result["real"]["-1"])
    # P(+1) is the softmax of the one-hot logits: e / (e + 2) where +1 is predicted, 1 / (e + 2) elsewhere.
    chosen, other = math.e / (math.e + 2), 1 / (math.e + 2)
    probability = result["plus_probability"]
    assert probability["real"]["+1"] == pytest.approx(chosen)
    assert probability["real"]["0"] == pytest.approx(other)
    assert probability["imagined"]["+1"] == pytest.approx(other)
    # Latents are -1 (dark) or +1 (bright: a reward); the dark denoiser draws -1. Rewards are 3 steps apart,
    # so a bright frame follows a dark one: the change and the sample's error are 2 after a reward, and the
    # sample is exact where no reward follows.
    assert result["real_change"]["+1"] == [[2.0]] and result["sample_error"]["+1"] == [[2.0]]
    assert result["sample_error"]["0"] == [[0.0]]


def lstm_replay(episodes: int, steps: int, same_frames: bool) -> ReplayBuffer:
    """Episodes of random frames and actions, or of one grey frame and action 0 throughout."""
    rng = np.random.default_rng(0)

    def frame() -> np.ndarray:
        shape = (64, 64, 3)
        return np.full(shape, 90, np.uint8) if same_frames else rng.integers(0, 256, shape, np.uint8)

    replay = ReplayBuffer()
    for _ in range(episodes):
        episode = replay.new_episode(frame())
        for t in range(steps):
            action = 0 if same_frames else int(rng.integers(4))
            episode.append(action, 0.0, frame(), terminated=t == steps - 1)
    return replay


@pytest.mark.parametrize("gate_bias, expected_cell", [(50.0, 6.0), (0.0, 0.0)])
def test_reward_lstm_state_reads_the_cell_the_gate_equations_give(gate_bias, expected_cell):
    """With input weights and recurrent weights zero, every gate is sigmoid(bias) and g is tanh(bias): at a
    large bias c_t = c_t-1 + 1, so after 6 steps |c| = 6, past saturation; at bias 0 the input gate halves a
    g of 0, so c stays 0."""
    world_model = build_world_model(make_config("smoke"), num_actions=4)
    lstm = world_model.reward_end.lstm
    with torch.no_grad():
        for name, parameter in lstm.named_parameters():
            parameter.zero_()
            if name == "bias_ih_l0":
                parameter.fill_(gate_bias)
    state = reward_lstm_state(world_model, lstm_replay(3, 13, same_frames=False), window=6, batch_size=2)
    assert state["windows"] == 3 * 2  # whole windows only: two of 6 in each 13-step episode
    assert state["cell_abs_mean"] == pytest.approx(expected_cell, abs=1e-4)
    assert state["saturated_cells"] == (1.0 if expected_cell > SATURATED_CELL else 0.0)


def test_reward_lstm_state_sees_features_that_do_not_vary():
    world_model = build_world_model(make_config("smoke"), num_actions=4)
    same = reward_lstm_state(world_model, lstm_replay(2, 8, same_frames=True), window=4)
    varied = reward_lstm_state(world_model, lstm_replay(2, 8, same_frames=False), window=4)
    assert same["feature_spread"] < 1e-5 < same["feature_abs_mean"]
    assert varied["feature_spread"] > 1e-3
    with pytest.raises(ValueError, match="no episode of the replay has 9 transitions"):
        reward_lstm_state(world_model, lstm_replay(1, 8, same_frames=False), window=9)
