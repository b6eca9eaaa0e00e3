"""jedi_core.imagination: rollouts imagined from real contexts, carried across actor-critic updates and
restarted in place as DIAMOND's env loop does, and actor-critic updates that never wait for the device."""

import pytest
import torch

from jedi_core.analysis.bench import synthetic_replay
from jedi_core.analysis.precision import fast_copy, relative_error
from jedi_core.cuda_graphs import graphed_imagine_step
from jedi_core.imagination import Imagination, actor_critic_loss, actor_critic_update, imagine
from jedi_core.nn.actor_critic import lambda_returns
from jedi_core.nn.ops import sample_categorical
from jedi_core.replay import sample_contexts
from jedi_core.runtime import autocast, to_floats


def _contexts(cfg, agent, replay, rng, batch_size=8):
    length = agent.world_model.context_length
    return sample_contexts(replay, batch_size, length, rng, cfg.replay.sample_weights, "cpu")


@pytest.mark.parametrize("preset", ["smoke", "smoke_diamond"])
def test_actor_critic_updates_never_wait_for_the_device(preset, smoke_setup, host_waits):
    cfg, agent, replay, rng = smoke_setup(preset)
    optimizer, scheduler = agent.make_actor_critic_optimizer()
    batch = cfg.actor_critic.batch_size
    update = actor_critic_update(Imagination(batch, cfg.actor_critic.horizon), agent.world_model,
                                 agent.actor_critic, cfg.actor_critic, (optimizer, scheduler))
    host_waits.ignore_step_of(optimizer)
    for _ in range(2):  # the first update starts the rollouts, the second carries them on
        with host_waits:
            logs = update(*_contexts(cfg, agent, replay, rng, 2 * batch), check_finite=False)
        assert host_waits.seen == []
    assert all(isinstance(value, torch.Tensor) and value.dim() == 0 for value in logs.values())
    assert {"grad_norm_actor_critic", "entropy", "return_mean"} <= set(to_floats(logs))
    # The detector does see waits: the notebook-friendly default reads the loss to check it.
    with host_waits:
        update(*_contexts(cfg, agent, replay, rng, 2 * batch))
    assert "_local_scalar_dense" in host_waits.seen


def test_a_rollout_for_viewing_starts_from_the_context_and_marks_the_steps_before_an_end(smoke_setup):
    cfg, agent, replay, rng = smoke_setup()
    frames, actions = _contexts(cfg, agent, replay, rng, batch_size=16)
    horizon = 6
    rollout = imagine(agent.world_model, agent.actor_critic, frames, actions, horizon,
                      generator=torch.Generator().manual_seed(0))
    assert rollout.logits.shape == (16, horizon, 4) and rollout.latents.shape[:2] == (16, horizon + 1)
    torch.testing.assert_close(rollout.latents[:, 0], agent.world_model.encode(frames[:, -1]))
    assert rollout.logits.requires_grad and not rollout.next_values.requires_grad
    assert rollout.ends.any()  # an untrained reward/end model ends about half the steps
    ended_before = torch.cumsum(rollout.ends.int(), dim=1) - rollout.ends.int()
    assert torch.equal(rollout.alive, ended_before == 0)
    assert rollout.alive[:, 0].all() and not rollout.truncations.any()
    assert set(rollout.rewards.unique().tolist()) <= {-1.0, 0.0, 1.0}


def test_a_bf16_rollout_under_autocast_returns_fp32(smoke_setup, trained_like):
    cfg, agent, replay, rng = smoke_setup()
    trained_like(agent)
    contexts = _contexts(cfg, agent, replay, rng)
    with autocast("cpu", "bf16"):
        rollout = imagine(agent.world_model, agent.actor_critic, *contexts, horizon=3,
                          generator=torch.Generator().manual_seed(0))
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


def _with_values(agent):
    """A critic head with weights, so values tell states apart (it starts at zero: every value 0)."""
    torch.nn.init.normal_(agent.actor_critic.critic.weight, std=0.05)
    return agent


def _forced_ends(world_model, monkeypatch, schedule, batch):
    """Make the world model's imagined step t (counted across calls) report the ends ``schedule[t]``."""
    step = world_model.imagine_step
    steps_taken = []

    def forced(state, action, generator=None):
        latent, reward, _, new_state = step(state, action, generator)
        ends = schedule.get(len(steps_taken), [False] * batch)
        steps_taken.append(1)
        return latent, reward, torch.tensor(ends), new_state

    monkeypatch.setattr(world_model, "imagine_step", forced)


