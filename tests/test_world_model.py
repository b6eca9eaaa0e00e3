"""jedi_core.world_model: JEDI's training signals, checked through gradients (stop-gradient, random
switching, the decoder probe), both models' shared interface, Algorithm 1's two updates, imagination steps,
precision applied from outside, and updates that never wait for the device."""

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from jedi_core.agent import Agent
from jedi_core.optim import Update
from jedi_core.presets import make_config
from jedi_core.replay import TorchBatch, sample_diffusion_batch, sample_reward_end_batch
from jedi_core.runtime import autocast, to_floats
from jedi_core.world_model import JEDIWorldModel, PixelWorldModel, build_world_model, quantize_frames

NUM_ACTIONS = 4


@pytest.fixture
def build(trained_like):
    """``build(overrides=(), preset="smoke")``: a seeded world model whose output conv has weights."""

    def build(overrides=(), preset="smoke"):
        torch.manual_seed(0)
        return trained_like(build_world_model(make_config(preset, list(overrides)), NUM_ACTIONS))

    return build


@pytest.fixture
def frame_gradients(make_batch):
    def frame_gradients(model, loss_index):
        """Gradient of one target's diffusion loss w.r.t. each frame of a diffusion window: (L + K,) norms."""
        batch = make_batch(steps=model.context_length + model.cfg.num_targets - 1)
        frames = batch.obs.requires_grad_()
        losses, _ = model.target_losses(model.encode(frames), batch.actions, batch.mask_padding)
        losses[loss_index].backward()
        return frames.grad.flatten(2).norm(dim=2).sum(0)

    return frame_gradients


def test_stop_gradient_blocks_the_target_and_keeps_the_context(build, frame_gradients):
    model = build(["world_model.num_targets=1"])
    grads = frame_gradients(model, loss_index=0)  # frames 0..3 context, 4 target
    assert grads[-1] == 0  # the target frame's encoding receives nothing
    assert (grads[:-1] > 0).all()  # the four context frames do
    without = frame_gradients(build(["world_model.num_targets=1", "world_model.stop_gradient=false"]), 0)
    assert without[-1] > 0  # switching the stop-gradient off lets the target pull the encoder


@pytest.mark.parametrize("probability, expected", [(0.0, "encoder"), (1.0, "prediction")])
def test_random_switching_conditions_the_second_target(probability, expected, monkeypatch, build, make_batch):
    model = build([f"world_model.switch_prob={probability}"])
    calls = []
    original = model.denoiser.loss

    def recording_loss(target, context, actions, mask=None):
        loss, prediction = original(target, context, actions, mask)
        calls.append((context, prediction))
        return loss, prediction

    monkeypatch.setattr(model.denoiser, "loss", recording_loss)
    batch = make_batch()
    latents = model.encode(batch.obs)
    model.target_losses(latents, batch.actions, batch.mask_padding)
    second_context_last = calls[1][0][:, -1]
    reference = latents[:, -2] if expected == "encoder" else calls[0][1]
    torch.testing.assert_close(second_context_last, reference)


def test_the_switch_is_drawn_once_per_batch(build):
    """Algorithm 1 draws rs ~ Uniform{True, False} once per batch: every sequence takes the same side."""
    model = build()
    batch_size = 16
    prediction = torch.ones(batch_size, *model.latent_shape)
    encoded = torch.zeros(batch_size, *model.latent_shape)
    torch.manual_seed(0)
    draws = []
    for _ in range(400):
        chosen, switch = model.switch(prediction, encoded)
        assert switch.dim() == 0
        assert torch.equal(chosen, prediction if switch else encoded)  # the whole batch, one side
        draws.append(float(switch))
    assert abs(np.mean(draws) - 0.5) < 0.05  # switch_prob = 0.5


