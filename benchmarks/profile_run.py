"""Where a whole run's time goes, phase by phase: measured on a real game, projected onto its schedule.

    python benchmarks/profile_run.py cpu env.game=Krull seed=0 --out benchmarks/results/profile_cpu_krull.json

One thread, nothing else running. It builds the run's own :class:`~jedi_core.training.loop.Trainer` in a
scratch folder and times each phase as the run performs it:

* the initial random collection (``initial_random_steps`` real steps) and collection with the policy;
* diffusion, reward/end and actor-critic updates (``--updates`` of each after one warm-up), split into batch
  sampling on the host, the loss's forward pass, backward and clipping, and the optimisers' step; inside the
  forward pass, the reward/end model's sampled next inputs (``next_input=sampled``: the denoiser's steps)
  and the actor-critic's burn-in of fresh contexts;
* an evaluation of ``periodic_eval_episodes`` full games (the untrained agent's: a trained agent's episodes
  can be longer), and a checkpoint with the replay of the random collection;

and counts each update's aten ops (``analysis.launches``). Each phase's seconds per call times its calls in
a full run (``training.schedule``) gives the table; the rows sum to the projected run.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import json
import platform
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from jedi_core.analysis.launches import count_launches
from jedi_core.optim import apply_gradients, backward_and_clip
from jedi_core.presets import make_config
from jedi_core.training.collect import evaluate
from jedi_core.training.loop import PERIODIC_EVAL_SEED, Trainer
from jedi_core.training.schedule import schedule_epochs, total_updates
from jedi_core.training.updates import draw_inputs


class Stopwatch:
    """Seconds spent in each named part, summed over calls."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        yield
        self.seconds[name] += time.perf_counter() - start

    def wrap(self, owner: object, method: str, name: str) -> None:
        """Time every call of ``owner.method`` under ``name`` (an instance attribute shadows the class's)."""
        original = getattr(owner, method)

        def timed(*args, **kwargs):
            with self(name):
                return original(*args, **kwargs)
        setattr(owner, method, timed)


def time_updates(trainer: Trainer, watch: Stopwatch, count: int) -> dict[str, int]:
    """``count`` updates of each kind, as the trainer makes them, timed part by part; returns aten ops per
    update."""
    cfg, rng, device = trainer.cfg, trainer.rng, trainer.device
    world_model = trainer.agent.world_model
    watch.wrap(world_model.denoiser, "sample_along", "reward/end: sampled next inputs")
    watch.wrap(world_model, "burn_in", "actor-critic: burn-in of fresh contexts")

    ops = {}
    for label, kind in (("diffusion", "diffusion"), ("reward/end", "reward_end"),
                        ("actor-critic", "actor_critic")):
        update = getattr(trainer.updates, kind)
        inputs = functools.partial(draw_inputs, kind, cfg, trainer.replay, rng, device)
        args = inputs()
        ops[label] = count_launches(functools.partial(update, *args, check_finite=False)).total  # warms up
        for _ in range(count):
            with watch(f"{label}: batch sampling"):
                args = inputs()
            with watch(f"{label}: forward"), update.context():
                loss, logs = update.loss_fn(*args)
            with watch(f"{label}: backward and clipping"):
                backward_and_clip(loss, logs, update.optimizers, update.clip_groups)
            with watch(f"{label}: optimiser step"):
                apply_gradients(update.optimizers)
    return ops


def profile(preset: str, overrides: list[str], updates: int) -> dict:
    torch.set_num_threads(1)
    cfg = make_config(preset, overrides)
    train = cfg.training
    watch = Stopwatch()
    with tempfile.TemporaryDirectory() as scratch:
        trainer = Trainer(cfg, scratch, quiet=True)
        with watch("random collection"):
            trainer.collect(train.initial_random_steps, 1.0, random_policy=True)
        with watch("checkpoint and replay save"):
            trainer.save_checkpoint()
        ops = time_updates(trainer, watch, updates)
        with watch("collection"):
            trainer.collect(train.env_steps_per_epoch, train.epsilon)
        steps_before = trainer.replay.num_steps
        with watch("evaluation"):
            returns = evaluate(trainer.agent, cfg, train.periodic_eval_episodes, seed=PERIODIC_EVAL_SEED)
    epochs = schedule_epochs(cfg)
    world_model_updates, actor_critic_updates = total_updates(cfg)
    evaluations = epochs // train.eval_every_epochs if train.eval_every_epochs else 0
    calls = {"random collection": (train.initial_random_steps, train.initial_random_steps),
             "collection": (cfg.env_steps - train.initial_random_steps, train.env_steps_per_epoch),
             # the final evaluation, and the untrained agent on the same episodes
             "evaluation": (evaluations * train.periodic_eval_episodes + 2 * cfg.eval_episodes,
                            train.periodic_eval_episodes),
             "checkpoint and replay save": (-(-epochs // train.checkpoint_every_epochs) + 1, 1)}
    for label, run_calls in (("diffusion", world_model_updates), ("reward/end", world_model_updates),
                             ("actor-critic", actor_critic_updates)):
        for name in watch.seconds:
            if name.startswith(label + ":"):
                calls[name] = (run_calls, updates)
    rows = []
    for name, seconds in watch.seconds.items():
        run_calls, measured_calls = calls[name]
        rows.append({"phase": name, "seconds_per_call": seconds / measured_calls, "calls_in_run": run_calls,
                     "seconds_in_run": seconds / measured_calls * run_calls})
    # The nested parts (sampled next inputs, burn-in) are inside their update's forward pass: not summed.
    nested = ("reward/end: sampled next inputs", "actor-critic: burn-in of fresh contexts")
    total = sum(row["seconds_in_run"] for row in rows if row["phase"] not in nested)
    for row in rows:
        row["share"] = row["seconds_in_run"] / total
    return {"preset": preset, "overrides": overrides, "updates_timed": updates, "rows": rows,
            "projected_run_seconds": total, "aten_ops_per_update": ops,
            "evaluation_mean_return": float(np.mean(returns)), "replay_steps": steps_before,
            "environment": {"torch": torch.__version__, "threads": torch.get_num_threads(),
                            "machine": platform.processor() or platform.machine(),
                            "python": platform.python_version()}}


def format_table(report: dict) -> str:
    lines = ["| phase | s per call | calls in a run | s in a run | share |", "|---|---:|---:|---:|---:|"]
    for row in report["rows"]:
        nested = row["phase"].endswith(("sampled next inputs", "burn-in of fresh contexts"))
        share = f"({row['share']:.0%})" if nested else f"{row['share']:.0%}"
        lines.append(f"| {row['phase']} | {row['seconds_per_call']:.4f} | {row['calls_in_run']:,} | "
                     f"{row['seconds_in_run']:,.0f} | {share} |")
    lines.append(f"| **run, projected** | | | **{report['projected_run_seconds']:,.0f}** "
                 f"({report['projected_run_seconds'] / 60:.0f} min) | 100% |")
    ops = ", ".join(f"{label} {count:,}" for label, count in report["aten_ops_per_update"].items())
    return "\n".join(lines) + f"\n\naten ops per update: {ops}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("preset")
    parser.add_argument("overrides", nargs="*", help="key=value settings, as `jedi_core train` takes them")
    parser.add_argument("--updates", type=int, default=10, help="updates of each kind timed (default 10)")
    parser.add_argument("--out", type=Path, help="write the report as JSON here")
    args = parser.parse_args()
    report = profile(args.preset, args.overrides, args.updates)
    print(format_table(report))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
