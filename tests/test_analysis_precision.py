"""jedi_core.analysis.precision: bf16 autocast and torch.compile stay within tolerance of fp32 eager, and bf16
training follows the fp32 loss curve."""

import numpy as np
import pytest
import torch

from jedi_core.analysis.precision import fast_copy, output_deviation, relative_error
from jedi_core.replay import sample_contexts, sample_diffusion_batch, sample_reward_end_batch
from jedi_core.runtime import to_floats, use_channels_last
from jedi_core.training.updates import make_updates


def _inputs(cfg, agent, replay, rng):
    batch = sample_diffusion_batch(replay, cfg.world_model, rng).to_torch()  # what output_deviation takes
    contexts = sample_contexts(replay, 8, agent.world_model.context_length, rng, cfg.replay.sample_weights,
                               "cpu")
    return batch, contexts


def test_relative_error_is_the_norm_of_the_difference_over_the_reference():
    reference = torch.tensor([3.0, 4.0])
    assert relative_error(reference, torch.tensor([3.0, 4.5])) == pytest.approx(0.1)
    assert relative_error(reference, reference.to(torch.bfloat16)) == 0.0


def test_fast_copy_builds_a_new_agent_with_the_same_weights_and_the_fast_settings(smoke_setup):
    _, agent, _, _ = smoke_setup()
    fast = fast_copy(agent, "bf16")
    assert fast is not agent
    assert fast.cfg.performance.precision == "bf16" and agent.cfg.performance.precision == "fp32"
    reference = agent.state_dict()
    assert list(fast.state_dict()) == list(reference)
    for name, value in fast.state_dict().items():
        assert torch.equal(value, reference[name]), name


@pytest.mark.parametrize("preset", ["smoke", "smoke_diamond"])
def test_bf16_autocast_stays_within_tolerance_of_fp32(preset, smoke_setup, trained_like):
    cfg, agent, replay, rng = smoke_setup(preset)
    agent = trained_like(agent)
    batch, contexts = _inputs(cfg, agent, replay, rng)
    deviation = output_deviation(agent, fast_copy(agent, "bf16"), batch, contexts)
    assert all(0 < error < 0.05 for error in deviation.values()), deviation  # it does run in bf16, and close


def test_channels_last_gives_the_contiguous_outputs_to_float_rounding(smoke_setup, trained_like):
    cfg, agent, replay, rng = smoke_setup()
    agent = trained_like(agent)
    batch, contexts = _inputs(cfg, agent, replay, rng)
    fast = fast_copy(agent, channels_last="on")
    kernels = [p for p in fast.parameters() if p.dim() == 4 and p.shape[-1] > 1]
    assert kernels and all(p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
                           for p in kernels)
    deviation = output_deviation(agent, fast, batch, contexts)
    assert all(error < 1e-5 for error in deviation.values()), deviation


def test_bf16_training_keeps_fp32_weights_and_follows_the_fp32_loss_curve(smoke_setup):
    """The run's updates (``training.updates.make_updates``) at ``performance.precision``, on one batch each,
    alternating as Algorithm 1's loops do at an epoch's end."""
    losses = ("diffusion_loss", "reward_end_loss")
    curves = {}
    for precision in ("fp32", "bf16"):
        cfg, agent, replay, rng = smoke_setup(overrides=[f"performance.precision={precision}",
                                                         "world_model.warmup_steps=1"])
        world_model = agent.world_model
        updates = make_updates(agent, world_model.make_optimizers(), agent.make_actor_critic_optimizer(),
                               cfg.performance)
        batches = [sample(replay, cfg.world_model, rng).to_torch()
                   for sample in (sample_diffusion_batch, sample_reward_end_batch)]
        torch.manual_seed(1)
        logs = [to_floats({**updates.diffusion(batches[0]), **updates.reward_end(batches[1])})
                for _ in range(25)]
        curves[precision] = {loss: [log[loss] for log in logs] for loss in losses}
        assert all(parameter.dtype == torch.float32 for parameter in world_model.parameters())
    for loss in losses:
        assert curves["bf16"][loss] != curves["fp32"][loss], loss  # the updates did run in bf16
        fp32, bf16 = (np.mean(curves[p][loss][-8:]) for p in ("fp32", "bf16"))
        assert bf16 < 0.9 * np.mean(curves["bf16"][loss][:5]), loss  # it learns
        assert abs(bf16 - fp32) < 0.02 * fp32, loss  # as fp32 does


def test_channels_last_training_follows_the_contiguous_updates(smoke_setup):
    """The run's three updates with ``performance.channels_last=on`` and ``off`` from the same weights and
    draws: the same losses and weights, to float rounding."""
    results = {}
    for setting in ("off", "on"):
        cfg, agent, replay, rng = smoke_setup(overrides=[f"performance.channels_last={setting}",
                                                         "world_model.warmup_steps=1"])
        use_channels_last(agent, setting, "cpu")
        updates = make_updates(agent, agent.world_model.make_optimizers(),
                               agent.make_actor_critic_optimizer(), cfg.performance)
        torch.manual_seed(1)
        logs = []
        wm_cfg, length = cfg.world_model, agent.world_model.context_length
        for _ in range(3):
            logs.append(to_floats(updates.diffusion(sample_diffusion_batch(replay, wm_cfg, rng).to_torch())))
            batch = sample_reward_end_batch(replay, wm_cfg, rng).to_torch()
            logs.append(to_floats(updates.reward_end(batch)))
            contexts = sample_contexts(replay, 2 * cfg.actor_critic.batch_size, length, rng,
                                       cfg.replay.sample_weights, "cpu")
            logs.append(to_floats(updates.actor_critic(*contexts)))
        results[setting] = logs, {name: value.clone() for name, value in agent.state_dict().items()}
    (logs_off, weights_off), (logs_on, weights_on) = results["off"], results["on"]
    for off, on in zip(logs_off, logs_on, strict=True):
        assert on == pytest.approx(off, rel=1e-3, abs=1e-4)
    for name, value in weights_off.items():
        assert relative_error(value, weights_on[name]) < 1e-3, name


def test_compiled_agent_matches_eager_and_keeps_its_checkpoint_names(smoke_setup, trained_like):
    cfg, agent, replay, rng = smoke_setup()
    agent = trained_like(agent)
    batch, contexts = _inputs(cfg, agent, replay, rng)
    names = list(agent.state_dict())

    # aot_eager traces every graph as inductor would (fullgraph: a graph break fails here), without
    # generating kernels, so it runs anywhere.
    compiled = fast_copy(agent)
    for module in compiled.per_step_networks().values():
        module.compile(backend="aot_eager", fullgraph=True)
    deviation = output_deviation(agent, compiled, batch, contexts)
    assert all(error < 1e-5 for error in deviation.values()), deviation
    # What a run with performance.compile does, through fast_copy.
    deviation = output_deviation(agent, fast_copy(agent, compile_mode="default", backend="aot_eager"), batch,
                                 contexts)
    assert all(error < 1e-5 for error in deviation.values()), deviation

    assert agent.compile_per_step_networks("off") == []
    compiled_names = agent.compile_per_step_networks("reduce-overhead", backend="aot_eager")
    assert compiled_names == list(agent.per_step_networks())
    assert list(agent.per_step_networks()) == ["world_model.denoiser.net", "world_model.reward_end.encoder",
                                               "actor_critic", "world_model.encoder"]
    pixel = smoke_setup("smoke_diamond")[1]
    assert "world_model.encoder" not in pixel.per_step_networks()  # an identity: nothing to compile
    assert list(agent.state_dict()) == names
