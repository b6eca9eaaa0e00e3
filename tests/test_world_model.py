"""JEDI's training signals, checked through gradients: stop-gradient, random switching, the decoder probe."""

import dataclasses

import pytest
import torch

from jedi_core.config import make_config
from jedi_core.data import TorchBatch
from jedi_core.world_model import JEDIWorldModel, PixelWorldModel, build_world_model

NUM_ACTIONS = 4


def _model(overrides=(), preset="smoke"):
    torch.manual_seed(0)
    model = build_world_model(make_config(preset, list(overrides)), NUM_ACTIONS)
    # The output conv starts at zero (F = 0 ignores its inputs); give it weights so gradients can flow,
    # as after the first update.
    torch.nn.init.normal_(model.denoiser.net.conv_out.weight, std=0.05)
    return model


def _batch(batch=4, steps=5, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return TorchBatch(
        obs=torch.rand(batch, steps + 1, 3, 64, 64, generator=generator) * 2 - 1,
        actions=torch.randint(0, NUM_ACTIONS, (batch, steps), generator=generator),
        rewards=torch.randint(-1, 2, (batch, steps), generator=generator).float(),
        ends=torch.zeros(batch, steps, dtype=torch.bool), mask_padding=torch.ones(batch, steps + 1, dtype=torch.bool))


def _frame_gradients(model, loss_index, steps=5):
    """Gradient of one target's diffusion loss w.r.t. each input frame: (steps + 1,) norms."""
    batch = _batch(steps=steps)
    frames = batch.obs.requires_grad_()
    losses, _ = model.diffusion_losses(model.encode(frames), batch.actions, batch.mask_padding)
    losses[loss_index].backward()
    return frames.grad.flatten(2).norm(dim=2).sum(0)


def test_stop_gradient_blocks_the_target_and_keeps_the_context():
    model = _model(["world_model.num_targets=1"])
    grads = _frame_gradients(model, loss_index=0)  # frames 0..1 unused, 2..5 context, 6 target
    assert grads[-1] == 0  # the target frame's encoding receives nothing
    assert (grads[-5:-1] > 0).all()  # the four context frames do
    without = _frame_gradients(_model(["world_model.num_targets=1", "world_model.stop_gradient=false"]), 0)
    assert without[-1] > 0  # switching the stop-gradient off lets the target pull the encoder


@pytest.mark.parametrize("probability, expected", [(0.0, "encoder"), (1.0, "prediction")])
def test_random_switching_conditions_the_second_target(probability, expected, monkeypatch):
    model = _model([f"world_model.switch_prob={probability}"])
    calls = []
    original = model.denoiser.loss

    def recording_loss(target, context, actions, mask=None):
        loss, prediction = original(target, context, actions, mask)
        calls.append((context, prediction))
        return loss, prediction

    monkeypatch.setattr(model.denoiser, "loss", recording_loss)
    batch = _batch()
    latents = model.encode(batch.obs)
    model.diffusion_losses(latents, batch.actions, batch.mask_padding)
    second_context_last = calls[1][0][:, -1]
    reference = latents[:, -2] if expected == "encoder" else calls[0][1]
    torch.testing.assert_close(second_context_last, reference)


def test_switched_prediction_keeps_its_gradient_only_when_asked():
    # Frame 0 is context for the first target only, so the second target's loss reaches it only
    # through the switched-in prediction of the first target.
    with_grad = _frame_gradients(_model(["world_model.switch_prob=1", "world_model.switch_grad=true"]), 1)
    without = _frame_gradients(_model(["world_model.switch_prob=1", "world_model.switch_grad=false"]), 1)
    first_context_frame = -6
    assert with_grad[first_context_frame] > 0 and without[first_context_frame] == 0
    never_switched = _frame_gradients(_model(["world_model.switch_prob=0"]), 1)
    assert never_switched[first_context_frame] == 0


def test_latents_and_denoised_latents_stay_inside_the_clamp():
    model = _model()
    assert isinstance(model, JEDIWorldModel)
    assert model.encode(torch.rand(8, 3, 64, 64) * 2 - 1).abs().max() < 3.0
    latents = model.encode(torch.randn(8, 3, 64, 64) * 100)  # absurd inputs saturate, never overshoot
    assert latents.abs().max() <= 3.0
    context = torch.randn(2, 4, *latents.shape[1:]) * 50
    denoised = model.denoiser.denoise(torch.randn(2, *latents.shape[1:]) * 50, torch.tensor([5.0, 0.1]),
                                      context, torch.zeros(2, 4, dtype=torch.long))
    assert denoised.abs().max() <= 3.0


def test_pixel_model_outputs_valid_8_bit_images():
    model = _model(preset="smoke_diamond")
    assert isinstance(model, PixelWorldModel)
    frames = _batch(batch=2, steps=3).obs
    state = model.burn_in(frames, torch.zeros(2, 3, dtype=torch.long))
    next_frame, reward, end, _ = model.imagine_step(state, torch.ones(2, dtype=torch.long))
    assert next_frame.shape == (2, 3, 64, 64)
    assert next_frame.min() >= -1 and next_frame.max() <= 1
    levels = (next_frame + 1) * 127.5
    torch.testing.assert_close(levels, levels.round())
    assert set(reward.tolist()) <= {-1.0, 0.0, 1.0} and end.dtype == torch.bool


def test_both_models_train_through_the_same_interface():
    for preset in ("smoke", "smoke_diamond"):
        model = _model(preset=preset)
        optimizer, scheduler = model.make_optimizer()
        logs = model.training_step(_batch(), optimizer, scheduler)
        assert {"diffusion_loss", "reward_end_loss", "latent_std", "grad_norm_denoiser"} <= set(logs)


def test_encoder_learns_at_a_scaled_learning_rate():
    model = _model()
    optimizer, _ = model.make_optimizer()
    rates = {group["name"]: group["lr"] for group in optimizer.param_groups}
    assert rates["encoder"] == pytest.approx(0.3 * rates["denoiser"])
    decayed = {group["name"]: group["weight_decay"] for group in optimizer.param_groups}
    assert decayed["denoiser"] > 0 and decayed["denoiser_no_decay"] == 0


def test_decoder_probe_never_sends_gradient_to_the_encoder():
    model = _model(["world_model.decoder_probe=true"])
    gradients = []
    for probe in (model.probe, None):
        model.probe = probe
        model.zero_grad()
        torch.manual_seed(1)  # same noise levels and switches in both passes
        loss, logs = model(_batch())
        loss.backward()
        gradients.append([p.grad.clone() for p in model.encoder.parameters()])
    for with_probe, without_probe in zip(*gradients, strict=True):
        torch.testing.assert_close(with_probe, without_probe)


def test_probe_learns_and_decodes_frames():
    model = _model(["world_model.decoder_probe=true"])
    assert model.probe is not None
    loss, logs = model(_batch())
    assert "probe_loss" in logs
    assert model.probe.decode(model.encode(_batch().obs[:, 0])).shape == (4, 3, 64, 64)


def test_imagination_carries_the_reward_model_state():
    model = _model()
    frames = _batch(batch=3, steps=3).obs
    state = model.burn_in(frames, torch.zeros(3, 3, dtype=torch.long))
    assert state.reward_end_state is not None and state.latents.shape[1] == 4
    next_latent, reward, end, new_state = model.imagine_step(state, torch.tensor([0, 1, 2]))
    torch.testing.assert_close(new_state.latents[:, -1], next_latent)
    torch.testing.assert_close(new_state.latents[:, :-1], state.latents[:, 1:])
    assert new_state.actions[:, -2].tolist() == [0, 1, 2]
    assert not torch.equal(new_state.reward_end_state[0], state.reward_end_state[0])
    with pytest.raises(ValueError, match="burn-in needs 4 frames"):
        model.burn_in(frames[:, :2], torch.zeros(3, 1, dtype=torch.long))


def test_too_short_segments_are_refused():
    with pytest.raises(ValueError, match="too short"):
        _model()(_batch(steps=3))
    with pytest.raises(ValueError, match="segment_steps"):
        make_config("smoke", ["world_model.segment_steps=3"])


def test_config_changes_numbers_not_code():
    small, large = make_config("smoke"), make_config("atari100k")
    assert dataclasses.fields(small.world_model) == dataclasses.fields(large.world_model)
    assert type(build_world_model(small, 4)) is type(build_world_model(large, 4))
