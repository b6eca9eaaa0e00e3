"""How many kernels one imagined step, one world-model update and one actor-critic update launch.

At batch 32 JEDI's imagined step is a few microseconds of arithmetic on a GPU but hundreds of kernel launches
of about 10 us each: eager JEDI is bound by the host launching kernels, not by the device. This counts the
launches on any device, the CPU included: every aten op that reaches a kernel (views, which only relabel a
tensor, are not counted) is recorded by a ``TorchDispatchMode``. It is a lower bound of the CUDA kernels:
where an H100's profiler counted 997 kernels per imagined step, this counted 618 for the same code (some CUDA
ops launch several kernels; the other way round, attention's CPU math path is 8 ops where a GPU runs one
fused kernel).

``python -m jedi_core bench --ops`` prints the table for a preset pair.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

#: Ops that run no kernel: they relabel or share storage (``func.is_view`` catches the rest of them).
NO_KERNEL_OPS = {"detach", "alias", "lift_fresh", "_unsafe_view", "view", "_reshape_alias", "set_"}


class LaunchCounter(TorchDispatchMode):
    """Counts, by name, every op dispatched inside ``with counter:`` that runs a kernel."""

    def __init__(self):
        super().__init__()
        self.ops: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if not func.is_view and name not in NO_KERNEL_OPS:
            self.ops[name] += 1
        return func(*args, **(kwargs or {}))

    @property
    def total(self) -> int:
        return sum(self.ops.values())


def count_launches(step: Callable[[], object]) -> LaunchCounter:
    """Run ``step`` once under a :class:`LaunchCounter` and return it."""
    counter = LaunchCounter()
    with counter:
        step()
    return counter


def launch_counts(preset: str, overrides: tuple[str, ...] = (), batch: int = 2, num_actions: int = 18
                  ) -> dict:
    """Kernel launches per imagined step, per world-model update (each part) and per actor-critic update.

    Counts do not depend on the batch size, so a small batch keeps this fast on a CPU. The imagined step is
    the difference between rollouts of 3 and 1 steps, halved (the warm-up and the final stacking cancel); it
    counts the policy, the world model's step and the restart of ended rollouts, as training runs them.
    """
    from jedi_core.agent import Agent
    from jedi_core.analysis.bench import synthetic_replay
    from jedi_core.config import make_config
    from jedi_core.imagination import actor_critic_training_step, imagine
    from jedi_core.replay import TorchBatch, sample_contexts, sample_training_batch
    from jedi_core.runtime import seed_everything
    from jedi_core.world_model import UPDATE_SCHEDULES

    cfg = make_config(preset, ["device=cpu", f"world_model.batch_size={batch}",
                               f"actor_critic.batch_size={batch}", *overrides])
    rng = seed_everything(0)
    agent = Agent(cfg, num_actions)
    world_model, actor_critic = agent.world_model, agent.actor_critic
    replay = synthetic_replay(max(600, 3 * cfg.world_model.segment_steps), num_actions)

    def contexts(count: int):
        return sample_contexts(replay, count, world_model.context_length, rng, cfg.replay.sample_weights,
                               "cpu")

    def rollout(horizon: int) -> Callable[[], object]:
        frames, actions = contexts(batch)
        restarts = contexts(batch) if cfg.actor_critic.after_end == "restart" else None

        def run():
            with torch.no_grad():
                imagine(world_model, actor_critic, frames, actions, horizon, restarts=restarts)
        return run

    world_model.eval()
    for run in (rollout(1), rollout(3)):  # warm-up: lazy initialisations happen once, outside the counts
        run()
    one, three = count_launches(rollout(1)), count_launches(rollout(3))
    step_ops = three.ops.copy()
    step_ops.subtract(one.ops)
    counts = {"preset": preset, "method": cfg.method, "overrides": list(overrides),
              "imagined_step": (three.total - one.total) / 2,
              "imagined_step_top_ops": {name: n / 2 for name, n in step_ops.most_common(12)}}
    # With performance.cuda_graphs the world model's step is one graph launch, plus a copy into each of its
    # input buffers and out of each of its output buffers (jedi_core.cuda_graphs.StaticStep).
    frames, actions = contexts(batch)
    with torch.no_grad():
        state = world_model.burn_in(frames, actions)
        action = actions.new_zeros(batch)
        world_model_step = count_launches(lambda: world_model.imagine_step(state, action)).total
    copies = (len(state.flat()) + 1) + (3 + len(state.flat()))
    counts["world_model_step"] = world_model_step
    counts["imagined_step_cuda_graphs"] = counts["imagined_step"] - world_model_step + 1 + copies

    for part in UPDATE_SCHEDULES[cfg.world_model.updates]:
        optimizer, scheduler = world_model.make_optimizer(part)

        def update(part=part, optimizer=optimizer, scheduler=scheduler):
            batch_ = sample_training_batch(replay, cfg.world_model, rng, cfg.replay.sample_weights, part)
            return world_model.training_step(batch_.to_torch("cpu"), optimizer, scheduler,
                                             check_finite=False, part=part)
        logs = update()  # AdamW creates its state at the first step
        counts[f"world_model_update_{part}"] = count_launches(update).total
        counts[f"world_model_update_{part}_cuda_graphs"] = graphed_update_launches(
            len(dataclasses.fields(TorchBatch)), logs, optimizer)

    ac_optimizer, ac_scheduler = agent.make_actor_critic_optimizer()
    ac_cfg = dataclasses.replace(cfg.actor_critic, batch_size=batch)

    def actor_critic_update():
        return actor_critic_training_step(world_model, actor_critic, contexts, ac_cfg, ac_optimizer,
                                          ac_scheduler, check_finite=False)

    logs = actor_critic_update()
    counts["actor_critic_update"] = count_launches(actor_critic_update).total
    # Its graph's inputs are the contexts' frames and actions.
    counts["actor_critic_update_cuda_graphs"] = graphed_update_launches(2, logs, ac_optimizer)
    counts["horizon"] = cfg.actor_critic.horizon
    return counts


def graphed_update_launches(inputs: int, logs: dict, optimizer: torch.optim.Optimizer) -> int:
    """Launches of an update replayed from a CUDA graph (``cuda_graphs.StaticUpdate``): the graph, a copy into
    each of its ``inputs`` buffers, a copy out of the loss and of each log, and the optimiser's step, which
    stays eager (counted here by taking one more step)."""
    return 1 + inputs + 1 + len(logs) + count_launches(optimizer.step).total


def format_launch_table(results: list[dict]) -> str:
    """One column per preset: launches per imagined step and per update."""
    header = "| kernel launches | " + " | ".join(f"{r['preset']} ({r['method']})" for r in results) + " |"
    lines = [header, "|---|" + "---|" * len(results)]
    rows = [("per imagined step", "imagined_step"),
            ("of which the world model's step", "world_model_step"),
            ("per imagined step, world-model step in a CUDA graph", "imagined_step_cuda_graphs"),
            ("per world-model update (diffusion / all)", "world_model_update_diffusion"),
            ("the same, in a CUDA graph", "world_model_update_diffusion_cuda_graphs"),
            ("per reward/end update", "world_model_update_reward_end"),
            ("the same, in a CUDA graph", "world_model_update_reward_end_cuda_graphs"),
            ("per actor-critic update (H steps, backward, step)", "actor_critic_update"),
            ("the same, in a CUDA graph", "actor_critic_update_cuda_graphs")]
    for label, key in rows:
        cells = []
        for result in results:
            joint_key = key.replace("diffusion", "all")  # a joint update has one part, "all"
            value = result.get(key, result.get(joint_key))
            cells.append("-" if value is None else f"{value:,.0f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