def test_switched_prediction_keeps_its_gradient_only_when_asked(build, frame_gradients):
    # Frame 0 is context for the first target only, so the second target's loss reaches it only
    # through the switched-in prediction of the first target.
    with_grad = frame_gradients(build(["world_model.switch_prob=1", "world_model.switch_grad=true"]), 1)
    without = frame_gradients(build(["world_model.switch_prob=1", "world_model.switch_grad=false"]), 1)
    first_context_frame = -6
    assert with_grad[first_context_frame] > 0 and without[first_context_frame] == 0
    never_switched = frame_gradients(build(["world_model.switch_prob=0"]), 1)
    assert never_switched[first_context_frame] == 0


def test_latents_and_denoised_latents_stay_inside_the_clamp(build):
    model = build()
    assert isinstance(model, JEDIWorldModel)
    assert model.encode(torch.rand(8, 3, 64, 64) * 2 - 1).abs().max() < 3.0
    latents = model.encode(torch.randn(8, 3, 64, 64) * 100)  # absurd inputs saturate, never overshoot
    assert latents.abs().max() <= 3.0
    context = torch.randn(2, 4, *latents.shape[1:]) * 50
    denoised = model.denoiser.denoise(torch.randn(2, *latents.shape[1:]) * 50, torch.tensor([5.0, 0.1]),
                                      context, torch.zeros(2, 4, dtype=torch.long))
    assert denoised.abs().max() <= 3.0


def test_pixel_model_outputs_valid_8_bit_images(build, make_batch):
    model = build(preset="smoke_diamond")
    assert isinstance(model, PixelWorldModel)
    frames = make_batch(batch=2, steps=3).obs
    state = model.burn_in(frames, torch.zeros(2, 3, dtype=torch.long))
    next_frame, reward, end, _ = model.imagine_step(state, torch.ones(2, dtype=torch.long))
    assert next_frame.shape == (2, 3, 64, 64)
    assert next_frame.min() >= -1 and next_frame.max() <= 1
    levels = (next_frame + 1) * 127.5
    torch.testing.assert_close(levels, levels.round())
    assert set(reward.tolist()) <= {-1.0, 0.0, 1.0} and end.dtype == torch.bool


def test_pixel_quantisation_truncates_like_diamonds_byte_cast_and_keeps_exact_levels():
    values = torch.linspace(-1.2, 1.2, 10_001)
    diamond = values.clamp(-1, 1).add(1).div(2).mul(255).byte().float().div(255).mul(2).sub(1)
    ours = quantize_frames(values)
    to_next_level = (values.clamp(-1, 1).add(1).mul(127.5)).ceil() - values.clamp(-1, 1).add(1).mul(127.5)
    differ = (ours - diamond).abs() > 1e-6
    assert (to_next_level[differ] < 2e-3).all()  # only where a value sits within float error of a level
    assert differ.float().mean() < 0.01
    exact = torch.arange(256).float().div(127.5).sub(1)  # real frames, as frames_to_float makes them
    torch.testing.assert_close(quantize_frames(exact), exact)


def test_both_models_train_through_the_same_interface(build, make_batch):
    expected = {"diffusion": {"diffusion_loss", "latent_std", "switched_fraction", "grad_norm_denoiser"},
                "reward_end": {"reward_end_loss", "reward_loss", "end_loss", "grad_norm_reward_end"}}
    for preset in ("smoke", "smoke_diamond"):
        model = build(preset=preset)
        optimizers = model.make_optimizers()
        assert ("encoder" in optimizers) == (preset == "smoke")  # the pixel model's encoder is the identity
        for name, update, steps in (("diffusion", model.diffusion_update(optimizers), 5),
                                    ("reward_end", model.reward_end_update(optimizers), 7)):
            logs = update(make_batch(steps=steps))
            assert expected[name] <= set(logs)
            # The encoder's gradient norm, named by the update that clipped it.
            encoder_norm = "grad_norm_encoder" if name == "diffusion" else "grad_norm_encoder_reward_end"
            assert (encoder_norm in logs) == (preset == "smoke")
            assert all(isinstance(value, torch.Tensor) and value.dim() == 0 for value in logs.values())
            floats = to_floats(logs)  # read on the host in one transfer
            assert all(isinstance(value, float) for value in floats.values())
            assert floats[f"{name}_loss"] > 0


