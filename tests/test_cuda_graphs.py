"""jedi_core.cuda_graphs: whole updates that a GPU replays from CUDA graphs (``performance.cuda_graphs``).

On a CPU there is no graph: the captured part of each update runs eagerly through the same input buffers,
and the optimiser steps after it. These tests hold that path to the eager updates, value for value, and
emulate a graph's memory on the CPU to hold the GPU path to them too.
"""

import json

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import jedi_core.cuda_graphs
import jedi_core.training.updates
from jedi_core.cuda_graphs import StaticUpdate, graphed_imagine_step
from jedi_core.imagination import imagine
from jedi_core.optim import Update
from jedi_core.replay import sample_contexts, sample_diffusion_batch, sample_reward_end_batch
from jedi_core.runtime import to_floats
from jedi_core.training.updates import make_updates


def _setup_updates(setup, preset, overrides, graphs):
    """(cfg, agent, replay, rng, world-model optimisers by module, Updates) as the trainer makes them."""
    cfg, agent, replay, rng = setup(preset, [*overrides, f"performance.cuda_graphs={str(graphs).lower()}"])
    optimizers = agent.world_model.make_optimizers()
    updates = make_updates(agent, optimizers, agent.make_actor_critic_optimizer(), cfg.performance)
    return cfg, agent, replay, rng, optimizers, updates


def _world_model_updates(setup, preset, overrides, graphs, updates=3):
    """``updates`` rounds of one diffusion and one reward/end update, interleaved, so that the encoder
    (trained by both) alternates between the two updates' gradients."""
    cfg, agent, replay, rng, optimizers, fast = _setup_updates(setup, preset, overrides, graphs)
    kind = StaticUpdate if graphs else Update
    assert isinstance(fast.diffusion, kind) and isinstance(fast.reward_end, kind)
    torch.manual_seed(1)
    logs = []
    for _ in range(updates):
        for update, sample in ((fast.diffusion, sample_diffusion_batch),
                               (fast.reward_end, sample_reward_end_batch)):
            batch = sample(replay, cfg.world_model, rng, cfg.replay.sample_weights)
            logs.append(update(batch.to_torch("cpu"), check_finite=False))
    # Read at the end, as the trainer reads a chunk of updates' logs at once: each must be its own copy.
    return agent.world_model, optimizers, fast, [to_floats(log) for log in logs]


def _assert_same_weights(eager, graphed):
    for name, value in eager.state_dict().items():
        torch.testing.assert_close(graphed.state_dict()[name], value, rtol=0, atol=0, msg=name)


@pytest.mark.parametrize(("preset", "overrides"), [
    ("smoke", ()),
    ("smoke", ("world_model.reward_end.next_input=sampled", "world_model.decoder_probe=true")),
    ("smoke_diamond", ()),
])
def test_graphed_world_model_updates_equal_the_eager_ones(preset, overrides, smoke_setup):
    eager, _, _, eager_logs = _world_model_updates(smoke_setup, preset, overrides, graphs=False)
    graphed, optimizers, fast, graphed_logs = _world_model_updates(smoke_setup, preset, overrides, True)
    assert graphed_logs == eager_logs
    pixel = preset == "smoke_diamond"
    probe = "world_model.decoder_probe=true" in overrides
    # Each update logs the encoder's gradient norm under a name of its own (an epoch's logs hold both).
    diffusion_keys = {"diffusion_loss", "switched_fraction", "latent_std", "grad_norm_denoiser",
                      *(() if pixel else ("grad_norm_encoder",)),
                      *(("probe_loss", "grad_norm_probe") if probe else ())}
    reward_end_keys = {"reward_end_loss", "reward_loss", "end_loss", "reward_accuracy",
                       "grad_norm_reward_end", *(() if pixel else ("grad_norm_encoder_reward_end",))}
    assert set(graphed_logs[0]) == diffusion_keys and set(graphed_logs[1]) == reward_end_keys
    _assert_same_weights(eager, graphed)
    # The learning rate followed the warm-up schedule (it is stepped outside the graph): once per update of
    # each optimiser, the encoder's (shared by both updates) twice per round.
    assert ("encoder" in optimizers) != pixel and "reward_end" in optimizers and "denoiser" in optimizers
    for name, (optimizer, scheduler) in optimizers.items():
        stepped_by = [update for update in (fast.diffusion, fast.reward_end)
                      if any(o is optimizer for o, _ in update.optimizers)]
        assert len(stepped_by) == (2 if name == "encoder" else 1), name
        assert scheduler.last_epoch == 3 * len(stepped_by), name
        assert optimizer.param_groups[0]["lr"] == scheduler.get_last_lr()[0] > 0


