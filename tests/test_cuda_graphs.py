"""jedi_core.cuda_graphs: whole updates that a GPU replays from CUDA graphs (``performance.cuda_graphs``).

On a CPU there is no graph: the captured part of each update runs eagerly through the same input buffers,
and the optimiser steps after it. These tests hold that path to the eager updates, value for value.
"""

import json

import pytest
import torch

import jedi_core.cuda_graphs
import jedi_core.imagination
import jedi_core.world_model
from jedi_core.cuda_graphs import StaticStep, StaticUpdate
from jedi_core.imagination import actor_critic_training_step
from jedi_core.replay import sample_contexts, sample_training_batch
from jedi_core.runtime import to_floats
from jedi_core.world_model import UPDATE_SCHEDULES


def _graphs(world_model, kind):
    """The steps or updates ``performance.cuda_graphs`` captured for ``world_model``."""
    return [graph for graph in world_model._graphs.values() if isinstance(graph, kind)]


def _world_model_updates(setup, preset, overrides, graphs, updates=3):
    cfg, agent, replay, rng = setup(preset, [*overrides, f"performance.cuda_graphs={str(graphs).lower()}"])
    world_model = agent.world_model
    parts = UPDATE_SCHEDULES[cfg.world_model.updates]
    optimizers = {part: world_model.make_optimizer(part) for part in parts}
    torch.manual_seed(1)
    logs = []
    for _ in range(updates):
        for part, (optimizer, scheduler) in optimizers.items():
            batch = sample_training_batch(replay, cfg.world_model, rng, cfg.replay.sample_weights, part)
            logs.append(world_model.training_step(batch.to_torch("cpu"), optimizer, scheduler,
                                                  check_finite=False, part=part))
    # Read at the end, as the trainer reads a chunk of updates' logs at once: each must be its own copy.
    return world_model, optimizers, [to_floats(log) for log in logs]


@pytest.mark.parametrize(("preset", "overrides"), [
    ("smoke", ()),
    ("smoke", ("world_model.reward_end.next_input=sampled",)),
    ("smoke", ("world_model.updates=joint",)),
    ("smoke_diamond", ()),
])
def test_graphed_world_model_updates_equal_the_eager_ones(preset, overrides, smoke_setup):
    eager, _, eager_logs = _world_model_updates(smoke_setup, preset, overrides, graphs=False)
    graphed, optimizers, graphed_logs = _world_model_updates(smoke_setup, preset, overrides, graphs=True)
    assert not eager._graphs
    assert len(_graphs(graphed, StaticUpdate)) == len(optimizers)  # one per part, made at its first update
    assert graphed_logs == eager_logs
    assert {"loss", "grad_norm_other"} <= set(graphed_logs[0])
    for name, value in eager.state_dict().items():
        torch.testing.assert_close(graphed.state_dict()[name], value, rtol=0, atol=0, msg=name)
    # The learning rate followed the warm-up schedule (it is stepped outside the graph).
    for optimizer, scheduler in optimizers.values():
        assert scheduler.last_epoch == 3
        assert optimizer.param_groups[0]["lr"] == scheduler.get_last_lr()[0] > 0


def test_a_graphed_update_checks_its_loss_before_any_weight_changes(smoke_setup):
    cfg, agent, replay, rng = smoke_setup(overrides=["performance.cuda_graphs=true"])
    world_model = agent.world_model
    optimizer, scheduler = world_model.make_optimizer("diffusion")
    with torch.no_grad():
        world_model.denoiser.net.conv_in.bias[0] = float("nan")
    before = {name: value.clone() for name, value in world_model.state_dict().items()}
    batch = sample_training_batch(replay, cfg.world_model, rng, cfg.replay.sample_weights, "diffusion")
    with pytest.raises(FloatingPointError, match="loss is nan"):
        world_model.training_step(batch.to_torch("cpu"), optimizer, scheduler, part="diffusion")
    for name, value in world_model.state_dict().items():
        torch.testing.assert_close(value, before[name], rtol=0, atol=0, equal_nan=True, msg=name)


def test_graphed_updates_never_wait_for_the_device(smoke_setup, host_waits):
    """A CUDA graph cannot hold an op that reads a value back to the host: the captured parts have none."""
    cfg, agent, replay, rng = smoke_setup(overrides=["performance.cuda_graphs=true",
                                                     "world_model.reward_end.next_input=sampled"])
    world_model = agent.world_model
    for part in UPDATE_SCHEDULES[cfg.world_model.updates]:
        optimizer, scheduler = world_model.make_optimizer(part)
        batch = sample_training_batch(replay, cfg.world_model, rng, cfg.replay.sample_weights, part)
        host_waits.ignore_step_of(optimizer)
        with host_waits:
            world_model.training_step(batch.to_torch("cpu"), optimizer, scheduler, check_finite=False,
                                      part=part)
    ac_optimizer, ac_scheduler = agent.make_actor_critic_optimizer()
    host_waits.ignore_step_of(ac_optimizer)
    with host_waits:
        actor_critic_training_step(world_model, agent.actor_critic, _context_sampler(cfg, agent, replay, rng),
                                   cfg.actor_critic, ac_optimizer, ac_scheduler, check_finite=False)
    assert host_waits.seen == []


def _context_sampler(cfg, agent, replay, rng):
    def contexts(count):
        length = agent.world_model.context_length
        return sample_contexts(replay, count, length, rng, cfg.replay.sample_weights, "cpu")
    return contexts


