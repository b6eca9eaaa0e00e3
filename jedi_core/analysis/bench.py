"""JEDI against pixel diffusion, side by side on one device (the paper's efficiency claims).

For each preset, in its own process (so peak memory is its own): world-model training updates per second,
imagined transitions per second (the denoiser's Euler steps, the reward/end model and the policy, without
gradient), and actor-critic updates per second (imagination with gradient, the loss, backward, step). Each is
warmed up first, then timed ``repeats`` times; the median is reported. Both presets get the same batch sizes.
The replay holds random uint8 frames: speed and memory do not depend on what the pixels show.

``python -m jedi_core bench`` prints the table with the JEDI/pixel ratios and writes JSON with the device,
versions and settings.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import multiprocessing
import platform
import queue as queues
import resource
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

import jedi_core
from jedi_core.presets import make_config
from jedi_core.replay import ReplayBuffer
from jedi_core.runtime import (
    atomic_write_text,
    autocast,
    resolve_device,
    seed_everything,
    set_backend_flags,
)
from jedi_core.training.schedule import total_updates

PAIRS = {"paper": ("atari100k", "diamond"), "smoke": ("smoke", "smoke_diamond")}


def synthetic_replay(num_steps: int, num_actions: int, seed: int = 0,
                     episode_length: int = 200) -> ReplayBuffer:
    """A replay of random 64x64 frames, actions and rewards, in episodes of ``episode_length`` steps."""
    rng = np.random.default_rng(seed)
    replay = ReplayBuffer()
    while replay.num_steps < num_steps:
        episode = replay.new_episode(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
        steps = min(episode_length, num_steps - replay.num_steps)
        for step in range(steps):
            episode.append(int(rng.integers(num_actions)), float(rng.integers(-1, 2)),
                           rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), terminated=step == steps - 1)
    return replay


def _median_rate(step: Callable[[], None], work: int, warmup: int, repeats: int, iterations: int,
                 device: torch.device) -> float:
    """Median over ``repeats`` of ``work * iterations / seconds`` for ``iterations`` calls, after a
    warm-up."""
    for _ in range(warmup):
        step()
    rates = []
    for _ in range(repeats):
        _synchronize(device)
        start = time.perf_counter()
        for _ in range(iterations):
            step()
        _synchronize(device)
        rates.append(work * iterations / (time.perf_counter() - start))
    return statistics.median(rates)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_preset(preset: str, settings: dict) -> dict:
    """All four measurements for one preset (run it in a fresh process for an honest peak memory)."""
    from jedi_core.agent import build_agent
    from jedi_core.cuda_graphs import graphed_imagine_step
    from jedi_core.imagination import Imagination
    from jedi_core.replay import sample_contexts, sample_diffusion_batch, sample_reward_end_batch
    from jedi_core.training.updates import draw_inputs, make_updates

    overrides = [f"device={settings['device']}", f"world_model.batch_size={settings['world_model_batch']}",
                 f"actor_critic.batch_size={settings['imagination_batches'][0]}",
                 f"actor_critic.horizon={settings['horizon']}", *settings.get("overrides", ())]
    cfg = make_config(preset, overrides)
    device = resolve_device(cfg.device)
    set_backend_flags(cfg.performance.tf32, cfg.performance.cudnn_benchmark)
    rng = seed_everything(0)
    num_actions = settings["num_actions"]
    agent = build_agent(cfg, num_actions, device)  # compiled as the trainer's; warm-up absorbs it
    world_model, actor_critic = agent.world_model, agent.actor_critic
    replay = synthetic_replay(settings["replay_steps"], num_actions)
    updates = make_updates(agent, world_model.make_optimizers(), agent.make_actor_critic_optimizer(),
                           cfg.performance)
    precision = functools.partial(autocast, device, cfg.performance.precision,
                                  cache_enabled=not cfg.performance.cuda_graphs)
    timing = {key: settings[key] for key in ("warmup", "repeats", "iterations")}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def world_model_batches():
        return (sample_diffusion_batch(replay, cfg.world_model, rng, cfg.replay.sample_weights),
                sample_reward_end_batch(replay, cfg.world_model, rng, cfg.replay.sample_weights))

    # As in the trainer: the updates never wait for the device (check_finite=False). One "world-model update"
    # is a diffusion and a reward/end update: an epoch runs as many of each.
    def world_model_update():
        updates.diffusion(*draw_inputs("diffusion", cfg, replay, rng, device), check_finite=False)
        updates.reward_end(*draw_inputs("reward_end", cfg, replay, rng, device), check_finite=False)

    def contexts(batch_size: int):
        return sample_contexts(replay, batch_size, world_model.context_length, rng, cfg.replay.sample_weights,
                               device)

    imagined_steps = {}  # the graphed imagined steps, by batch size

    def imagination(batch_size: int) -> Callable[[], None]:
        rollouts = Imagination(batch_size, cfg.actor_critic.horizon, cfg.actor_critic.temperature)
        world_model_step = None
        if cfg.performance.cuda_graphs:
            with torch.no_grad():
                example = world_model.burn_in(*contexts(batch_size))
            world_model_step = graphed_imagine_step(world_model, example, precision)
            imagined_steps[f"imagined_step@{batch_size}"] = world_model_step.static

        def step():
            frames, actions = contexts(2 * batch_size)
            with torch.no_grad(), precision():
                rollouts(world_model, actor_critic, frames, actions, world_model_step=world_model_step)
        return step

    def actor_critic_update():
        updates.actor_critic(*draw_inputs("actor_critic", cfg, replay, rng, device), check_finite=False)

    result = {
        "preset": preset, "method": cfg.method,
        "world_model_updates_per_s": _median_rate(world_model_update, 1, device=device, **timing),
        **{f"imagined_transitions_per_s@{batch}": _median_rate(
            imagination(batch), batch * cfg.actor_critic.horizon, device=device, **timing)
           for batch in settings["imagination_batches"]},
        "actor_critic_updates_per_s": _median_rate(actor_critic_update, 1, device=device, **timing),
        # Host time to gather one world-model batch from the replay: while it is below an update's time, the
        # host prepares the next batch during the current update and never starves the device.
        "batch_assembly_ms": 1000 / _median_rate(world_model_batches, 1, device=torch.device("cpu"),
                                                 **timing),
        "parameters": world_model.parameter_counts(),
        "performance": dataclasses.asdict(cfg.performance),
    }
    result["projected_update_hours"] = projected_update_hours(cfg, result["world_model_updates_per_s"],
                                                              result["actor_critic_updates_per_s"])
    # A CUDA graph whose capture failed ran eagerly: its rate is not the graph path's.
    result["capture_errors"] = {name: update.capture_error for name, update in (
        ("diffusion", updates.diffusion), ("reward_end", updates.reward_end),
        ("actor_critic", updates.actor_critic), *imagined_steps.items())
        if getattr(update, "capture_error", None)}
    if device.type == "cuda":
        result["peak_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        result["memory_kind"] = "GPU allocator peak"
    else:
        # ru_maxrss is in kilobytes on Linux, bytes on macOS.
        scale = 2**20 if sys.platform == "darwin" else 2**10
        result["peak_memory_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale
        result["memory_kind"] = "peak RSS of the process (includes the replay and torch itself)"
    return result


def projected_update_hours(cfg, world_model_rate: float, actor_critic_rate: float) -> float:
    """Hours a full run of ``cfg``'s schedule spends in updates at these rates (env steps and evaluation
    excluded)."""
    world_model_updates, actor_critic_updates = total_updates(cfg)
    return (world_model_updates / world_model_rate + actor_critic_updates / actor_critic_rate) / 3600


def _measure_in_child(preset: str, settings: dict, queue) -> None:
    try:
        if settings.get("threads"):
            torch.set_num_threads(settings["threads"])
        queue.put(measure_preset(preset, settings))
    except BaseException as error:  # report it to the parent instead of dying silently
        queue.put({"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()})


def run_bench(pair: Sequence[str] = PAIRS["paper"], device: str = "auto", world_model_batch: int = 32,
              imagination_batches: Sequence[int] = (32, 128), horizon: int = 15, warmup: int = 2,
              repeats: int = 5, iterations: int = 3, replay_steps: int = 2_000, num_actions: int = 18,
              threads: int | None = None, overrides: Sequence[str] = (), out: str | Path | None = None
              ) -> dict:
    """Measure the JEDI preset and the pixel preset of ``pair`` with the same settings, each in a fresh
    process.

    ``overrides`` (``KEY=VALUE``) apply to both presets, e.g. ``performance.precision=bf16``. With ``out``,
    the report is written there after each preset, so a later failure keeps what was measured. A preset that
    fails is reported under ``errors`` with its traceback, and the other still runs; ``ratios`` needs both.
    """
    jedi_preset, pixel_preset = pair
    for preset in pair:  # a bad override is reported here, not from inside a child process
        make_config(preset, list(overrides))
    settings = {"device": device, "world_model_batch": world_model_batch,
                "imagination_batches": list(imagination_batches),
                "horizon": horizon, "warmup": warmup, "repeats": repeats, "iterations": iterations,
                "replay_steps": replay_steps, "num_actions": num_actions, "threads": threads,
                "overrides": list(overrides)}
    context = multiprocessing.get_context("spawn")
    report: dict = {"settings": settings, "environment": _environment(device, threads), "errors": {}}
    for role, preset in (("jedi", jedi_preset), ("pixel", pixel_preset)):
        result = _measure_in_process(context, preset, settings)
        if "error" in result:
            print(f"benchmarking preset {preset!r} failed:\n{result.get('traceback', result['error'])}",
                  file=sys.stderr, flush=True)
            report["errors"][preset] = result
        else:
            report[role] = result
        if "jedi" in report and "pixel" in report:
            report["ratios"] = {key: report["jedi"][key] / report["pixel"][key]
                                for key in metric_names(settings)}
        if out is not None:
            write_report(report, out)
    return report


def _measure_in_process(context, preset: str, settings: dict) -> dict:
    """``measure_preset`` in a fresh process; a process that dies without a word is an error too."""
    queue = context.Queue()
    process = context.Process(target=_measure_in_child, args=(preset, settings, queue))
    process.start()
    while process.is_alive() or not queue.empty():
        try:
            result = queue.get(timeout=1)
            break
        except queues.Empty:  # still measuring
            continue
    else:
        result = {"error": f"the process measuring {preset!r} died (exit code {process.exitcode})"}
    process.join()
    return result


def metric_names(settings: dict) -> list[str]:
    return ["world_model_updates_per_s",
            *[f"imagined_transitions_per_s@{b}" for b in settings["imagination_batches"]],
            "actor_critic_updates_per_s", "peak_memory_mb", "projected_update_hours", "batch_assembly_ms"]


def _environment(device: str, threads: int | None) -> dict:
    resolved = resolve_device(device)
    return {"device": torch.cuda.get_device_name(resolved) if resolved.type == "cuda" else
            f"CPU: {platform.processor() or platform.machine()}, "
            f"{threads or torch.get_num_threads()} torch threads",
            "torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
            "jedi_core": jedi_core.__version__, "platform": platform.platform(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def format_table(report: dict) -> str:
    """The measurements as a Markdown table: JEDI, pixel, and the ratio with what the paper reports."""
    settings = report["settings"]
    paper = {"world_model_updates_per_s": "2.5x (training)", "actor_critic_updates_per_s": "",
             "peak_memory_mb": "0.57x (-43%)", "projected_update_hours": "0.39x (38 vs 98 A100-hours)",
             "batch_assembly_ms": "(host, same data)"}
    jedi, pixel = report["jedi"], report["pixel"]
    lines = [f"| measure | JEDI ({jedi['preset']}) | pixel ({pixel['preset']}) | JEDI/pixel | paper |",
             "|---|---|---|---|---|"]
    for key in [k for k in metric_names(settings) if k in jedi]:  # older reports lack the newer measures
        name = (key.replace("_per_s", " per s").replace("_mb", " (MB)").replace("_", " ")
                .replace("@", ", batch "))
        name = name.replace("projected update hours", "hours of updates in a full run (projected)")
        name = name.replace("batch assembly ms", "host time to gather a world-model batch (ms)")
        lines.append(f"| {name} | {jedi[key]:,.2f} | {pixel[key]:,.2f} | {report['ratios'][key]:.2f}x | "
                     f"{paper.get(key, '> 3x (sampling)')} |")
    lines.append(f"\n{report['environment']['device']}; torch {report['environment']['torch']}; "
                 f"world-model batch {settings['world_model_batch']}, "
                 f"actor-critic batch {settings['imagination_batches'][0]} x horizon "
                 f"{settings['horizon']}; median of {settings['repeats']} x {settings['iterations']} after "
                 f"{settings['warmup']} warm-up; memory: {jedi['memory_kind']}; precision "
                 f"{jedi.get('performance', {}).get('precision', 'fp32')}, compile "
                 f"{jedi.get('performance', {}).get('compile', 'off')}.")
    return "\n".join(lines)


def write_report(report: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(report, indent=1))
    return path