def test_a_graphed_update_checks_its_loss_before_any_weight_changes(smoke_setup):
    cfg, agent, replay, rng, optimizers, fast = _setup_updates(smoke_setup, "smoke", (), graphs=True)
    assert isinstance(fast.diffusion, StaticUpdate)
    world_model = agent.world_model
    with torch.no_grad():
        world_model.denoiser.net.conv_in.bias[0] = float("nan")
    before = {name: value.clone() for name, value in world_model.state_dict().items()}
    batch = sample_diffusion_batch(replay, cfg.world_model, rng, cfg.replay.sample_weights)
    with pytest.raises(FloatingPointError, match="loss is nan"):
        fast.diffusion(batch.to_torch("cpu"), check_finite=True)
    for name, value in world_model.state_dict().items():
        torch.testing.assert_close(value, before[name], rtol=0, atol=0, equal_nan=True, msg=name)
    for optimizer, scheduler in optimizers.values():
        assert not optimizer.state and scheduler.last_epoch == 0  # no optimiser stepped either
    # Without the check the same update does step (the weights go NaN): the check is what stopped it.
    fast.diffusion(batch.to_torch("cpu"), check_finite=False)
    assert optimizers["denoiser"][1].last_epoch == 1


def _contexts(cfg, agent, replay, rng, count):
    length = agent.world_model.context_length
    return sample_contexts(replay, count, length, rng, cfg.replay.sample_weights, "cpu")


def test_graphed_updates_never_wait_for_the_device(smoke_setup, host_waits):
    """A CUDA graph cannot hold an op that reads a value back to the host: the captured parts have none."""
    cfg, agent, replay, rng, optimizers, fast = _setup_updates(
        smoke_setup, "smoke", ("world_model.reward_end.next_input=sampled",), graphs=True)
    for optimizer, _ in [*optimizers.values(), *fast.actor_critic.optimizers]:
        host_waits.ignore_step_of(optimizer)
    for update, sample in ((fast.diffusion, sample_diffusion_batch),
                           (fast.reward_end, sample_reward_end_batch)):
        assert isinstance(update, StaticUpdate)
        batch = sample(replay, cfg.world_model, rng, cfg.replay.sample_weights).to_torch("cpu")
        with host_waits:
            update(batch, check_finite=False)
    assert isinstance(fast.actor_critic, StaticUpdate)
    for _ in range(2):  # the first update starts the rollouts, the second carries them on
        contexts = _contexts(cfg, agent, replay, rng, 2 * cfg.actor_critic.batch_size)
        with host_waits:
            fast.actor_critic(*contexts, check_finite=False)
    assert host_waits.seen == []


def test_the_host_wait_detector_sees_a_check_of_the_loss(smoke_setup, host_waits):
    """The test above can fail: ``check_finite=True`` reads the loss on the host, and the detector sees it."""
    cfg, agent, replay, rng, optimizers, fast = _setup_updates(smoke_setup, "smoke", (), graphs=True)
    for optimizer, _ in optimizers.values():
        host_waits.ignore_step_of(optimizer)
    batch = sample_diffusion_batch(replay, cfg.world_model, rng, cfg.replay.sample_weights).to_torch("cpu")
    with host_waits:
        fast.diffusion(batch, check_finite=True)
    assert host_waits.seen


def _actor_critic_updates(setup, trained_like, graphs, updates=3):
    cfg, agent, replay, rng, _, fast = _setup_updates(setup, "smoke", (), graphs)
    assert isinstance(fast.actor_critic, StaticUpdate if graphs else Update)
    trained_like(agent)  # rewards and ends happen, so restarts do too
    torch.manual_seed(2)
    logs = [fast.actor_critic(*_contexts(cfg, agent, replay, rng, 2 * cfg.actor_critic.batch_size),
                              check_finite=False) for _ in range(updates)]
    if graphs:  # the graph's inputs are the fresh contexts' frames and actions, nothing else
        assert len(fast.actor_critic.inputs) == 2
    carried = [tensor.clone() for tensor in fast.imagination.carried]
    return agent, [to_floats(log) for log in logs], carried, fast


def _assert_same_actor_critics(eager, graphed):
    for name, value in eager.actor_critic.state_dict().items():
        torch.testing.assert_close(graphed.actor_critic.state_dict()[name], value, rtol=0, atol=0, msg=name)