def test_each_module_has_its_own_optimiser_and_the_encoder_learns_at_a_scaled_rate(build):
    model = build(["world_model.decoder_probe=true"])
    optimizers = model.make_optimizers()
    assert set(optimizers) == {"encoder", "denoiser", "probe", "reward_end"}
    rates = {name: optimizer.param_groups[0]["lr"] for name, (optimizer, _) in optimizers.items()}
    initial = {name: group["initial_lr"] for name, (optimizer, _) in optimizers.items()
               for group in optimizer.param_groups[:1]}
    assert set(rates.values()) == {0.0}  # the warm-up starts at 0, as DIAMOND's
    assert initial["encoder"] == pytest.approx(0.3 * initial["denoiser"])
    assert initial["denoiser"] == initial["reward_end"] == initial["probe"] == model.cfg.lr
    owned = {name: {id(p) for group in optimizer.param_groups for p in group["params"]}
             for name, (optimizer, _) in optimizers.items()}
    for name, module in (("encoder", model.encoder), ("denoiser", model.denoiser), ("probe", model.probe),
                         ("reward_end", model.reward_end)):
        assert owned[name] == {id(p) for p in module.parameters()}, name
    decayed = {group["name"]: group["weight_decay"] for group in optimizers["denoiser"][0].param_groups}
    assert decayed["denoiser"] > 0 and decayed["denoiser_no_decay"] == 0


def test_decoder_probe_never_sends_gradient_to_the_encoder(build, make_batch):
    model = build(["world_model.decoder_probe=true"])
    gradients = []
    for probe in (model.probe, None):
        model.probe = probe
        model.zero_grad()
        torch.manual_seed(1)  # same noise levels and switches in both passes
        loss, logs = model.diffusion_loss(make_batch())
        loss.backward()
        gradients.append([p.grad.clone() for p in model.encoder.parameters()])
    for with_probe, without_probe in zip(*gradients, strict=True):
        torch.testing.assert_close(with_probe, without_probe)


def test_the_probe_learns_to_draw_frames_better_than_their_mean(build):
    """Trained by diffusion updates on detached latents, the probe's reconstruction error falls below that of
    the best constant picture (the frames' mean), on frames it was not trained on."""
    model = build(["world_model.decoder_probe=true", "world_model.lr=3e-3", "world_model.warmup_steps=0"])

    def frames(count, seed):  # a bright square at a random place on a dark ground
        generator = torch.Generator().manual_seed(seed)
        corners = torch.randint(0, 48, (count, 2), generator=generator)
        picture = torch.full((count, 3, 64, 64), -0.8)
        for i, (row, column) in enumerate(corners.tolist()):
            picture[i, :, row:row + 16, column:column + 16] = 0.8
        return picture

    steps = model.context_length + model.cfg.num_targets - 1
    update = model.diffusion_update(model.make_optimizers())
    for seed in range(150):
        obs = frames(4 * (steps + 1), seed).view(4, steps + 1, 3, 64, 64)
        update(TorchBatch(obs, torch.zeros(4, steps, dtype=torch.long), torch.zeros(4, steps),
                          torch.zeros(4, steps, dtype=torch.bool),
                          torch.ones(4, steps + 1, dtype=torch.bool)))
    held_out = frames(64, seed=1_000)
    with torch.no_grad():
        drawn = model.probe.decode(model.encode(held_out))
    assert drawn.shape == held_out.shape
    probe_error = (drawn - held_out).pow(2).mean()
    mean_frame_error = (held_out.mean(0, keepdim=True) - held_out).pow(2).mean()
    assert probe_error < 0.5 * mean_frame_error, (probe_error, mean_frame_error)


