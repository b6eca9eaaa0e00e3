"""``performance.compile``: what compiling the per-step networks costs and gains on the actor-critic update
(the update that holds most of a run's hours), every error recorded rather than raised.

    python benchmarks/gpu_session/compile_probe.py --preset atari100k --device cuda --mode default \
        --out OUT/compile.json

In one process, as the trainer builds it (``Agent.compile_per_step_networks``): the eager update's rate
first, then the networks are compiled in place and the first compiled update is timed (tracing and code
generation), then a few warm calls (recompilations show here), then the compiled rate and its speed-up over
eager. ``--measures`` adds the no-gradient imagination and the world-model update. The JSON is rewritten after
each step, so a time limit hit while compiling still leaves how long it had taken; Dynamo's counters (graph
breaks, recompilations) are kept with it. ``--backend aot_eager`` traces the same graphs without generating
kernels (the CPU dry run).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import statistics
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

from jedi_core.agent import Agent
from jedi_core.analysis.bench import synthetic_replay
from jedi_core.cuda_graphs import graphed_imagine_step
from jedi_core.imagination import Imagination
from jedi_core.presets import make_config
from jedi_core.runtime import atomic_write_text, autocast, resolve_device, seed_everything
from jedi_core.training.updates import draw_inputs, make_updates

NUM_ACTIONS = 18


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--preset", default="atari100k")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--mode", default="default", help="performance.compile's mode")
    parser.add_argument("--backend", default="inductor")
    parser.add_argument("--measures", nargs="+", default=["actor_critic_update"],
                        choices=["actor_critic_update", "imagination", "world_model_update"])
    parser.add_argument("--batch", type=int, default=None, help="imagined rollouts (default: the preset's)")
    parser.add_argument("--horizon", type=int, default=None, help="default: the preset's")
    parser.add_argument("--calls", type=int, default=5, help="calls per timed repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warm-calls", type=int, default=3, help="untimed calls after the first")
    parser.add_argument("--replay-steps", type=int, default=2_000)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="more overrides")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch._logging.set_logs(recompiles=True, graph_breaks=True)

    overrides = [f"device={args.device}", *args.set]
    if args.batch:
        overrides.append(f"actor_critic.batch_size={args.batch}")
    if args.horizon:
        overrides.append(f"actor_critic.horizon={args.horizon}")
    cfg = make_config(args.preset, overrides)
    device = resolve_device(cfg.device)
    rng = seed_everything(0)
    agent = Agent(cfg, NUM_ACTIONS).to(device)
    world_model, actor_critic = agent.world_model, agent.actor_critic
    replay = synthetic_replay(args.replay_steps, NUM_ACTIONS)
    # The trainer's three updates (training.updates): the run's precision, CUDA graphs with cuda_graphs.
    updates = make_updates(agent, world_model.make_optimizers(), agent.make_actor_critic_optimizer(),
                           cfg.performance)
    precision = functools.partial(autocast, device, cfg.performance.precision,
                                  cache_enabled=not cfg.performance.cuda_graphs)
    ac_cfg = cfg.actor_critic
    rollouts = Imagination(ac_cfg.batch_size, ac_cfg.horizon, ac_cfg.temperature)
    graphed_step = []  # with cuda_graphs: the imagined step's graph, captured at the first imagination

    def contexts():  # as the trainer draws them: a batch to start rollouts from, as many to restart from
        return draw_inputs("actor_critic", cfg, replay, rng, device)

    def actor_critic_update() -> None:
        updates.actor_critic(*contexts(), check_finite=False)

    def imagination() -> None:
        frames, actions = contexts()
        world_model.eval()
        with torch.no_grad(), precision():
            if cfg.performance.cuda_graphs and not graphed_step:
                example = world_model.burn_in(frames[: ac_cfg.batch_size], actions[: ac_cfg.batch_size])
                graphed_step.append(graphed_imagine_step(world_model, example, precision))
            rollouts(world_model, actor_critic, frames, actions,
                     world_model_step=graphed_step[0] if graphed_step else None)

    def world_model_update() -> None:  # a diffusion update, then a reward/end update (Algorithm 1)
        updates.diffusion(*draw_inputs("diffusion", cfg, replay, rng, device), check_finite=False)
        updates.reward_end(*draw_inputs("reward_end", cfg, replay, rng, device), check_finite=False)

    functions = {"actor_critic_update": (actor_critic_update, 1),
                 "world_model_update": (world_model_update, 1),
                 "imagination": (imagination, ac_cfg.batch_size * ac_cfg.horizon)}
    measures = {name: functions[name] for name in args.measures}
    result: dict = {"preset": args.preset, "device": str(device), "mode": args.mode, "backend": args.backend,
                    "torch": torch.__version__, "batch": ac_cfg.batch_size, "horizon": ac_cfg.horizon,
                    "precision": cfg.performance.precision, "complete": False,
                    "measures": {name: {} for name in measures}}
    out = Path(args.out)

    def write() -> None:
        result["dynamo_counters"] = counters()
        atomic_write_text(out, json.dumps(result, indent=1))

    def stopped(signum, frame) -> None:  # the stage's time limit: say where it was, then go
        result["stopped"] = (f"signal {signum} after {time.perf_counter() - started:.0f} s, during "
                             f"{result.get('now', '?')}")
        write()
        os._exit(128 + signum)

    started = time.perf_counter()
    signal.signal(signal.SIGTERM, stopped)

    def attempt(name: str, step: str, action: Callable[[], dict]) -> bool:
        """Run one step of one measure; an error is the finding: kept, and that measure stops."""
        record = result["measures"][name]
        result["now"] = f"{name}: {step}"
        try:
            record.update(action())
            return True
        except Exception as error:  # noqa: BLE001
            record["error"] = f"{step}: {type(error).__name__}: {str(error)[:800]}"
            record["traceback"] = traceback.format_exc()[-2000:]
            result.setdefault("errors", []).append(f"{name}: {record['error'][:300]}")
            return False
        finally:
            write()
            print(name, step, json.dumps({k: v for k, v in record.items() if k != "traceback"}), flush=True)

    def rate(fn: Callable[[], None], work: int) -> float:
        rates = []
        for _ in range(args.repeats):
            synchronize(device)
            began = time.perf_counter()
            for _ in range(args.calls):
                fn()
            synchronize(device)
            rates.append(work * args.calls / (time.perf_counter() - began))
        return statistics.median(rates)

    def first_and_warm(fn: Callable[[], None], key: str) -> dict:
        began = time.perf_counter()
        fn()
        synchronize(device)
        first = time.perf_counter() - began
        for _ in range(args.warm_calls):
            fn()
        synchronize(device)
        return {f"{key}first_call_s": first, f"{key}warm_calls_s": time.perf_counter() - began - first}

    write()
    # Eager first, in the same process and on the same data: the speed-up needs no other run.
    alive = {name: attempt(name, "eager", lambda fn=fn, work=work: {
        **first_and_warm(fn, "eager_"), "eager_per_s": rate(fn, work)})
        for name, (fn, work) in measures.items()}
    began = time.perf_counter()
    try:
        result["compiled_networks"] = agent.compile_per_step_networks(args.mode, args.backend)
        result["compile_call_s"] = time.perf_counter() - began  # lazy: the work happens at the first call
    except Exception as error:  # noqa: BLE001
        result["errors"] = [f"compile_per_step_networks: {type(error).__name__}: {error}"]
        write()
        return
    for name, (fn, work) in measures.items():
        if not alive[name]:
            continue
        if attempt(name, "compile", lambda fn=fn: first_and_warm(fn, "")):
            attempt(name, "compiled rate", lambda fn=fn, work=work, name=name: {
                "per_s": (per_s := rate(fn, work)),
                "speedup_over_eager": per_s / result["measures"][name]["eager_per_s"]})
    if device.type == "cuda":
        result["peak_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    result["complete"] = True
    write()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def counters() -> dict:
    """Dynamo's counters worth reading: graph breaks, recompilations, graphs compiled."""
    try:
        from torch._dynamo.utils import counters as dynamo_counters
    except ImportError:
        return {}
    return {group: {str(key): value for key, value in values.items()}
            for group, values in dynamo_counters.items()
            if group in ("graph_break", "recompiles", "stats", "frames", "inductor") and values}


if __name__ == "__main__":
    main()