def _burned_in(world_model, actor_critic, frames, actions):
    """DIAMOND's burn-in written out: the actor's LSTM from zero through the context's frames before the
    last, with gradient; then its logits and value on the last frame."""
    latents = world_model.encode(frames)
    hidden = actor_critic.initial_state(frames.shape[0])
    for step in range(latents.shape[1] - 1):
        _, _, hidden = actor_critic(latents[:, step], hidden)
    return actor_critic(latents[:, -1], hidden)[:2]


def test_an_ended_rollout_restarts_in_place_from_the_next_fresh_context(smoke_setup, trained_like,
                                                                        monkeypatch):
    cfg, agent, replay, rng = smoke_setup()
    _with_values(trained_like(agent))
    world_model, actor_critic = agent.world_model, agent.actor_critic
    frames, actions = _contexts(cfg, agent, replay, rng, batch_size=6)  # 4 to start from, 2 to restart from
    # Rollouts 1 and 3 end at step 0, rollout 1 again at step 1: three ends for two fresh contexts.
    ends = {0: [False, True, False, True], 1: [False, True, False, False]}
    _forced_ends(world_model, monkeypatch, ends, 4)
    rollout = Imagination(4, horizon=3)(world_model, actor_critic, frames, actions,
                                        generator=torch.Generator().manual_seed(0))
    _forced_ends(world_model, monkeypatch, ends, 4)
    once = imagine(world_model, actor_critic, frames[:4], actions[:4], horizon=3,
                   generator=torch.Generator().manual_seed(0))
    fresh_values = _burned_in(world_model, actor_critic, frames[4:], actions[4:])[1].detach()
    torch.testing.assert_close(rollout.values[1, 1], fresh_values[0])  # the first end takes context 0
    torch.testing.assert_close(rollout.values[3, 1], fresh_values[1])  # the second, context 1
    torch.testing.assert_close(rollout.values[1, 2], fresh_values[0])  # the third cycles back to context 0
    # The rollouts that never ended are untouched: the same draws give the same steps as without restarts.
    for row in (0, 2):
        torch.testing.assert_close(rollout.values[row], once.values[row])
        torch.testing.assert_close(rollout.latents[row], once.latents[row])
    # An end's bootstrap is the value of the state it reached, not of the fresh context after it.
    torch.testing.assert_close(rollout.next_values[1, 0], once.next_values[1, 0])
    assert not torch.allclose(rollout.next_values[1, 0], fresh_values[0])


def test_a_restarted_rollouts_burn_in_carries_gradient_as_in_diamond(smoke_setup, trained_like, monkeypatch):
    """DIAMOND burns a restarted rollout's actor in with autograd on: the loss reaches the LSTM's recurrent
    weights through the burn-in steps (with the burn-in under no_grad it would not, from a zero state)."""
    cfg, agent, replay, rng = smoke_setup()
    trained_like(agent)
    world_model, actor_critic = agent.world_model, agent.actor_critic
    frames, actions = _contexts(cfg, agent, replay, rng, batch_size=4)
    _forced_ends(world_model, monkeypatch, {0: [True, False]}, 2)
    rollout = Imagination(2, horizon=3)(world_model, actor_critic, frames, actions)
    weights = actor_critic.lstm.weight_hh
    (got,) = torch.autograd.grad(rollout.logits[0, 1].sum(), weights)
    reference_logits, _ = _burned_in(world_model, actor_critic, frames[2:3], actions[2:3])
    (expected,) = torch.autograd.grad(reference_logits[0].sum(), weights)
    torch.testing.assert_close(got, expected)
    assert expected.abs().sum() > 0


def _diamond_truncations(ends, horizon, ages):
    """DIAMOND's WorldModelEnv written out: each step adds 1 to a rollout's episode length; it is truncated
    when that reaches the horizon (and did not end), and a rollout that ends or is truncated restarts at 0."""
    truncations = []
    for step_ends in ends:
        ages = [age + 1 for age in ages]
        step = [age >= horizon and not end for age, end in zip(ages, step_ends, strict=True)]
        ages = [0 if end or truncated else age
                for age, end, truncated in zip(ages, step_ends, step, strict=True)]
        truncations.append(step)
    return truncations, ages


