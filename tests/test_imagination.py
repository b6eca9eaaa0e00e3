"""jedi_core.imagination: rollouts imagined from real contexts, and actor-critic updates that never wait."""

import pytest
import torch

from jedi_core.analysis.precision import fast_copy, relative_error
from jedi_core.imagination import actor_critic_training_step, imagine
from jedi_core.nn.ops import sample_categorical
from jedi_core.replay import sample_contexts
from jedi_core.runtime import to_floats


def _contexts(cfg, agent, replay, rng, batch_size=8):
    length = agent.world_model.context_length
    return sample_contexts(replay, batch_size, length, rng, cfg.replay.sample_weights, "cpu")


@pytest.mark.parametrize("preset", ["smoke", "smoke_diamond"])
def test_actor_critic_updates_never_wait_for_the_device(preset, smoke_setup, host_waits):
    cfg, agent, replay, rng = smoke_setup(preset)
    optimizer, scheduler = agent.make_actor_critic_optimizer()
    assert cfg.actor_critic.after_end == "restart"  # restarts in place are part of what must not wait

    def contexts(count):
        return _contexts(cfg, agent, replay, rng, count)

    host_waits.ignore_step_of(optimizer)
    with host_waits:
        logs = actor_critic_training_step(agent.world_model, agent.actor_critic, contexts, cfg.actor_critic,
                                          optimizer, scheduler, check_finite=False)
    assert host_waits.seen == []
    assert all(isinstance(value, torch.Tensor) and value.dim() == 0 for value in logs.values())
    assert {"grad_norm_actor_critic", "entropy", "return_mean"} <= set(to_floats(logs))
    # The detector does see waits: the notebook-friendly default reads the loss to check it.
    with host_waits:
        actor_critic_training_step(agent.world_model, agent.actor_critic, contexts, cfg.actor_critic,
                                   optimizer, scheduler)
    assert "_local_scalar_dense" in host_waits.seen


def test_a_rollout_starts_from_the_context_and_masks_the_steps_after_an_end(smoke_setup):
    cfg, agent, replay, rng = smoke_setup()
    frames, actions = _contexts(cfg, agent, replay, rng, batch_size=16)
    horizon = 6
    rollout = imagine(agent.world_model, agent.actor_critic, frames, actions, horizon,
                      generator=torch.Generator().manual_seed(0))
    assert rollout.logits.shape == (16, horizon, 4) and rollout.latents.shape[:2] == (16, horizon + 1)
    torch.testing.assert_close(rollout.latents[:, 0], agent.world_model.encode(frames[:, -1]))
    assert rollout.logits.requires_grad and not rollout.next_values.requires_grad
    ended_before = torch.cumsum(rollout.ends.int(), dim=1) - rollout.ends.int()
    assert torch.equal(rollout.alive, ended_before == 0)
    assert rollout.alive[:, 0].all()  # every rollout's first step counts
    assert set(rollout.rewards.unique().tolist()) <= {-1.0, 0.0, 1.0}


