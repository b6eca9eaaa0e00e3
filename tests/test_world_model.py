"""jedi_core.world_model: JEDI's training signals, checked through gradients (stop-gradient, random
switching, the decoder probe), both models' shared interface, imagination steps, precision, and updates that
never wait for the device."""

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from jedi_core.agent import Agent
from jedi_core.config import make_config
from jedi_core.replay import sample_training_batch
from jedi_core.runtime import to_floats
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
    def frame_gradients(model, loss_index, steps=5):
        """Gradient of one target's diffusion loss w.r.t. each input frame: (steps + 1,) norms."""
        batch = make_batch(steps=steps)
        frames = batch.obs.requires_grad_()
        losses, _ = model.diffusion_losses(model.encode(frames), batch.actions, batch.mask_padding)
        losses[loss_index].backward()
        return frames.grad.flatten(2).norm(dim=2).sum(0)

    return frame_gradients


def test_stop_gradient_blocks_the_target_and_keeps_the_context(build, frame_gradients):
    model = build(["world_model.num_targets=1"])
    grads = frame_gradients(model, loss_index=0)  # frames 0..1 unused, 2..5 context, 6 target
    assert grads[-1] == 0  # the target frame's encoding receives nothing
    assert (grads[-5:-1] > 0).all()  # the four context frames do
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
    model.diffusion_losses(latents, batch.actions, batch.mask_padding)
    second_context_last = calls[1][0][:, -1]
    reference = latents[:, -2] if expected == "encoder" else calls[0][1]
    torch.testing.assert_close(second_context_last, reference)


@pytest.mark.parametrize("switch_per", ["batch", "sequence"])
def test_the_switch_is_drawn_once_per_batch_or_per_sequence(switch_per, build):
    """Algorithm 1 draws rs ~ Uniform{True, False} once per batch; ``switch_per=sequence``, per sequence."""
    model = build([f"world_model.switch_per={switch_per}"])
    batch_size = 16
    prediction = torch.ones(batch_size, *model.latent_shape)
    encoded = torch.zeros(batch_size, *model.latent_shape)
    torch.manual_seed(0)
    masks = torch.stack([model.switch(prediction, encoded)[1] for _ in range(400)])  # (draws, B)
    chosen, _ = model.switch(prediction, encoded)
    assert set(chosen.flatten(1).mean(1).tolist()) <= {0.0, 1.0}  # each sequence takes one of the two whole
    share = masks.float().mean().item()
    assert abs(share - 0.5) < 0.05  # switch_prob = 0.5 either way
    mixed = (masks.any(1) & ~masks.all(1)).float().mean().item()  # batches where only some sequences switched
    if switch_per == "batch":
        assert mixed == 0
    else:
        assert mixed > 0.99


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
    for preset in ("smoke", "smoke_diamond"):
        model = build(preset=preset)
        optimizer, scheduler = model.make_optimizer()
        logs = model.training_step(make_batch(), optimizer, scheduler)
        expected = {"diffusion_loss", "reward_end_loss", "latent_std", "grad_norm_denoiser",
                    "grad_norm_other"}
        assert expected <= set(logs)
        assert all(isinstance(value, torch.Tensor) and value.dim() == 0 for value in logs.values())
        floats = to_floats(logs)  # read on the host in one transfer
        assert all(isinstance(value, float) for value in floats.values()) and floats["loss"] > 0


def test_encoder_learns_at_a_scaled_learning_rate(build):
    model = build()
    optimizer, _ = model.make_optimizer()
    rates = {group["name"]: group["lr"] for group in optimizer.param_groups}
    assert rates["encoder"] == pytest.approx(0.3 * rates["denoiser"])
    decayed = {group["name"]: group["weight_decay"] for group in optimizer.param_groups}
    assert decayed["denoiser"] > 0 and decayed["denoiser_no_decay"] == 0


