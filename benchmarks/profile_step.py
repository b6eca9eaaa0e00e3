"""Where one imagination (batch 32, the preset's horizon) and one actor-critic update spend their time.

    python benchmarks/profile_step.py PRESET DEVICE OUT.json      # e.g. atari100k cuda, or smoke cpu

Both run as the preset's runs do: at its ``performance.precision``, and with ``performance.cuda_graphs``
replayed from CUDA graphs. The imagination is ``horizon`` more steps of 32 rollouts that go on across calls,
ended or truncated ones restarting from fresh real contexts (an actor-critic update's rollout, without
gradient); the update is the trainer's (``jedi_core.training.updates``).
Each is run twice to warm up, timed once (wall clock, device synchronised), then run once more under
``torch.profiler``: the JSON records the wall time, the number of aten calls and of CUDA kernels, the
device's busy time (the sum of the kernels' own times) and the 20 ops with the most host time. When the
wall time is several times the device's busy time, the step is bound by the host launching kernels.
"""
import functools
import json
import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile

from jedi_core.agent import build_agent
from jedi_core.analysis.bench import synthetic_replay
from jedi_core.cuda_graphs import graphed_imagine_step
from jedi_core.imagination import Imagination
from jedi_core.presets import make_config
from jedi_core.runtime import autocast, resolve_device, seed_everything
from jedi_core.training.updates import draw_inputs, make_updates

BATCH = 32
NUM_ACTIONS = 18


def main(preset: str, device_name: str, out_path: str) -> None:
    cfg = make_config(preset, [f"device={device_name}", f"actor_critic.batch_size={BATCH}"])
    device = resolve_device(cfg.device)
    rng = seed_everything(0)
    agent = build_agent(cfg, NUM_ACTIONS, device)
    world_model, actor_critic = agent.world_model, agent.actor_critic
    replay = synthetic_replay(2000, NUM_ACTIONS)
    ac_cfg = cfg.actor_critic
    # The trainer's updates: the run's precision applied from outside, each in a CUDA graph with cuda_graphs.
    updates = make_updates(agent, world_model.make_optimizers(), agent.make_actor_critic_optimizer(),
                           cfg.performance)
    precision = functools.partial(autocast, device, cfg.performance.precision,
                                  cache_enabled=not cfg.performance.cuda_graphs)

    def contexts():  # as the trainer draws them: BATCH to start rollouts from, as many to restart from
        return draw_inputs("actor_critic", cfg, replay, rng, device)

    rollouts = Imagination(BATCH, ac_cfg.horizon, ac_cfg.temperature)
    world_model_step = None
    if cfg.performance.cuda_graphs:
        with torch.no_grad():
            frames, actions = contexts()
            example = world_model.burn_in(frames[:BATCH], actions[:BATCH])
            world_model_step = graphed_imagine_step(world_model, example, precision)

    def rollout():
        frames, actions = contexts()
        world_model.eval()
        with torch.no_grad(), precision():
            rollouts(world_model, actor_critic, frames, actions, world_model_step=world_model_step)

    def actor_critic_update():
        updates.actor_critic(*contexts(), check_finite=False)

    def synchronize():
        if device.type == "cuda":
            torch.cuda.synchronize()

    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    result = {"preset": preset, "device": str(device), "batch": BATCH, "horizon": cfg.actor_critic.horizon,
              "torch": torch.__version__}
    for name, step in (("rollout", rollout), ("actor_critic_update", actor_critic_update)):
        step()
        step()
        synchronize()
        start = time.perf_counter()
        step()
        synchronize()
        wall = time.perf_counter() - start
        with profile(activities=activities) as profiler:
            step()
            synchronize()
        events = profiler.key_averages()
        kernels = [event for event in events if event.device_type.name == "CUDA"]
        busy_us = sum(event.self_device_time_total for event in kernels)
        by_host_time = sorted(events, key=lambda event: event.self_cpu_time_total, reverse=True)[:20]
        result[name] = {
            "wall_ms": wall * 1e3,
            "aten_calls": sum(event.count for event in events if event.key.startswith("aten::")),
            "cuda_kernels": sum(event.count for event in kernels) if kernels else None,
            "device_busy_ms": busy_us / 1e3 if kernels else None,
            "top_host_time": [(event.key, event.count, round(event.self_cpu_time_total / 1e3, 2))
                              for event in by_host_time],
        }
        print(name, json.dumps({key: value for key, value in result[name].items() if key != "top_host_time"}))
        print(events.table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=45))
    with open(out_path, "w") as file:
        json.dump(result, file, indent=1)


if __name__ == "__main__":
    main(*sys.argv[1:4])