def test_imagination_carries_the_reward_model_state(build, make_batch):
    model = build()
    frames = make_batch(batch=3, steps=3).obs
    state = model.burn_in(frames, torch.zeros(3, 3, dtype=torch.long))
    assert state.reward_end_state is not None and state.latents.shape[1] == 4
    next_latent, reward, end, new_state = model.imagine_step(state, torch.tensor([0, 1, 2]))
    torch.testing.assert_close(new_state.latents[:, -1], next_latent)
    torch.testing.assert_close(new_state.latents[:, :-1], state.latents[:, 1:])
    assert new_state.actions[:, -2].tolist() == [0, 1, 2]
    assert not torch.equal(new_state.reward_end_state[0], state.reward_end_state[0])
    with pytest.raises(ValueError, match="burn-in needs 4 frames"):
        model.burn_in(frames[:, :2], torch.zeros(3, 1, dtype=torch.long))


def test_diffusion_windows_of_another_length_are_refused(build, make_batch):
    with pytest.raises(ValueError, match="a diffusion window holds context_length \\+ num_targets = 6"):
        build().diffusion_loss(make_batch(steps=3))
    with pytest.raises(ValueError, match="segment_steps"):
        make_config("smoke", ["world_model.segment_steps=3"])


def test_parameter_counts_match_diamond_and_the_paper_scale():
    # DIAMOND's own counts, from its code: denoiser 4.41M, reward/end 5.90M.
    pixel = build_world_model(make_config("diamond"), num_actions=18).parameter_counts()
    assert pixel["denoiser"] == pytest.approx(4.41e6, rel=0.01)
    assert pixel["reward_end"] == pytest.approx(5.90e6, rel=0.01)
    latent = build_world_model(make_config("atari100k"), num_actions=18).parameter_counts()
    assert latent["encoder"] == pytest.approx(34e3, rel=0.05)  # [32, 32, 32, 16] SmallResBlocks
    assert 4e6 < latent["denoiser"] < 8e6  # one 160-channel level on 8x8 latents
    assert latent["total"] == latent["encoder"] + latent["denoiser"] + latent["reward_end"]


@pytest.mark.parametrize("preset", ["atari100k", "diamond"])
def test_whole_agents_have_the_papers_13_5_million_parameters(preset):
    """The paper's Table 3: JEDI and DIAMOND both 13.5M parameters (world model and actor-critic, 18 actions);
    JEDI's with its one-block, 160-channel latent denoiser."""
    agent = Agent(make_config(preset), 18)
    assert sum(p.numel() for p in agent.parameters()) == pytest.approx(13.5e6, rel=0.02)


def test_the_masked_reward_end_loss_equals_the_boolean_indexed_one(smoke_setup):
    """The masked means give the same reward/end loss as indexing the real transitions first."""
    cfg, agent, replay, rng = smoke_setup(overrides=["world_model.batch_size=256"])
    batch = sample_reward_end_batch(replay, cfg.world_model, rng).to_torch()
    reward_end = agent.world_model.reward_end
    latents = agent.world_model.encode(batch.obs)
    mask = batch.mask_padding[:, :-1] & batch.mask_padding[:, 1:]
    assert torch.equal(batch.transition_mask, mask)
    assert not mask.all()  # the windows run past episode ends: there is padding to mask
    reward_logits, end_logits, _ = reward_end(latents, batch.actions)
    reference = (F.cross_entropy(reward_logits[mask], batch.rewards.sign().long()[mask] + 1)
                 + F.cross_entropy(end_logits[mask], batch.ends[mask].long()))
    loss, _ = reward_end.loss(latents, batch.actions, batch.rewards, batch.ends, mask)
    assert torch.allclose(loss, reference, atol=1e-6)