def _actor_critic_updates(setup, trained_like, after_end, graphs, updates=3):
    cfg, agent, replay, rng = setup(overrides=[f"actor_critic.after_end={after_end}",
                                               f"performance.cuda_graphs={str(graphs).lower()}"])
    trained_like(agent)  # rewards and ends happen, so restarts do too
    optimizer, scheduler = agent.make_actor_critic_optimizer()
    contexts = _context_sampler(cfg, agent, replay, rng)
    torch.manual_seed(2)
    logs = [actor_critic_training_step(agent.world_model, agent.actor_critic, contexts, cfg.actor_critic,
                                       optimizer, scheduler, check_finite=False) for _ in range(updates)]
    return agent, [to_floats(log) for log in logs]


def _assert_same_actor_critics(eager, graphed):
    for name, value in eager.actor_critic.state_dict().items():
        torch.testing.assert_close(graphed.actor_critic.state_dict()[name], value, rtol=0, atol=0, msg=name)


@pytest.mark.parametrize("after_end", ["restart", "mask"])
def test_graphed_actor_critic_updates_equal_the_eager_ones(after_end, smoke_setup, trained_like):
    """The whole update is one graph: its imagined rollout (world-model steps included), loss and backward."""
    eager, eager_logs = _actor_critic_updates(smoke_setup, trained_like, after_end, graphs=False)
    graphed, graphed_logs = _actor_critic_updates(smoke_setup, trained_like, after_end, graphs=True)
    assert len(_graphs(graphed.world_model, StaticUpdate)) == 1
    assert not _graphs(graphed.world_model, StaticStep)  # the rollout's steps are part of the update's graph
    assert graphed_logs == eager_logs
    assert any(log["imagined_end_rate"] > 0 for log in eager_logs)
    _assert_same_actor_critics(eager, graphed)


def test_a_run_with_cuda_graphs_trains_as_the_eager_run_does(tmp_path, toy_run_overrides):
    """The trainer through the graph path: the same seed gives the same weights, logs and final scores."""
    from jedi_core.config import make_config
    from jedi_core.training.loop import Trainer
    from jedi_core.training.run_dir import CHECKPOINT_FILE, METRICS_FILE

    runs = {}
    for graphs in (False, True):
        cfg = make_config("smoke", [*toy_run_overrides, f"performance.cuda_graphs={str(graphs).lower()}"])
        run_dir = tmp_path / str(graphs)
        scores = Trainer(cfg, run_dir, quiet=True).run()
        metrics = [json.loads(line) for line in (run_dir / METRICS_FILE).read_text().splitlines()]
        agent = torch.load(run_dir / CHECKPOINT_FILE, weights_only=False)["agent"]
        runs[graphs] = scores, metrics, agent
    (eager_scores, eager_metrics, eager_agent), (scores, metrics, agent) = runs[False], runs[True]
    assert scores["episode_returns"] == eager_scores["episode_returns"]
    for logged, eager_logged in zip(metrics, eager_metrics, strict=True):
        logged.pop("epoch_seconds")
        eager_logged.pop("epoch_seconds")
        assert logged == eager_logged
    assert metrics[-1]["world_model_updates"] > 0 and metrics[-1]["actor_critic_updates"] > 0
    for name, value in eager_agent.items():
        torch.testing.assert_close(agent[name], value, rtol=0, atol=0, msg=name)


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


class _EmulatedGraphUpdate(StaticUpdate):
    """:class:`StaticUpdate` taking its GPU path on the CPU, with :class:`_EmulatedGraph` for the graph."""

    @staticmethod
    def graphed(example):
        return True

    def _warm_up(self, inputs):
        with self.context():
            return self.fn(*inputs)

    def _capture(self):
        with torch.random.fork_rng(), self.context():  # a capture runs nothing and draws no numbers
            self.outputs = self.fn(*self.inputs)
        self.grads = [parameter.grad for parameter in self.parameters]
        self.graph = _EmulatedGraph(self)


def test_the_gpu_path_of_graphed_updates_gives_the_eager_updates_under_graph_memory(smoke_setup, trained_like,
                                                                                   monkeypatch):
    """The GPU path (warm-up, capture, replays into fixed memory, gradients pointed back at each replay) with
    the graph emulated. The diffusion and reward/end updates both train the encoder, each in its own graph:
    without pointing ``.grad`` back, one part's optimiser would step on the other's gradients."""
    monkeypatch.setattr(jedi_core.world_model, "StaticUpdate", _EmulatedGraphUpdate)
    monkeypatch.setattr(jedi_core.imagination, "StaticUpdate", _EmulatedGraphUpdate)
    updates = jedi_core.cuda_graphs.WARMUP_RUNS + 3  # warm-ups, the capture, then replays
    eager, _, eager_logs = _world_model_updates(smoke_setup, "smoke", (), graphs=False, updates=updates)
    graphed, optimizers, logs = _world_model_updates(smoke_setup, "smoke", (), graphs=True, updates=updates)
    assert all(isinstance(update.graph, _EmulatedGraph) for update in _graphs(graphed, StaticUpdate))
    assert logs == eager_logs
    for name, value in eager.state_dict().items():
        torch.testing.assert_close(graphed.state_dict()[name], value, rtol=0, atol=0, msg=name)
    eager_agent, eager_logs = _actor_critic_updates(smoke_setup, trained_like, "restart", False, updates)
    agent, logs = _actor_critic_updates(smoke_setup, trained_like, "restart", True, updates)
    [update] = _graphs(agent.world_model, StaticUpdate)
    assert isinstance(update.graph, _EmulatedGraph)
    assert logs == eager_logs
    _assert_same_actor_critics(eager_agent, agent)