def test_a_bf16_rollout_enters_autocast_once_and_returns_fp32(smoke_setup, trained_like, monkeypatch):
    cfg, agent, replay, rng = smoke_setup(overrides=["performance.precision=bf16"])
    trained_like(agent)
    world_model = agent.world_model
    entered = []
    autocast = world_model.autocast
    monkeypatch.setattr(world_model, "autocast", lambda **kwargs: entered.append(1) or autocast(**kwargs))
    contexts = _contexts(cfg, agent, replay, rng)
    rollout = imagine(world_model, agent.actor_critic, *contexts, horizon=3,
                      generator=torch.Generator().manual_seed(0))
    assert entered == [1]  # one precision context for the whole rollout
    for name in ("logits", "values", "next_values", "latents"):
        assert getattr(rollout, name).dtype == torch.float32, name
    # bf16 did run inside: the same weights and draws in fp32 give close but not identical latents.
    fp32 = fast_copy(agent, "fp32")
    reference = imagine(fp32.world_model, fp32.actor_critic, *contexts, horizon=3,
                        generator=torch.Generator().manual_seed(0))
    assert not torch.equal(rollout.latents[:, 1], reference.latents[:, 1])
    assert relative_error(reference.latents[:, 1], rollout.latents[:, 1]) < 0.1


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_reinforce_uses_the_policy_the_actions_were_drawn_from(temperature, smoke_setup, trained_like):
    """With a temperature T the actions come from softmax(logits / T), so the rollout's logits, whose
    log-probabilities REINFORCE differentiates, are the actor's logits / T (not the untempered ones)."""
    cfg, agent, replay, rng = smoke_setup()
    trained_like(agent)
    frames, actions = _contexts(cfg, agent, replay, rng, batch_size=4)
    rollout = imagine(agent.world_model, agent.actor_critic, frames, actions, horizon=1,
                      temperature=temperature, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        latents = agent.world_model.encode(frames)
        hidden = agent.actor_critic.initial_state(4)
        for step in range(latents.shape[1]):  # the same warm-up, then the first imagined step's logits
            actor_logits, _, hidden = agent.actor_critic(latents[:, step], hidden)
    torch.testing.assert_close(rollout.logits[:, 0], actor_logits / temperature)
    # And the draw follows those logits: the same generator draws the same actions from them.
    expected = sample_categorical((actor_logits / temperature).softmax(-1), torch.Generator().manual_seed(0))
    assert torch.equal(rollout.actions[:, 0], expected)


def _forced_ends(world_model, monkeypatch, schedule, batch):
    """Make the world model's imagined step t report the ends ``schedule[t]`` (none where absent)."""
    step = world_model.imagine_step
    steps_taken = []

    def forced(state, action, generator=None):
        latent, reward, _, new_state = step(state, action, generator)
        ends = schedule.get(len(steps_taken), [False] * batch)
        steps_taken.append(1)
        return latent, reward, torch.tensor(ends), new_state

    monkeypatch.setattr(world_model, "imagine_step", forced)


def test_an_ended_rollout_restarts_in_place_from_the_next_fresh_context(smoke_setup, trained_like,
                                                                        monkeypatch):
    cfg, agent, replay, rng = smoke_setup()
    trained_like(agent)
    world_model, actor_critic = agent.world_model, agent.actor_critic
    frames, actions = _contexts(cfg, agent, replay, rng, batch_size=4)
    fresh_frames, fresh_actions = _contexts(cfg, agent, replay, rng, batch_size=2)
    # Rollouts 1 and 3 end at step 0, rollout 1 again at step 1: three ends for two fresh contexts.
    ends = {0: [False, True, False, True], 1: [False, True, False, False]}
    _forced_ends(world_model, monkeypatch, ends, 4)
    rollout = imagine(world_model, actor_critic, frames, actions, horizon=3,
                      generator=torch.Generator().manual_seed(0), restarts=(fresh_frames, fresh_actions))
    _forced_ends(world_model, monkeypatch, ends, 4)
    masked = imagine(world_model, actor_critic, frames, actions, horizon=3,
                     generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # DIAMOND's burn-in on each fresh context, written out
        latents = world_model.encode(fresh_frames)
        hidden = actor_critic.initial_state(2)
        for step in range(latents.shape[1] - 1):
            _, _, hidden = actor_critic(latents[:, step], hidden)
        _, fresh_values, _ = actor_critic(latents[:, -1], hidden)
    torch.testing.assert_close(rollout.values[1, 1], fresh_values[0])  # the first end takes context 0
    torch.testing.assert_close(rollout.values[3, 1], fresh_values[1])  # the second, context 1
    torch.testing.assert_close(rollout.values[1, 2], fresh_values[0])  # the third cycles back to context 0
    # The rollouts that never ended are untouched: the same draws give the same steps as without restarts.
    for row in (0, 2):
        torch.testing.assert_close(rollout.values[row], masked.values[row])
        torch.testing.assert_close(rollout.latents[row], masked.latents[row])
    assert rollout.in_loss.all() and not masked.in_loss[1, 1:].any()
    assert torch.equal(rollout.alive, masked.alive)  # alive: the first episode of each rollout, in both


@pytest.mark.parametrize("after_end, drawn", [("restart", 16), ("mask", 8)])
def test_an_update_draws_fresh_contexts_only_to_restart_from(after_end, drawn, smoke_setup):
    cfg, agent, replay, rng = smoke_setup(overrides=[f"actor_critic.after_end={after_end}"])
    optimizer, scheduler = agent.make_actor_critic_optimizer()
    counts = []

    def contexts(count):
        counts.append(count)
        return _contexts(cfg, agent, replay, rng, count)

    actor_critic_training_step(agent.world_model, agent.actor_critic, contexts, cfg.actor_critic, optimizer,
                               scheduler)
    assert cfg.actor_critic.batch_size == 8 and counts == [drawn]  # one draw: the first and fresh contexts


def test_the_static_buffer_step_of_cuda_graphs_gives_the_eager_rollout(smoke_setup, trained_like):
    """``performance.cuda_graphs``: on a CPU the captured step's buffers run eagerly; a rollout through them
    (inputs copied in, outputs copied out, restarts included) equals the eager rollout draw for draw."""
    cfg, agent, replay, rng = smoke_setup()
    trained_like(agent)
    frames, actions = _contexts(cfg, agent, replay, rng, batch_size=6)
    restarts = _contexts(cfg, agent, replay, rng, batch_size=6)
    rollouts = {}
    for graphs in (False, True):
        agent.world_model.cuda_graphs = graphs
        torch.manual_seed(5)  # the graph path draws from the default generator, as a captured graph does
        rollouts[graphs] = imagine(agent.world_model, agent.actor_critic, frames, actions, horizon=4,
                                   restarts=restarts)
    assert len(agent.world_model._graphs) == 1  # the step, made at the first rollout of this batch shape
    for name in ("latents", "values", "rewards", "ends", "actions", "logits"):
        torch.testing.assert_close(getattr(rollouts[True], name), getattr(rollouts[False], name), msg=name)
    # Every step's latent is its own tensor, not the step buffer the next call overwrites.
    assert not torch.equal(rollouts[True].latents[:, 1], rollouts[True].latents[:, 2])