@pytest.mark.parametrize("preset", ["smoke", "smoke_diamond"])
def test_world_model_updates_never_wait_for_the_device(preset, smoke_setup, host_waits):
    cfg, agent, replay, rng = smoke_setup(preset)
    world_model = agent.world_model
    optimizers = world_model.make_optimizers()
    for optimizer, _ in optimizers.values():
        host_waits.ignore_step_of(optimizer)
    updates = ((world_model.diffusion_update(optimizers), sample_diffusion_batch),
               (world_model.reward_end_update(optimizers), sample_reward_end_batch))
    for update, sample in updates:
        batch = sample(replay, cfg.world_model, rng).to_torch()
        with host_waits:
            logs = update(batch, check_finite=False)
        assert host_waits.seen == []
        assert all(isinstance(value, torch.Tensor) for value in logs.values())
    # The detector does see waits: the notebook-friendly default reads the loss to check it.
    with host_waits:
        update(batch)
    assert "_local_scalar_dense" in host_waits.seen


def test_a_non_finite_loss_stops_the_update_before_any_weight_changes(build, make_batch):
    model = build()
    optimizers = model.make_optimizers()
    update = model.diffusion_update(optimizers)
    update(make_batch(batch=2))  # one good update: the optimisers have state
    before = [p.detach().clone() for p in model.parameters()]
    steps = [state["step"].clone()
             for optimizer, _ in update.optimizers for state in optimizer.state.values()]

    def diverged(batch):
        loss, logs = model.diffusion_loss(batch)
        return loss * float("nan"), logs

    broken = Update(diverged, update.optimizers, update.clip_groups)
    with pytest.raises(FloatingPointError, match=r"loss is nan \(logs: .*diffusion_loss"):
        broken(make_batch(batch=2, seed=1))
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before, strict=True))
    after = [state["step"] for optimizer, _ in update.optimizers for state in optimizer.state.values()]
    assert all(torch.equal(s, b) for s, b in zip(after, steps, strict=True))
    assert all(scheduler.last_epoch == 1 for _, scheduler in update.optimizers)
    unchecked = to_floats(broken(make_batch(batch=2, seed=1), check_finite=False))
    assert math.isnan(unchecked["grad_norm_denoiser"])  # unchecked, it shows in the logs the trainer reads


def test_precision_is_applied_from_outside_the_model(build, make_batch):
    """bf16 autocast around a call runs the matmuls in bf16; the networks still return fp32, and outside it
    the model computes in fp32: it holds no precision of its own."""
    model = build()
    x, weight = torch.randn(2, 3), torch.randn(4, 3)
    with autocast("cpu", "fp32"):
        assert F.linear(x, weight).dtype == torch.float32
    batch = make_batch()
    with autocast("cpu", "bf16"):
        assert F.linear(x, weight).dtype == torch.bfloat16
        torch.manual_seed(0)
        loss, logs = model.diffusion_loss(batch)
        assert model.encode(batch.obs).dtype == torch.float32  # every network returns fp32
    assert loss.dtype == torch.float32 and all(value.dtype == torch.float32 for value in logs.values())
    torch.manual_seed(0)
    fp32_loss, _ = model.diffusion_loss(batch)
    assert not torch.equal(loss, fp32_loss)  # the bf16 matmuls did round
    torch.testing.assert_close(loss, fp32_loss, rtol=0.05, atol=1e-3)


def _snapshot(module):
    return [p.detach().clone() for p in module.parameters()]


def _changed(module, before):
    return any(not torch.equal(p, b) for p, b in zip(module.parameters(), before, strict=True))


@pytest.mark.parametrize("update_name, trains, untouched", [
    ("diffusion_update", ("encoder", "denoiser"), ("reward_end",)),
    ("reward_end_update", ("encoder", "reward_end"), ("denoiser",)),
])
def test_each_update_of_algorithm_1_trains_its_own_modules(update_name, trains, untouched, build, make_batch):
    model = build()
    optimizers = model.make_optimizers()
    update = getattr(model, update_name)(optimizers)
    assert update.optimizers == [optimizers[name] for name in trains]
    before = {name: _snapshot(getattr(model, name)) for name in ("encoder", "denoiser", "reward_end")}
    steps = 5 if update_name == "diffusion_update" else 7
    for _ in range(3):  # past the warm-up's first, zero-learning-rate step
        update(make_batch(batch=2, steps=steps))
    for name in trains:
        assert _changed(getattr(model, name), before[name]), name
    for name in untouched:
        assert not _changed(getattr(model, name), before[name]), name


