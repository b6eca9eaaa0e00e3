"""How many kernels one imagined step, one world-model update and one actor-critic update launch.

At batch 32 JEDI's imagined step is a few microseconds of arithmetic on a GPU but hundreds of kernel launches
of about 10 us each: eager JEDI is bound by the host launching kernels, not by the device. This counts the
launches on any device, the CPU included: every aten op that reaches a kernel (views, which only relabel a
tensor, are not counted) is recorded by a ``TorchDispatchMode``. It is a lower bound of the CUDA kernels:
some CUDA ops launch several kernels (the other way round, attention's CPU math path is 8 ops where a GPU
runs one fused kernel).

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
    """Kernel launches per imagined step, per diffusion and reward/end update and per actor-critic update.

    Counts do not depend on the batch size, so a small batch keeps this fast on a CPU. The imagined step is
    the difference between rollouts of 3 and 1 steps, halved (the warm-up and the final stacking cancel); it
    counts the policy, the world model's step and the restart of ended rollouts, as training runs them.
    """
    from jedi_core.agent import Agent
    from jedi_core.analysis.bench import synthetic_replay
    from jedi_core.imagination import Imagination, actor_critic_update
    from jedi_core.presets import make_config
    from jedi_core.replay import TorchBatch, sample_contexts, sample_diffusion_batch, sample_reward_end_batch
    from jedi_core.runtime import seed_everything

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
        imagination = Imagination(batch, horizon)
        fresh = contexts(2 * batch)
        with torch.no_grad():
            imagination(world_model, actor_critic, *fresh)  # rollouts under way, as in training

        def run():
            with torch.no_grad():
                imagination(world_model, actor_critic, *fresh)
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
    # With a CUDA graph the world model's step is one graph launch, plus a copy into each of its input
    # buffers and out of each of its output buffers (jedi_core.cuda_graphs.StaticStep).
    frames, actions = contexts(batch)
    with torch.no_grad():
        state = world_model.burn_in(frames, actions)
        action = actions.new_zeros(batch)
        world_model_step = count_launches(lambda: world_model.imagine_step(state, action)).total
    state_tensors = 2 + (2 if state.reward_end_state is not None else 0)
    copies = (state_tensors + 1) + (3 + state_tensors)
    counts["world_model_step"] = world_model_step
    counts["imagined_step_cuda_graphs"] = counts["imagined_step"] - world_model_step + 1 + copies

    optimizers = world_model.make_optimizers()
    for name, update, sample in (
            ("diffusion", world_model.diffusion_update(optimizers), sample_diffusion_batch),
            ("reward_end", world_model.reward_end_update(optimizers), sample_reward_end_batch)):
        def step(update=update, sample=sample):
            return update(sample(replay, cfg.world_model, rng, cfg.replay.sample_weights).to_torch("cpu"),
                          check_finite=False)
        logs = step()  # AdamW creates its state at the first step
        counts[f"world_model_update_{name}"] = count_launches(step).total
        counts[f"world_model_update_{name}_cuda_graphs"] = graphed_update_launches(
            len(dataclasses.fields(TorchBatch)), logs, [optimizer for optimizer, _ in update.optimizers])

    ac_optimizer, ac_scheduler = agent.make_actor_critic_optimizer()
    ac_cfg = dataclasses.replace(cfg.actor_critic, batch_size=batch)
    ac_update = actor_critic_update(Imagination(batch, ac_cfg.horizon), world_model, actor_critic, ac_cfg,
                                    (ac_optimizer, ac_scheduler))

    def actor_critic_step():
        return ac_update(*contexts(2 * batch), check_finite=False)

    logs = actor_critic_step()  # AdamW's state, and the rollouts under way
    counts["actor_critic_update"] = count_launches(actor_critic_step).total
    # Its graph's inputs are the fresh contexts' frames and actions.
    counts["actor_critic_update_cuda_graphs"] = graphed_update_launches(2, logs, [ac_optimizer])
    counts["horizon"] = cfg.actor_critic.horizon
    return counts


def graphed_update_launches(inputs: int, logs: dict, optimizers: list[torch.optim.Optimizer]) -> int:
    """Launches of an update replayed from a CUDA graph (``cuda_graphs.StaticUpdate``): the graph, a copy into
    each of its ``inputs`` buffers, a copy out of the loss and of each log, and the optimisers' steps, which
    stay eager (counted here by taking one more step)."""
    return 1 + inputs + 1 + len(logs) + sum(count_launches(optimizer.step).total for optimizer in optimizers)


def format_launch_table(results: list[dict]) -> str:
    """One column per preset: launches per imagined step and per update."""
    header = "| kernel launches | " + " | ".join(f"{r['preset']} ({r['method']})" for r in results) + " |"
    lines = [header, "|---|" + "---|" * len(results)]
    rows = [("per imagined step", "imagined_step"),
            ("of which the world model's step", "world_model_step"),
            ("per imagined step, world-model step in a CUDA graph", "imagined_step_cuda_graphs"),
            ("per diffusion update", "world_model_update_diffusion"),
            ("the same, in a CUDA graph", "world_model_update_diffusion_cuda_graphs"),
            ("per reward/end update", "world_model_update_reward_end"),
            ("the same, in a CUDA graph", "world_model_update_reward_end_cuda_graphs"),
            ("per actor-critic update (H steps, backward, step)", "actor_critic_update"),
            ("the same, in a CUDA graph", "actor_critic_update_cuda_graphs")]
    for label, key in rows:
        cells = []
        for result in results:
            value = result.get(key)
            cells.append("-" if value is None else f"{value:,.0f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