def test_rollouts_go_on_across_updates_and_truncate_at_the_horizon_as_in_diamond(smoke_setup, trained_like,
                                                                                  monkeypatch):
    """A rollout restarted mid-update runs its whole horizon, into the next update; each truncation
    bootstraps from the value of the state it reached, and its rollout restarts from a fresh context."""
    cfg, agent, replay, rng = smoke_setup()
    _with_values(trained_like(agent))
    world_model, actor_critic = agent.world_model, agent.actor_critic
    horizon, batch, calls = 3, 3, 3
    schedule = {1: [True, False, False], 4: [False, False, True], 5: [True, False, False]}
    _forced_ends(world_model, monkeypatch, schedule, batch)
    imagination = Imagination(batch, horizon)
    ages = [0] * batch
    rollouts = []
    for call in range(calls):
        frames, actions = _contexts(cfg, agent, replay, rng, batch_size=2 * batch)
        rollout = imagination(world_model, actor_critic, frames, actions)
        rollouts.append(rollout)
        ends = [schedule.get(call * horizon + t, [False] * batch) for t in range(horizon)]
        expected, ages = _diamond_truncations(ends, horizon, ages)
        assert torch.equal(rollout.ends, torch.tensor(ends).T)
        assert torch.equal(rollout.truncations, torch.tensor(expected).T), call
        assert imagination.carried[-1].tolist() == ages
    # Rollout 0 ended at the first update's step 1, and so ran steps 2, 3 and 4: truncated in the second.
    assert rollouts[1].truncations[0].tolist() == [False, True, False]
    # Where a rollout was truncated (rollout 0 at the second update's step 1), the lambda-return bootstraps
    # from V(state reached), not from the fresh context's value that the next step holds.
    rollout, row, step = rollouts[1], 0, 1
    returns = lambda_returns(rollout.rewards, rollout.next_values, rollout.ends, rollout.truncations,
                             cfg.actor_critic.gamma, cfg.actor_critic.lambda_)
    assert not torch.allclose(rollout.next_values[row, step], rollout.values[row, step + 1])
    expected_return = rollout.rewards[row, step] + cfg.actor_critic.gamma * rollout.next_values[row, step]
    torch.testing.assert_close(returns[row, step], expected_return)
    loss, logs = actor_critic_loss(rollout, cfg.actor_critic)
    assert loss.requires_grad and logs["imagined_end_rate"] == pytest.approx(rollout.ends.float().mean())


def test_the_first_update_starts_every_rollout_and_later_ones_carry_them_on(smoke_setup, trained_like):
    cfg, agent, replay, rng = smoke_setup()
    trained_like(agent)
    world_model, actor_critic = agent.world_model, agent.actor_critic
    imagination = Imagination(2, horizon=4)
    frames, actions = _contexts(cfg, agent, replay, rng, batch_size=4)
    first = imagination(world_model, actor_critic, frames, actions)
    torch.testing.assert_close(first.latents[:, 0], world_model.encode(frames[:2, -1]))
    assert all(not tensor.requires_grad for tensor in imagination.carried)
    carried = [tensor.clone() for tensor in imagination.carried]
    second = imagination(world_model, actor_critic, *_contexts(cfg, agent, replay, rng, batch_size=4))
    torch.testing.assert_close(second.latents[:, 0], carried[0][:, -1])  # where the first one stopped
    imagination.reset()
    assert imagination.carried == []


def test_the_trainer_draws_twice_the_batch_of_fresh_contexts_per_actor_critic_update(tmp_path, monkeypatch):
    from jedi_core.presets import make_config
    from jedi_core.training import loop, updates

    cfg = make_config("smoke", ["env.kind=toy", "device=cpu"])
    trainer = loop.Trainer(cfg, tmp_path, quiet=True)
    trainer.replay = synthetic_replay(100, 3)
    drawn = []
    original = updates.sample_contexts

    def counting(replay, count, *args, **kwargs):
        drawn.append(count)
        return original(replay, count, *args, **kwargs)

    monkeypatch.setattr(updates, "sample_contexts", counting)
    trainer.train_actor_critic()
    assert drawn == [2 * cfg.actor_critic.batch_size]


def test_the_static_buffer_step_of_cuda_graphs_gives_the_eager_rollout(smoke_setup, trained_like):
    """A rollout through the CUDA-graph step's buffers (on a CPU they run eagerly: inputs copied in, outputs
    copied out) equals the eager rollout draw for draw, restarts included."""
    cfg, agent, replay, rng = smoke_setup()
    trained_like(agent)
    world_model = agent.world_model
    frames, actions = _contexts(cfg, agent, replay, rng, batch_size=12)
    example = world_model.burn_in(frames[:6], actions[:6])
    rollouts = {}
    for graphs in (False, True):
        step = graphed_imagine_step(world_model, example) if graphs else None
        torch.manual_seed(5)  # the graph path draws from the default generator, as a captured graph does
        rollouts[graphs] = Imagination(6, horizon=4)(world_model, agent.actor_critic, frames, actions,
                                                     world_model_step=step)
    assert rollouts[False].ends.any()
    for name in ("latents", "values", "rewards", "ends", "truncations", "actions", "logits"):
        torch.testing.assert_close(getattr(rollouts[True], name), getattr(rollouts[False], name), msg=name)
    # Every step's latent is its own tensor, not the step buffer the next call overwrites.
    assert not torch.equal(rollouts[True].latents[:, 1], rollouts[True].latents[:, 2])