def test_decoder_probe_never_sends_gradient_to_the_encoder(build, make_batch):
    model = build(["world_model.decoder_probe=true"])
    gradients = []
    for probe in (model.probe, None):
        model.probe = probe
        model.zero_grad()
        torch.manual_seed(1)  # same noise levels and switches in both passes
        loss, logs = model(make_batch())
        loss.backward()
        gradients.append([p.grad.clone() for p in model.encoder.parameters()])
    for with_probe, without_probe in zip(*gradients, strict=True):
        torch.testing.assert_close(with_probe, without_probe)


def test_probe_learns_and_decodes_frames(build, make_batch):
    model = build(["world_model.decoder_probe=true"])
    assert model.probe is not None
    loss, logs = model(make_batch())
    assert "probe_loss" in logs
    assert model.probe.decode(model.encode(make_batch().obs[:, 0])).shape == (4, 3, 64, 64)


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


def test_too_short_segments_are_refused(build, make_batch):
    with pytest.raises(ValueError, match="too short"):
        build()(make_batch(steps=3))
    with pytest.raises(ValueError, match="segment_steps"):
        make_config("smoke", ["world_model.segment_steps=3"])


def test_config_changes_numbers_not_code():
    small, large = make_config("smoke"), make_config("atari100k")
    assert dataclasses.fields(small.world_model) == dataclasses.fields(large.world_model)
    assert type(build_world_model(small, 4)) is type(build_world_model(large, 4))


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
    cfg, agent, replay, rng = smoke_setup()
    batch = sample_training_batch(replay, cfg.world_model, rng).to_torch()
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
    optimizer, scheduler = world_model.make_optimizer()
    batch = sample_training_batch(replay, cfg.world_model, rng).to_torch()
    host_waits.ignore_step_of(optimizer)
    with host_waits:
        logs = world_model.training_step(batch, optimizer, scheduler, check_finite=False)
    assert host_waits.seen == []
    assert all(isinstance(value, torch.Tensor) for value in logs.values())
    # The detector does see waits: the notebook-friendly default reads the loss to check it.
    with host_waits:
        world_model.training_step(batch, optimizer, scheduler)
    assert "_local_scalar_dense" in host_waits.seen


def test_a_non_finite_loss_stops_the_update_before_any_weight_changes(build, make_batch, monkeypatch):
    model = build()
    optimizer, scheduler = model.make_optimizer()
    model.training_step(make_batch(batch=2), optimizer, scheduler)  # one good update: the optimiser has state
    before = [p.detach().clone() for p in model.parameters()]
    steps = [state["step"].clone() for state in optimizer.state.values()]
    forward = model.forward

    def diverged(batch, part):
        loss, logs = forward(batch, part)
        return loss * float("nan"), logs

    monkeypatch.setattr(model, "forward", diverged)
    with pytest.raises(FloatingPointError, match=r"loss is nan \(logs: .*diffusion_loss"):
        model.training_step(make_batch(batch=2, seed=1), optimizer, scheduler)
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before, strict=True))
    assert all(torch.equal(s["step"], b) for s, b in zip(optimizer.state.values(), steps, strict=True))
    assert scheduler.last_epoch == 1
    logs = model.training_step(make_batch(batch=2, seed=1), optimizer, scheduler, check_finite=False)
    unchecked = to_floats(logs)
    assert math.isnan(unchecked["grad_norm_denoiser"])  # unchecked, it shows in the logs the trainer reads


