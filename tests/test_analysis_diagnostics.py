"""jedi_core.analysis.diagnostics: the reward/end recall reads every held-out transition once, padding left
out, and counts hits per class as the definition says."""

import math

import numpy as np
import torch

from jedi_core.analysis.diagnostics import reward_end_recall
from jedi_core.config import make_config
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
