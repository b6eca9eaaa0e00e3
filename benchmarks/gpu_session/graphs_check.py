"""Are the CUDA-graph updates the eager ones? 20 of each update, graphed against eager, on the same draws.

    python benchmarks/gpu_session/graphs_check.py --preset atari100k --device cuda --out OUT/graphs_check.json

Three copies of one agent (same weights) train side by side on the same batches: two eagerly, one with
``performance.cuda_graphs=true`` (3 eager warm-ups, the capture, then replays). Before each update the
default generators are seeded alike, so a replay draws what the eager update draws if the graph's random
numbers follow the generator as PyTorch promises. Reported per update (diffusion, reward/end, actor-critic):

- the largest relative difference of any logged value (losses, norms) over the updates, graphed against
  eager, and eager against the second eager copy (the device's own non-determinism: the scale a difference
  is judged on);
- the distance of the final weights, graphed against eager, over how far the eager weights moved;
- fresh draws: two replays of the same batch, unseeded, must give different losses (the noise is drawn anew
  at every replay, not frozen at capture), and two seeded alike the same (the updates that draw: diffusion,
  and reward/end on sampled next inputs); two imagined steps from the same state must differ;
- the device time of one replay (CUDA events around ``graph.replay()``), beside an eager update's;
- a capture that failed, with its traceback (the update then ran eagerly: ``cuda_graphs.StaticUpdate``).

The verdict ``ok`` needs every difference within 10x the eager copies' (or 1e-4 of a logged value, 1% of
the weights' movement) and fresh draws; the script exits 1 otherwise, after writing the JSON. On a CPU the
graph path runs its buffers eagerly: the differences are zero, and the check tests this script.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from jedi_core.agent import Agent, build_agent
from jedi_core.analysis.bench import synthetic_replay
from jedi_core.cuda_graphs import StaticUpdate, graphed_imagine_step
from jedi_core.presets import make_config
from jedi_core.replay import sample_contexts, sample_diffusion_batch, sample_reward_end_batch
from jedi_core.runtime import atomic_write_text, resolve_device, seed_everything, to_floats
from jedi_core.training.updates import make_updates

KINDS = ("diffusion", "reward_end", "actor_critic")
MODULES = ("encoder", "denoiser", "reward_end", "actor_critic")
#: What the graph path may differ by: 10x the eager copies' own spread, and never less than these.
SPREAD_FACTOR, LOG_FLOOR, WEIGHT_FLOOR = 10.0, 1e-4, 0.01


def build(cfg, num_actions: int, device: torch.device):
    agent = build_agent(cfg, num_actions, device)
    copies = {"eager": agent, "eager_again": copy.deepcopy(agent), "graphed": copy.deepcopy(agent)}
    updates = {}
    for name, copied in copies.items():
        performance = dataclasses.replace(cfg.performance, cuda_graphs=name == "graphed")
        updates[name] = make_updates(copied, copied.world_model.make_optimizers(),
                                     copied.make_actor_critic_optimizer(), performance)
    return copies, updates


def weights(agent: Agent, module: str) -> torch.Tensor:
    owner = agent if module == "actor_critic" else agent.world_model
    return torch.cat([p.detach().float().flatten() for p in getattr(owner, module).parameters()])


def weight_distances(copies: dict, initial: dict) -> dict:
    """Per module: ||graphed - eager|| and ||eager_again - eager||, each over ||eager - initial||."""
    distances = {}
    for module in MODULES:
        eager = weights(copies["eager"], module)
        moved = (eager - initial[module]).norm().item()
        distances[module] = {"moved": moved, **{
            name: ((weights(copies[name], module) - eager).norm().item() / moved if moved else 0.0)
            for name in ("graphed", "eager_again")}}
    return distances


def largest_difference(logs: list[dict], reference: list[dict]) -> float:
    """The largest difference of any logged value over the updates, relative to the reference's (at least
    1e-3: a policy loss near zero)."""
    return max(abs(log[key] - expected[key]) / max(abs(expected[key]), 1e-3)
               for log, expected in zip(logs, reference, strict=True) for key in expected)


def device_ms(fn, device: torch.device, calls: int = 10) -> float | None:
    """Median milliseconds of ``fn`` on the device (CUDA events), or on the clock on a CPU."""
    times = []
    for _ in range(calls):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            began = time.perf_counter()
            fn()
            times.append(1000 * (time.perf_counter() - began))
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="atari100k")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--updates", type=int, default=20)
    parser.add_argument("--num-actions", type=int, default=18)
    parser.add_argument("--replay-steps", type=int, default=2000)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides of the preset")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    cfg = make_config(args.preset, [f"device={args.device}", *args.set])
    device = resolve_device(cfg.device)
    rng = seed_everything(0)
    copies, updates = build(cfg, args.num_actions, device)
    replay = synthetic_replay(args.replay_steps, args.num_actions)
    initial = {module: weights(copies["eager"], module).clone() for module in MODULES}
    report: dict = {"preset": args.preset, "device": str(device), "updates": args.updates,
                    "overrides": args.set, "complete": False}
    out = Path(args.out)

    def inputs(kind: str):
        if kind == "diffusion":
            return [sample_diffusion_batch(replay, cfg.world_model, rng, cfg.replay.sample_weights)]
        if kind == "reward_end":
            return [sample_reward_end_batch(replay, cfg.world_model, rng, cfg.replay.sample_weights)]
        return list(sample_contexts(replay, 2 * cfg.actor_critic.batch_size,
                                    copies["eager"].world_model.context_length, rng,
                                    cfg.replay.sample_weights, device))

    def on_device(items):
        return [item.to_torch(device) if hasattr(item, "to_torch") else item.clone() for item in items]

    logged = {kind: {name: [] for name in copies} for kind in KINDS}
    for step in range(args.updates):
        for kind in KINDS:  # interleaved, as the trainer interleaves them
            batch = inputs(kind)
            for name in copies:
                torch.manual_seed(10_000 * step + KINDS.index(kind))
                logs = getattr(updates[name], kind)(*on_device(batch), check_finite=False)
                logged[kind][name].append(to_floats(logs))

    graphed = {kind: getattr(updates["graphed"], kind) for kind in KINDS}
    report["capture_errors"] = {kind: update.capture_error for kind, update in graphed.items()
                                if isinstance(update, StaticUpdate) and update.capture_error}
    report["captured"] = {kind: isinstance(update, StaticUpdate) and update.graph is not None
                          for kind, update in graphed.items()}

    report["log_differences"] = {kind: {
        name: largest_difference(logged[kind][name], logged[kind]["eager"])
        for name in ("graphed", "eager_again")}
        for kind in KINDS}
    report["eager_logs"] = {kind: logged[kind]["eager"] for kind in KINDS}
    report["weight_distances"] = weight_distances(copies, initial)
    atomic_write_text(out, json.dumps(report, indent=1))

    # Fresh draws: the same batch twice, unseeded (the losses must differ), then seeded alike (equal).
    # (The actor-critic update carries its rollouts on from call to call, so no two of its calls are alike;
    # its draws are checked by the seeded comparison above and by the imagined step here.)
    fresh = {}
    drawing = ["diffusion"] + (["reward_end"] if cfg.world_model.reward_end.next_input == "sampled" else [])
    for kind in drawing:
        batch = on_device(inputs(kind))
        gradients = graphed[kind].gradients
        first, second = (gradients(*batch)[0].item() for _ in range(2))
        seeded = []
        for _ in range(2):
            torch.manual_seed(7)
            seeded.append(gradients(*batch)[0].item())
        fresh[kind] = {"unseeded_differ": first != second, "seeded_equal": seeded[0] == seeded[1]}
    world_model = copies["graphed"].world_model
    frames, actions = inputs("actor_critic")
    with torch.no_grad():
        example = world_model.burn_in(frames[: cfg.actor_critic.batch_size],
                                      actions[: cfg.actor_critic.batch_size])
    step_fn = graphed_imagine_step(world_model, example)
    action = example.actions[:, -1].clone()
    first, second = (step_fn(example, action)[0] for _ in range(2))
    fresh["imagined_step"] = {"unseeded_differ": not torch.equal(first, second)}
    if step_fn.static.capture_error:
        report["capture_errors"]["imagined_step"] = step_fn.static.capture_error
    report["fresh_draws"] = fresh

    # Device time of one replay against one eager update (the same batch every call).
    timing = {}
    for kind in KINDS:
        batch = on_device(inputs(kind))
        update, eager = graphed[kind], getattr(updates["eager_again"], kind)
        graph = getattr(update, "graph", None)
        timing[kind] = {
            "replay_ms": device_ms(graph.replay, device) if graph is not None else None,
            "eager_update_ms": device_ms(functools.partial(eager, *batch, check_finite=False), device)}
    report["device_ms"] = timing

    close = all(item["graphed"] <= max(LOG_FLOOR, SPREAD_FACTOR * item["eager_again"])
                for item in report["log_differences"].values())
    close = close and all(item["graphed"] <= max(WEIGHT_FLOOR, SPREAD_FACTOR * item["eager_again"])
                          for item in report["weight_distances"].values())
    draws = all(item["unseeded_differ"] and item.get("seeded_equal", True) for item in fresh.values())
    report["verdict"] = "ok" if close and draws else ("graphed and eager differ" if not close else
                                                      "random draws are not fresh at every replay")
    report["complete"] = True
    atomic_write_text(out, json.dumps(report, indent=1))
    print(json.dumps({key: report[key] for key in ("verdict", "captured", "device_ms")}, indent=1))
    for kind, error in report["capture_errors"].items():
        print(f"capture of {kind} failed; it ran eagerly:\n{error}", file=sys.stderr)
    return 0 if report["verdict"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