def test_precision_is_fixed_where_the_model_is_built(build, make_batch):
    fp32, bf16 = build(), build(["performance.precision=bf16"])
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16")
    x, weight = torch.randn(2, 3), torch.randn(4, 3)
    with fp32.autocast():
        assert F.linear(x, weight).dtype == torch.float32
    with bf16.autocast():
        assert F.linear(x, weight).dtype == torch.bfloat16
        loss, logs = bf16(make_batch())
        assert bf16.encode(make_batch().obs).dtype == torch.float32  # every network returns fp32
    assert loss.dtype == torch.float32 and all(value.dtype == torch.float32 for value in logs.values())
    # Imagination steps enter no autocast of their own (imagination.imagine enters it once per rollout):
    # outside it, the bf16 model computes exactly what the fp32 one does.
    frames = make_batch(batch=2, steps=3).obs
    steps = []
    for model in (fp32, bf16):
        state = model.burn_in(frames, torch.zeros(2, 3, dtype=torch.long))
        action = torch.ones(2, dtype=torch.long)
        steps.append(model.imagine_step(state, action, torch.Generator().manual_seed(0)))
    for from_fp32, from_bf16 in zip(steps[0][:3], steps[1][:3], strict=True):
        assert torch.equal(from_fp32, from_bf16)


def _snapshot(module):
    return [p.detach().clone() for p in module.parameters()]


def _changed(module, before):
    return any(not torch.equal(p, b) for p, b in zip(module.parameters(), before, strict=True))


@pytest.mark.parametrize("part, trains, untouched", [
    ("diffusion", ("encoder", "denoiser"), ("reward_end",)),
    ("reward_end", ("encoder", "reward_end"), ("denoiser",)),
    ("all", ("encoder", "denoiser", "reward_end"), ()),
])
def test_each_part_of_algorithm_1_trains_its_own_modules(part, trains, untouched, build, make_batch):
    model = build()
    optimizer, scheduler = model.make_optimizer(part)
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    for name in trains:
        assert all(id(p) in in_optimizer for p in getattr(model, name).parameters()), name
    for name in untouched:
        assert not any(id(p) in in_optimizer for p in getattr(model, name).parameters()), name
    before = {name: _snapshot(getattr(model, name)) for name in ("encoder", "denoiser", "reward_end")}
    for _ in range(3):  # past the warm-up's first, zero-learning-rate step
        logs = to_floats(model.training_step(make_batch(batch=2, steps=5), optimizer, scheduler, part=part))
    for name in trains:
        assert _changed(getattr(model, name), before[name]), name
    for name in untouched:
        assert not _changed(getattr(model, name), before[name]), name
    assert ("diffusion_loss" in logs) == (part != "reward_end")
    assert ("reward_end_loss" in logs) == (part != "diffusion")
    if part == "all":  # a joint update's loss is the sum of the two parts' losses
        assert logs["loss"] == pytest.approx(logs["diffusion_loss"] + logs["reward_end_loss"], rel=1e-5)


def test_diffusion_updates_read_windows_of_context_and_targets_ending_inside_the_episode():
    from jedi_core.replay import ReplayBuffer

    cfg = make_config("atari100k")
    wm = cfg.world_model
    assert wm.updates == "separate" and make_config("toy").world_model.updates == "joint"
    replay = ReplayBuffer()
    for length in (3, 8, 30):
        episode = replay.new_episode(np.zeros((64, 64, 3), np.uint8))
        for t in range(length):
            episode.append(0, 0.0, np.full((64, 64, 3), t + 1, np.uint8), terminated=t == length - 1)
    rng = np.random.default_rng(0)
    diffusion = sample_training_batch(replay, wm, rng, part="diffusion")
    assert diffusion.obs.shape[1] == wm.denoiser.context_length + wm.num_targets == 6
    assert diffusion.mask_padding[:, -1].all()  # the last target is always a real frame
    assert (diffusion.obs[:, -1] > 0).all()  # a frame that followed an action, not padding
    joint = sample_training_batch(replay, wm, rng, part="reward_end")
    assert joint.obs.shape[1] == wm.segment_steps + 1 == 20
    assert not joint.mask_padding[:, -1].all()  # long windows may run past an end (3- and 8-step episodes)
    with pytest.raises(ValueError, match="part 'both' is not one of all, diffusion, reward_end"):
        build_world_model(make_config("smoke"), NUM_ACTIONS)(None, "both")


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
        loss, _ = model(dataclasses.replace(batch, obs=frames), part="reward_end")
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