def _assert_same_carried(eager, graphed):
    """The rollouts the next update carries on: the world model's latents, actions and LSTM state, the
    actor's LSTM state, the ages."""
    assert len(graphed) == len(eager) > 0
    for index, (value, expected) in enumerate(zip(graphed, eager, strict=True)):
        torch.testing.assert_close(value, expected, rtol=0, atol=0, msg=f"carried tensor {index}")


def test_graphed_actor_critic_updates_equal_the_eager_ones(smoke_setup, trained_like):
    """The whole update is one graph: its imagined rollout (world-model steps and restarts included), loss and
    backward; the rollouts it carries over to the next update are the eager ones too."""
    eager, eager_logs, eager_carried, _ = _actor_critic_updates(smoke_setup, trained_like, graphs=False)
    graphed, graphed_logs, graphed_carried, _ = _actor_critic_updates(smoke_setup, trained_like, graphs=True)
    assert graphed_logs == eager_logs
    assert any(log["imagined_end_rate"] > 0 for log in eager_logs)
    assert len({log["imagined_reward"] for log in eager_logs}) > 1  # each update's logs are its own
    _assert_same_actor_critics(eager, graphed)
    _assert_same_carried(eager_carried, graphed_carried)


def test_the_graphed_imagine_step_gives_the_eager_rollout(smoke_setup, trained_like):
    """``graphed_imagine_step``: on a CPU the step's buffers run eagerly; a rollout through them (inputs
    copied in, outputs copied out) equals the eager rollout draw for draw, and keeps each step's latent."""
    cfg, agent, replay, rng = smoke_setup()
    trained_like(agent)
    world_model = agent.world_model
    frames, actions = _contexts(cfg, agent, replay, rng, 6)
    with torch.no_grad():
        step = graphed_imagine_step(world_model, world_model.burn_in(frames, actions))
    rollouts = {}
    for name, world_model_step in (("eager", None), ("graphed", step)):
        torch.manual_seed(5)  # the graph path draws from the default generator, as a captured graph does
        rollouts[name] = imagine(world_model, agent.actor_critic, frames, actions, horizon=4,
                                 world_model_step=world_model_step)
    for name in ("latents", "values", "next_values", "rewards", "ends", "truncations", "actions", "logits"):
        torch.testing.assert_close(getattr(rollouts["graphed"], name), getattr(rollouts["eager"], name),
                                   rtol=0, atol=0, msg=name)
    # Every step's latent is its own tensor, not the step buffer the next call overwrites.
    assert not torch.equal(rollouts["graphed"].latents[:, 1], rollouts["graphed"].latents[:, 2])
    with pytest.raises(ValueError, match="default generator"):
        imagine(world_model, agent.actor_critic, frames, actions, horizon=1, world_model_step=step,
                generator=torch.Generator().manual_seed(0))


def test_a_run_with_cuda_graphs_trains_as_the_eager_run_does(tmp_path, toy_run_overrides):
    """The trainer through the graph path: the same seed gives the same weights, logs, carried rollouts and
    final scores."""
    from jedi_core.presets import make_config
    from jedi_core.training.loop import Trainer
    from jedi_core.training.run_dir import CHECKPOINT_FILE, METRICS_FILE

    runs = {}
    for graphs in (False, True):
        cfg = make_config("smoke", [*toy_run_overrides, f"performance.cuda_graphs={str(graphs).lower()}"])
        run_dir = tmp_path / str(graphs)
        trainer = Trainer(cfg, run_dir, quiet=True)
        assert isinstance(trainer.updates.diffusion, StaticUpdate) == graphs
        scores = trainer.run()
        metrics = [json.loads(line) for line in (run_dir / METRICS_FILE).read_text().splitlines()]
        checkpoint = torch.load(run_dir / CHECKPOINT_FILE, weights_only=False)
        runs[graphs] = scores, metrics, checkpoint["agent"], checkpoint["imagination"]
    (eager_scores, eager_metrics, eager_agent, eager_carried), (scores, metrics, agent, carried) = (
        runs[False], runs[True])
    assert scores["episode_returns"] == eager_scores["episode_returns"]
    for logged, eager_logged in zip(metrics, eager_metrics, strict=True):
        for timing in ("epoch_seconds", "epoch_cpu_seconds"):
            logged.pop(timing)
            eager_logged.pop(timing)
        assert logged == eager_logged
    assert metrics[-1]["world_model_updates"] > 0 and metrics[-1]["actor_critic_updates"] > 0
    assert "diffusion_loss" in metrics[-1] and "reward_end_loss" in metrics[-1]
    for name, value in eager_agent.items():
        torch.testing.assert_close(agent[name], value, rtol=0, atol=0, msg=name)
    _assert_same_carried(eager_carried, carried)


