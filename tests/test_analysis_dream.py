"""jedi_core.analysis.dream: playing inside the world model, on a toy-game world model with a decoder probe.

The tests do not rest on a trained agent: the context is a real Catch episode, and where a test needs the
dream to end (or not) the reward/end model's end flag is set by the test (:class:`_EndFlag`).
"""

import numpy as np
import pytest
import torch

from jedi_core.agent import Agent, play_episode
from jedi_core.analysis.dream import DreamGame, dream_widget
from jedi_core.envs import env_num_actions, make_env
from jedi_core.presets import make_config
from jedi_core.replay import frames_to_float
from jedi_core.world_model import build_world_model


class _EndFlag(torch.nn.Module):
    """The reward/end head with its end logits replaced: always an end (``end=True``) or never one."""

    def __init__(self, head, end):
        super().__init__()
        self.head, self.end = head, end

    def forward(self, hidden):
        logits = self.head(hidden)
        end_logits = torch.tensor([-30.0, 30.0] if self.end else [30.0, -30.0])
        return torch.cat([logits[..., :3], end_logits.expand(*logits.shape[:-1], 2)], dim=-1)


def _set_end(world_model, end):
    reward_end = world_model.reward_end
    head = reward_end.head.head if isinstance(reward_end.head, _EndFlag) else reward_end.head
    reward_end.head = _EndFlag(head, end)


@pytest.fixture
def toy():
    """A toy-game agent with a decoder probe (untrained but for its output layers, so that its dreams move),
    and the real context of a Catch episode it played; its dreams never end unless a test says so."""
    cfg = make_config("toy", ["world_model.decoder_probe=true"])
    torch.manual_seed(0)
    agent = Agent(cfg, env_num_actions(cfg.env))
    torch.nn.init.normal_(agent.world_model.denoiser.net.conv_out.weight, std=0.05)
    episode = play_episode(agent, make_env(cfg.env), seed=5, keep_frames=True)
    length = agent.world_model.context_length
    _set_end(agent.world_model, end=False)
    return agent.world_model, episode.frames[:length], episode.actions[:length - 1]


def test_each_step_is_the_world_models_imagination_step_drawn_by_the_probe(toy):
    world_model, frames, actions = toy
    game = DreamGame(world_model, world_model.probe, frames, actions, seed=3)
    chosen = [1, 1, 0, 2]
    played = [game.step(action) for action in chosen]

    generator = torch.Generator().manual_seed(3)  # the reference, written from the world model's own API
    with torch.no_grad():
        context = frames_to_float(torch.from_numpy(frames))[None]
        state = world_model.burn_in(context, torch.from_numpy(actions)[None])
        for (picture, reward, end), action in zip(played, chosen, strict=True):
            step = world_model.imagine_step(state, torch.tensor([action]), generator)
            latent, ref_reward, ref_end, state = step
            drawn = world_model.probe.decode(latent)[0].add(1).mul(127.5).round().clamp(0, 255).byte()
            assert np.array_equal(picture, drawn.permute(1, 2, 0).numpy())
            assert reward == float(ref_reward[0]) and end == bool(ref_end[0])
    assert game.steps == 4 and game.total_reward == sum(reward for _, reward, _ in played)
    assert not np.array_equal(played[0][0], played[1][0])  # the dream moves


def test_reset_replays_the_same_dream_and_an_ended_dream_only_resets(toy):
    world_model, frames, actions = toy
    game = DreamGame(world_model, world_model.probe, frames, actions, seed=0)
    first = [game.step(1)[0] for _ in range(2)]
    assert np.array_equal(game.reset(), frames[-1]) and game.steps == 0 and game.total_reward == 0
    assert all(np.array_equal(a, game.step(1)[0]) for a in first)
    _set_end(world_model, end=True)  # the world model now ends the game at the next step
    assert game.step(0)[2] and game.ended and game.steps == 3
    with pytest.raises(RuntimeError, match="reset"):
        game.step(0)
    game.reset()
    assert not game.ended and game.step(0)[0].shape == frames[-1].shape


def test_bad_context_and_a_latent_model_without_probe_are_refused_clearly(toy):
    world_model, frames, actions = toy
    with pytest.raises(ValueError, match="4 real frames and the 3 actions"):
        DreamGame(world_model, world_model.probe, frames[:2], actions)
    with pytest.raises(ValueError, match="decoder probe"):
        DreamGame(world_model, None, frames, actions)
    pixel = build_world_model(make_config("smoke_diamond"), num_actions=3)
    assert DreamGame(pixel, None, frames, actions).step(0)[0].shape == (64, 64, 3)  # its frames are pictures


def test_the_widget_has_a_button_per_action_that_steps_the_dream(toy):
    world_model, frames, actions = toy
    game = DreamGame(world_model, world_model.probe, frames, actions)
    names = ["NOOP", "LEFT", "RIGHT"]
    widget = dream_widget(game, names)
    buttons = widget.children[1].children
    assert [button.description for button in buttons] == names
    status = widget.children[0].children[1]
    buttons[1].click()
    assert game.steps == 1 and "imagined step 1" in status.value
    assert not any(button.disabled for button in buttons)
    _set_end(world_model, end=True)
    buttons[0].click()
    assert game.ended and game.steps == 2
    assert all(button.disabled for button in buttons) and "ended" in status.value
    widget.children[2].click()  # restart
    assert game.steps == 0 and not any(button.disabled for button in buttons)
