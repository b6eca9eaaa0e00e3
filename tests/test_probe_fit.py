"""jedi_core.analysis.probe_fit: a decoder probe fitted offline learns to draw the latents of recorded frames,
leaves the encoder and the caller's random stream alone, and encodes each frame it draws once."""

import numpy as np
import pytest
import torch

from jedi_core.agent import Agent
from jedi_core.analysis.probe_fit import draw_frames, encode_frames, fit_decoder_probe
from jedi_core.envs import env_num_actions
from jedi_core.presets import make_config
from jedi_core.replay import frames_to_float
from jedi_core.training.collect import collect_random_steps


@pytest.fixture(scope="module")
def toy():
    cfg = make_config("toy")
    torch.manual_seed(0)
    agent = Agent(cfg, env_num_actions(cfg.env))
    episodes = [episode.obs for episode in collect_random_steps(cfg.env, 300, seed=0).episodes]
    return agent.world_model, episodes


def test_the_probe_learns_to_draw_latents_without_touching_the_encoder(toy):
    world_model, episodes = toy
    encoder_before = [p.detach().clone() for p in world_model.encoder.parameters()]
    frames = np.concatenate(episodes)
    latents = encode_frames(world_model, frames, chunk=64)
    target = frames_to_float(torch.from_numpy(frames))
    drawn = {updates: draw_frames(fit_decoder_probe(world_model, episodes, updates).decode, latents, chunk=64)
             for updates in (1, 300)}
    error = {updates: torch.nn.functional.mse_loss(drawn[updates], target).item() for updates in drawn}
    assert error[300] < 0.3 * error[1], error
    for before, after in zip(encoder_before, world_model.encoder.parameters(), strict=True):
        assert torch.equal(before, after)


def test_chunks_change_nothing(toy):
    world_model, episodes = toy
    frames = np.concatenate(episodes)[:50]
    with torch.no_grad():
        whole = world_model.encode(frames_to_float(torch.from_numpy(frames)))
    close = {"atol": 1e-4, "rtol": 1e-4}  # the batch size picks the convolutions' kernels: float noise only
    torch.testing.assert_close(encode_frames(world_model, frames, chunk=7), whole, **close)
    probe = fit_decoder_probe(world_model, episodes, updates=1)
    torch.testing.assert_close(draw_frames(probe.decode, whole, chunk=7), probe.decode(whole), **close)


def test_each_drawn_frame_is_encoded_once(toy, monkeypatch):
    world_model, episodes = toy
    encoded, encode = [], world_model.encode

    def counted(frames):
        encoded.append(len(frames))
        return encode(frames)

    monkeypatch.setattr(world_model, "encode", counted)
    fit_decoder_probe(world_model, episodes, updates=60, batch_size=8)  # 480 draws
    total = sum(len(frames) for frames in episodes)
    assert total < 480 and sum(encoded) <= total


def test_a_seed_gives_one_probe_and_leaves_the_callers_random_stream_alone(toy):
    world_model, episodes = toy
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    first = fit_decoder_probe(world_model, episodes, updates=5, seed=4, channels=(4, 4, 2))
    assert torch.equal(torch.rand(3), expected)
    second = fit_decoder_probe(world_model, episodes, updates=5, seed=4, channels=(4, 4, 2))
    other = fit_decoder_probe(world_model, episodes, updates=5, seed=5, channels=(4, 4, 2))
    for name, value in first.state_dict().items():
        assert torch.equal(second.state_dict()[name], value), name
    assert any(not torch.equal(other.state_dict()[name], value) for name, value in first.state_dict().items())
    assert first.layers[0].out_channels == 4  # the channels asked for, not the world model's


@pytest.mark.parametrize("options", [{"updates": 0}, {"batch_size": 0}])
def test_no_updates_is_refused(toy, options):
    with pytest.raises(ValueError, match="at least one update of at least one frame"):
        fit_decoder_probe(*toy, **options)