def test_the_encoder_has_one_optimiser_that_both_updates_step(build, make_batch):
    """One Adam state for the encoder, whose weight decay and moments move once per update that trains it."""
    model = build()
    optimizers = model.make_optimizers()
    diffusion, reward_end = model.diffusion_update(optimizers), model.reward_end_update(optimizers)
    diffusion(make_batch(batch=2, steps=5))
    reward_end(make_batch(batch=2, steps=7))
    encoder_optimizer, encoder_schedule = optimizers["encoder"]
    assert diffusion.optimizers[0] is reward_end.optimizers[0] is optimizers["encoder"]
    assert {int(state["step"]) for state in encoder_optimizer.state.values()} == {2}
    assert encoder_schedule.last_epoch == 2
    for name in ("denoiser", "reward_end"):
        assert {int(state["step"]) for state in optimizers[name][0].state.values()} == {1}


def test_training_windows_hold_a_diffusion_window_or_a_reward_end_window():
    from jedi_core.replay import ReplayBuffer

    wm = make_config("atari100k").world_model
    replay = ReplayBuffer()
    for length in (3, 8, 30):
        episode = replay.new_episode(np.zeros((64, 64, 3), np.uint8))
        for t in range(length):
            episode.append(0, 0.0, np.full((64, 64, 3), t + 1, np.uint8), terminated=t == length - 1)
    rng = np.random.default_rng(0)
    diffusion = sample_diffusion_batch(replay, wm, rng)
    assert diffusion.obs.shape[1] == wm.denoiser.context_length + wm.num_targets == 6
    assert diffusion.mask_padding[:, -1].all()  # the last target is always a real frame
    reward_end = sample_reward_end_batch(replay, wm, rng)
    assert reward_end.obs.shape[1] == wm.segment_steps + 1 == 19  # DIAMOND's 19 frames
    assert not reward_end.mask_padding[:, -1].all()  # windows may run past an end (3- and 8-step episodes)


def test_sampled_next_input_trains_the_reward_model_on_imaginations_inputs(build, make_batch, monkeypatch):
    """With ``reward_end.next_input=sampled``, transition t reads (z_t, the denoiser's sample of z_t+1 from
    the real context) once a full context precedes it, the real z_t+1 before, and no gradient comes back
    through the samples: the last frame, seen only as a sampled x_t+1, gets none; with real inputs it does."""
    def marked_sample(context, actions, generator=None):  # deterministic, so the reference can repeat it
        return context.mean(1).flip(-1) + 0.1 * actions[:, -1].float().view(-1, 1, 1, 1)

    batch = make_batch(batch=2, steps=6)
    gradients = {}
    for next_input in ("real", "sampled"):
        model = build([f"world_model.reward_end.next_input={next_input}"])
        monkeypatch.setattr(model.denoiser, "sample_next", marked_sample)
        frames = batch.obs.clone().requires_grad_()
        loss, _ = model.reward_end_loss(dataclasses.replace(batch, obs=frames))
        loss.backward()
        gradients[next_input] = frames.grad.flatten(2).norm(dim=2).sum(0)
        if next_input == "sampled":
            latents = model.encode(batch.obs)
            length = model.context_length
            windows = [slice(t - length + 1, t + 1) for t in range(length - 1, 6)]
            samples = [marked_sample(latents[:, window], batch.actions[:, window]) for window in windows]
            next_latents = torch.cat([latents[:, 1:length], torch.stack(samples, dim=1)], dim=1)
            reference, _ = model.reward_end.loss(latents, batch.actions, batch.rewards, batch.ends,
                                                 batch.transition_mask, next_latents)
            torch.testing.assert_close(loss.detach(), reference.detach())
    assert gradients["real"][-1] > 0
    assert gradients["sampled"][-1] == 0
    assert (gradients["sampled"][:-1] > 0).all()  # every earlier frame is still some transition's x_t
