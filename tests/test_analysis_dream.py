"""jedi_core.analysis.dream: playing inside the world model, on the shipped toy agent (it has a probe)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from jedi_core.agent import play_episode
from jedi_core.analysis.dream import DreamGame, dream_widget
from jedi_core.config import make_config
from jedi_core.envs import make_env
from jedi_core.replay import frames_to_float
from jedi_core.training.checkpoint import load_agent
from jedi_core.world_model import build_world_model

SHIPPED_AGENT = Path(__file__).resolve().parents[1] / "assets" / "catch_toy_agent.pt"


@pytest.fixture(scope="module")
def toy():
    cfg, agent, _ = load_agent(SHIPPED_AGENT, device="cpu")
    env = make_env(cfg.env)
    episode = play_episode(agent, env, seed=5, keep_frames=True)
    length = agent.world_model.context_length
    return agent.world_model, episode.frames[:length], episode.actions[:length - 1]


def test_each_step_is_the_world_models_imagination_step_drawn_by_the_probe(toy):
    world_model, frames, actions = toy
    game = DreamGame(world_model, world_model.probe, frames, actions, seed=3)
    chosen = [1, 1, 0, 2]
    played = [game.step(action) for action in chosen[:2]]  # Catch ends after a few steps: two stay inside it

    generator = torch.Generator().manual_seed(3)  # the reference, written from the world model's own API
    with torch.no_grad():
        context = frames_to_float(torch.from_numpy(frames))[None]
        state = world_model.burn_in(context, torch.from_numpy(actions)[None])
        for (picture, reward, end), action in zip(played, chosen, strict=False):
            step = world_model.imagine_step(state, torch.tensor([action]), generator)
            latent, ref_reward, ref_end, state = step
            drawn = world_model.probe.decode(latent)[0].add(1).mul(127.5).round().clamp(0, 255).byte()
            assert np.array_equal(picture, drawn.permute(1, 2, 0).numpy())
            assert reward == float(ref_reward[0]) and end == bool(ref_end[0])
    assert game.steps == 2 and game.total_reward == sum(reward for _, reward, _ in played)


def test_reset_replays_the_same_dream_and_an_ended_dream_only_resets(toy):
    world_model, frames, actions = toy
    game = DreamGame(world_model, world_model.probe, frames, actions, seed=0)
    first = [game.step(1)[0] for _ in range(2)]
    assert np.array_equal(game.reset(), frames[-1]) and game.steps == 0 and game.total_reward == 0
    assert all(np.array_equal(a, game.step(1)[0]) for a in first)
    for _ in range(30):  # Catch's ball lands within 7 steps: the world model ends the game
        if game.step(0)[2]:
            break
    assert game.ended
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
    while not game.ended:
        buttons[0].click()
    assert all(button.disabled for button in buttons) and "ended" in status.value
    widget.children[2].click()  # restart
    assert game.steps == 0 and not any(button.disabled for button in buttons)