# ----------------------------------------------------------------------------------------------
# The GPU path, with a CUDA graph's memory emulated on the CPU


class _NothingRuns(TorchDispatchMode):
    """A capture runs no kernel: every tensor an op writes in place gets its value back at the end (the
    rollouts carried over between actor-critic updates, which an update overwrites in place, above all)."""

    def __init__(self):
        super().__init__()
        self.saved: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        arguments = func._schema.arguments
        for index, argument in enumerate(arguments):
            if argument.alias_info is None or not argument.alias_info.is_write:
                continue
            value = args[index] if index < len(args) else kwargs.get(argument.name)
            for tensor in value if isinstance(value, list | tuple) else [value]:
                if isinstance(tensor, torch.Tensor):
                    self.saved.append((tensor, tensor.clone()))
        return func(*args, **kwargs)

    def __exit__(self, *exc):
        result = super().__exit__(*exc)
        for tensor, value in reversed(self.saved):
            with torch.no_grad():
                tensor.copy_(value)
        return result


class _EmulatedGraph:
    """What a CUDA graph's replay does to memory, emulated on the CPU: it reruns the update and writes the
    results into the memory the capture allocated (the recorded gradients and outputs), and leaves every
    Python attribute, ``.grad`` included, as it was."""

    def __init__(self, update):
        self.update = update

    def replay(self):
        update = self.update
        attributes = [parameter.grad for parameter in update.parameters]
        with update.context():
            loss, logs = update.fn(*update.inputs)
        for recorded, parameter in zip(update.grads, update.parameters, strict=True):
            if recorded is not None:
                recorded.copy_(parameter.grad)
        recorded_loss, recorded_logs = update.outputs
        recorded_loss.copy_(loss)
        for name, value in logs.items():
            recorded_logs[name].copy_(value)
        for parameter, attribute in zip(update.parameters, attributes, strict=True):
            parameter.grad = attribute


class _GpuPathUpdate(StaticUpdate):
    """:class:`StaticUpdate` taking its GPU path on the CPU: warm-ups run eagerly, and the real capture raises
    (torch has no CUDA graphs here)."""

    @staticmethod
    def graphed(example):
        return True

    def _warm_up(self, inputs):
        with self.context():
            return self.fn(*inputs)


class _EmulatedGraphUpdate(_GpuPathUpdate):
    """The GPU path with :class:`_EmulatedGraph` for the graph."""

    def _capture(self):
        # A capture allocates the graph's memory (outputs, gradients) but runs nothing and draws no numbers.
        with torch.random.fork_rng(), self.context(), _NothingRuns():
            self.outputs = self.fn(*self.inputs)
        self.grads = [parameter.grad for parameter in self.parameters]
        self.graph = _EmulatedGraph(self)


def test_the_gpu_path_of_graphed_updates_gives_the_eager_updates_under_graph_memory(smoke_setup, trained_like,
                                                                                   monkeypatch):
    """The GPU path (warm-up, capture, replays into fixed memory, gradients pointed back at each replay,
    copies of the outputs) with the graph emulated. The diffusion and reward/end updates both train the
    encoder, each in its own graph: without pointing ``.grad`` back, the encoder's optimiser would step on the
    other update's gradients; without copying the outputs, every update's logs would be the last one's."""
    monkeypatch.setattr(jedi_core.training.updates, "StaticUpdate", _EmulatedGraphUpdate)
    updates = jedi_core.cuda_graphs.WARMUP_RUNS + 3  # warm-ups, the capture, then replays
    eager, _, _, eager_logs = _world_model_updates(smoke_setup, "smoke", (), graphs=False, updates=updates)
    graphed, _, fast, logs = _world_model_updates(smoke_setup, "smoke", (), graphs=True, updates=updates)
    assert isinstance(fast.diffusion.graph, _EmulatedGraph)
    assert isinstance(fast.reward_end.graph, _EmulatedGraph)
    assert logs == eager_logs
    _assert_same_weights(eager, graphed)
    eager_agent, eager_logs, eager_carried, _ = _actor_critic_updates(smoke_setup, trained_like, False,
                                                                      updates)
    agent, logs, carried, fast = _actor_critic_updates(smoke_setup, trained_like, True, updates)
    assert isinstance(fast.actor_critic.graph, _EmulatedGraph)
    assert logs == eager_logs
    _assert_same_actor_critics(eager_agent, agent)
    _assert_same_carried(eager_carried, carried)


# ----------------------------------------------------------------------------------------------
# A capture that fails: the GPU path taken on a CPU, where torch has no CUDA graphs to capture


def test_a_failed_capture_warns_with_its_traceback_and_the_update_runs_eagerly(smoke_setup, monkeypatch):
    monkeypatch.setattr(jedi_core.training.updates, "StaticUpdate", _GpuPathUpdate)
    updates = jedi_core.cuda_graphs.WARMUP_RUNS + 3  # warm-ups, the failed capture, then eager calls
    eager, _, _, eager_logs = _world_model_updates(smoke_setup, "smoke", (), graphs=False, updates=updates)
    failed = "capture of the update of (diffusion|reward_end)_loss failed"
    with pytest.warns(RuntimeWarning, match=failed) as caught:
        graphed, _, fast, logs = _world_model_updates(smoke_setup, "smoke", (), graphs=True, updates=updates)
    assert logs == eager_logs
    _assert_same_weights(eager, graphed)
    for update in (fast.diffusion, fast.reward_end):
        assert update.graph is None
        assert update.capture_error.startswith("Traceback") and "CUDAGraph" in update.capture_error
    # One warning per update, at its failed capture, not one per later call.
    assert [str(w.message).split(";")[0] for w in caught if w.category is RuntimeWarning] == [
        "CUDA-graph capture of the update of diffusion_loss failed",
        "CUDA-graph capture of the update of reward_end_loss failed"]


def test_a_failed_capture_of_the_imagined_step_runs_it_eagerly(smoke_setup, trained_like, monkeypatch):
    monkeypatch.setattr(jedi_core.cuda_graphs.StaticStep, "graphed", staticmethod(lambda example: True))
    cfg, agent, replay, rng = smoke_setup()
    trained_like(agent)
    frames, actions = _contexts(cfg, agent, replay, rng, 6)
    with torch.no_grad(), pytest.warns(RuntimeWarning, match="capture of an imagined step failed"):
        step = graphed_imagine_step(agent.world_model, agent.world_model.burn_in(frames, actions))
    assert step.static.graph is None and step.static.capture_error.startswith("Traceback")
    rollouts = {}
    for name, world_model_step in (("eager", None), ("fallen back", step)):
        torch.manual_seed(5)
        rollouts[name] = imagine(agent.world_model, agent.actor_critic, frames, actions, horizon=3,
                                 world_model_step=world_model_step)
    for name in ("latents", "rewards", "ends", "actions"):
        torch.testing.assert_close(getattr(rollouts["fallen back"], name), getattr(rollouts["eager"], name),
                                   rtol=0, atol=0, msg=name)


def test_no_update_depends_on_train_or_eval_mode_so_a_graph_needs_no_key_for_it(smoke_setup, trained_like):
    """A graph is captured in whatever mode the modules are in. No module here computes differently in train
    and eval mode (no dropout, no batch norm), so toggling a mode never makes a captured graph stale; the
    precision is fixed per update object (its context), so that needs no key either."""
    cfg, agent, replay, rng = smoke_setup("smoke", ["world_model.reward_end.next_input=sampled"])
    trained_like(agent)
    world_model = agent.world_model
    weights = cfg.replay.sample_weights
    diffusion = sample_diffusion_batch(replay, cfg.world_model, rng, weights).to_torch("cpu")
    reward_end = sample_reward_end_batch(replay, cfg.world_model, rng, weights).to_torch("cpu")
    frames, actions = _contexts(cfg, agent, replay, rng, 4)
    results = {}
    for mode in (True, False):
        agent.train(mode)
        torch.manual_seed(3)
        diffusion_loss, _ = world_model.diffusion_loss(diffusion)
        reward_end_loss, _ = world_model.reward_end_loss(reward_end)
        with torch.no_grad():
            rollout = imagine(world_model, agent.actor_critic, frames, actions, horizon=2)
        results[mode] = (diffusion_loss, reward_end_loss, rollout.latents, rollout.logits, rollout.values)
    for trained, evaluated in zip(results[True], results[False], strict=True):
        torch.testing.assert_close(evaluated, trained, rtol=0, atol=0)
