"""A real run on a real game, every phase timed, projected to the preset's whole schedule.

    python benchmarks/gpu_session/run_probe.py --preset atari100k --device cuda --out OUT/run_probe.json

The trainer's own loop (``Trainer.run``: the random collection, epochs of collection and world-model and
actor-critic updates, a checkpoint, the final evaluation) runs on Breakout with the schedule shrunk to fit a
couple of minutes: ``--random-steps`` random steps, a short warm-up epoch, then ``--epochs - 1`` epochs of
``--world-model-updates`` and ``--actor-critic-updates`` each, the preset's real collection per epoch, one
checkpoint, and an evaluation of ``--eval-episodes`` games (default: one batch of the preset's side-by-side
evaluation environments) cut at ``--eval-max-steps`` steps each. A whole first epoch (10,000 + 5,000 updates)
would take half an hour on an H100: the rates come from the short epochs instead, and the projection
multiplies them by the preset's real counts (``jedi_core.training.schedule``).

Timed inside the real loop (a subclass of the trainer adds clocks, nothing else): seconds per world-model
update (a diffusion and a reward/end update) and per actor-critic update (each batch of updates ends with
the trainer's read of its logs, which waits for the device), the rest of an epoch (collection with the agent,
bookkeeping), random collection per step, one checkpoint, evaluation per env step. The JSON is rewritten
after every timed piece (``"complete": false`` until the end), so a run stopped by its time limit still leaves
what it measured.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import gymnasium as gym

import jedi_core.training.collect as collect
from jedi_core.presets import make_config
from jedi_core.runtime import atomic_write_text
from jedi_core.training.loop import Trainer, final_evaluation_seed
from jedi_core.training.run_dir import read_metrics
from jedi_core.training.schedule import schedule_epochs, total_updates

#: Mean evaluation-game lengths (agent steps) the evaluation hours are projected for: short games of an
#: untrained agent, a middling one, and the cap (108,000 frames at frame skip 4).
EPISODE_STEPS = (1_000, 5_000, 27_000)


class StepCounter(gym.Wrapper):
    """Counts the env steps of every environment it wraps (evaluation creates its own environments)."""

    steps = 0

    def step(self, action):
        StepCounter.steps += 1
        return self.env.step(action)


class TimedTrainer(Trainer):
    """The trainer with clocks around its phases; ``report`` is called after each timed piece."""

    def __init__(self, *args, eval_max_steps: int, report, **kwargs):
        super().__init__(*args, **kwargs)
        self.eval_max_steps = eval_max_steps
        self.report = report
        self.timing: dict = {"updates": [], "checkpoints_s": []}

    def _initial_collection(self, *args, **kwargs):
        began = time.perf_counter()
        super()._initial_collection(*args, **kwargs)
        self.timing["random_collection"] = {"steps": self.counters["env_steps"],
                                            "s": time.perf_counter() - began}
        self.report()

    def _updates(self, update, count, *args, **kwargs):
        began = time.perf_counter()
        logs = super()._updates(update, count, *args, **kwargs)  # ends with a read of the logs: a device sync
        # The trainer's train_diffusion, train_reward_end (a world-model update is one of each) or
        # train_actor_critic.
        name = update.__name__.removeprefix("train_")
        kind = "actor_critic" if name == "actor_critic" else f"world_model:{name}"
        self.timing["updates"].append({"epoch": self.counters["epoch"], "kind": kind, "count": count,
                                       "s": time.perf_counter() - began})
        self.report()
        return logs

    def save_checkpoint(self):
        began = time.perf_counter()
        path = super().save_checkpoint()
        self.timing["checkpoints_s"].append(time.perf_counter() - began)
        return path

    def evaluate_untrained(self) -> None:
        """Not played here: it costs what the final evaluation costs, which the projection counts twice."""

    def announce_projection(self) -> None:
        """Not said here: this probe times the run's own phases and projects from them."""

    def final_evaluation(self) -> dict:
        """The trainer's evaluation (``collect.evaluate``, its side-by-side environments included), timed per
        env step, its games cut at ``eval_max_steps``; no scores file (they would mean nothing)."""
        self.report()
        original = collect.make_env
        collect.make_env = lambda env_cfg: StepCounter(original(env_cfg))
        StepCounter.steps = 0
        try:
            began = time.perf_counter()
            returns = collect.evaluate(self.agent, self.cfg, self.cfg.eval_episodes,
                                       seed=final_evaluation_seed(self.cfg.seed),
                                       max_steps=self.eval_max_steps)
            seconds = time.perf_counter() - began
        finally:
            collect.make_env = original
        self.timing["evaluation"] = {"episodes": len(returns), "env_steps": StepCounter.steps, "s": seconds,
                                     "side_by_side": min(getattr(self.cfg.env, "eval_envs", 1), len(returns))}
        self.report()
        return {}


def probe(args: argparse.Namespace) -> dict:
    base = [f"device={args.device}", *args.set]
    env_note = args.game
    try:
        import ale_py  # noqa: F401
        base.insert(0, f"env.game={args.game}")
    except ImportError:
        if not args.toy_if_no_ale:
            raise
        base.insert(0, "env.kind=toy")
        env_note = "toy (ale-py is missing)"
    real = make_config(args.preset, base)  # the schedule projected to
    train = real.training
    epochs = args.epochs
    eval_episodes = args.eval_episodes or max(1, getattr(real.env, "eval_envs", 1))
    shrunk = make_config(args.preset, [
        *base, f"env_steps={args.random_steps + epochs * train.env_steps_per_epoch}",
        f"training.initial_random_steps={args.random_steps}",
        f"training.initial_random_steps_max={args.random_steps}", "training.initial_minority_rewards=0",
        "training.final_training_epochs=0", "training.eval_every_epochs=0",
        f"training.checkpoint_every_epochs={epochs}", f"eval_episodes={eval_episodes}",
        f"training.first_epoch_world_model_updates={args.warmup_world_model_updates}",
        f"training.first_epoch_actor_critic_updates={args.warmup_actor_critic_updates}",
        f"training.world_model_updates={args.world_model_updates}",
        f"training.actor_critic_updates={args.actor_critic_updates}"])
    run_dir = Path(tempfile.mkdtemp(prefix="jedi_run_probe_"))
    started = time.perf_counter()
    result: dict = {"preset": args.preset, "game": env_note, "device": args.device, "overrides": args.set,
                    "complete": False,
                    "probe": {"random_steps": args.random_steps, "epochs": epochs,
                              "warmup_epoch_updates": [args.warmup_world_model_updates,
                                                       args.warmup_actor_critic_updates],
                              "epoch_updates": [args.world_model_updates, args.actor_critic_updates],
                              "env_steps_per_epoch": train.env_steps_per_epoch,
                              "eval_episodes": eval_episodes, "eval_max_steps": args.eval_max_steps}}
    trainer = None

    def report() -> None:
        result["wall_s"] = time.perf_counter() - started
        if trainer is not None:
            result["timing"] = trainer.timing
            result.update(project(real, trainer, run_dir))
        atomic_write_text(Path(args.out), json.dumps(result, indent=1))

    report()
    trainer = TimedTrainer(shrunk, run_dir, quiet=True, eval_max_steps=args.eval_max_steps, report=report)
    result["setup_s"] = time.perf_counter() - started
    try:
        trainer.run()
        result["complete"] = True
        report()
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    return result


def project(real, trainer: TimedTrainer, run_dir: Path) -> dict:
    """Rates from what was timed so far, and the whole schedule of ``real`` at those rates."""
    timing, train = trainer.timing, real.training
    by_epoch: dict[int, dict[str, float]] = {}
    for entry in timing["updates"]:
        epoch = by_epoch.setdefault(entry["epoch"], {"world_model_s": 0.0, "actor_critic_s": 0.0})
        key = "actor_critic" if entry["kind"] == "actor_critic" else "world_model"
        epoch[f"{key}_s"] += entry["s"]
        epoch[f"{key}_count"] = entry["count"]  # the parts of a world-model update run as many each
    seconds = {record["epoch"]: record["epoch_seconds"] for record in read_metrics(run_dir)}
    for epoch, entry in by_epoch.items():
        if epoch in seconds:
            entry["epoch_s"] = seconds[epoch]
            entry["rest_s"] = seconds[epoch] - entry["world_model_s"] - entry["actor_critic_s"]
    steady = [entry for epoch, entry in sorted(by_epoch.items()) if epoch > 1] or list(by_epoch.values())
    rates: dict = {"epochs_timed": by_epoch}

    def median(key: str, per: str | None = None) -> float | None:
        values = [entry[key] / (entry[per] if per else 1) for entry in steady
                  if key in entry and (per is None or entry.get(per))]
        return statistics.median(values) if values else None

    rates["s_per_world_model_update"] = median("world_model_s", "world_model_count")
    rates["s_per_actor_critic_update"] = median("actor_critic_s", "actor_critic_count")
    rates["rest_s_per_epoch"] = median("rest_s")
    if random := timing.get("random_collection"):
        rates["random_s_per_step"] = random["s"] / max(random["steps"], 1)
    if timing["checkpoints_s"]:
        rates["checkpoint_s"] = statistics.median(timing["checkpoints_s"])
    if evaluation := timing.get("evaluation"):
        rates["eval_s_per_env_step"] = evaluation["s"] / max(evaluation["env_steps"], 1)
    if trainer.counters["collector_resets"]:  # games started while collecting: a rough game length
        rates["mean_game_steps_while_collecting"] = trainer.counters["env_steps"] / trainer.counters[
            "collector_resets"]

    epochs = schedule_epochs(real)
    world_model_updates, actor_critic_updates = total_updates(real)
    collecting = epochs - train.final_training_epochs
    periodic = ((epochs // train.eval_every_epochs) * train.periodic_eval_episodes
                if train.eval_every_epochs else 0)
    schedule = {"epochs": epochs, "collecting_epochs": collecting, "world_model_updates": world_model_updates,
                "actor_critic_updates": actor_critic_updates, "random_steps": train.initial_random_steps,
                "checkpoints": epochs // train.checkpoint_every_epochs,
                "evaluation_episodes": 2 * real.eval_episodes + periodic}  # final and untrained agents
    hours: dict = {}
    if rates["s_per_world_model_update"] is not None:
        hours["world_model_updates"] = world_model_updates * rates["s_per_world_model_update"] / 3600
    if rates["s_per_actor_critic_update"] is not None:
        hours["actor_critic_updates"] = actor_critic_updates * rates["s_per_actor_critic_update"] / 3600
    if rates["rest_s_per_epoch"] is not None:  # collection and bookkeeping: collecting epochs hold nearly all
        hours["collection_and_bookkeeping"] = collecting * rates["rest_s_per_epoch"] / 3600
    if "random_s_per_step" in rates:
        hours["random_collection"] = train.initial_random_steps * rates["random_s_per_step"] / 3600
    if "checkpoint_s" in rates:
        hours["checkpoints"] = schedule["checkpoints"] * rates["checkpoint_s"] / 3600
    projection: dict = {"hours": hours, "hours_without_evaluation": sum(hours.values()),
                        "complete_without_evaluation": len(hours) == 5}
    if "eval_s_per_env_step" in rates:
        collecting_game = round(rates.get("mean_game_steps_while_collecting", EPISODE_STEPS[0]))
        lengths = sorted({*EPISODE_STEPS, collecting_game})
        projection["evaluation_hours_if_mean_game_steps_is"] = {
            str(steps): schedule["evaluation_episodes"] * steps * rates["eval_s_per_env_step"] / 3600
            for steps in lengths}
        projection["hours_with_evaluation_at_5000_steps_a_game"] = (
            projection["hours_without_evaluation"]
            + projection["evaluation_hours_if_mean_game_steps_is"]["5000"])
    projection["notes"] = ("the checkpoint is timed with a small replay (a full run's holds 100k frames); "
                           "random steps are counted at initial_random_steps (a sparse-reward game may "
                           "collect up to initial_random_steps_max); periodic evaluations are timed at the "
                           "final evaluation's side-by-side width")
    return {"rates": rates, "schedule": schedule, "projection": projection}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--preset", default="atari100k")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--game", default="Breakout")
    parser.add_argument("--toy-if-no-ale", action="store_true",
                        help="play the toy game where ale-py is missing (CPU dry runs) instead of failing")
    parser.add_argument("--random-steps", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=4, help="the first is a short warm-up")
    parser.add_argument("--warmup-world-model-updates", type=int, default=5)
    parser.add_argument("--warmup-actor-critic-updates", type=int, default=3)
    parser.add_argument("--world-model-updates", type=int, default=50, help="per epoch after the first")
    parser.add_argument("--actor-critic-updates", type=int, default=25, help="per epoch after the first")
    parser.add_argument("--eval-episodes", type=int, default=0,
                        help="0: the preset's env.eval_envs (one batch of side-by-side games)")
    parser.add_argument("--eval-max-steps", type=int, default=300)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides of the preset")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    result = probe(args)
    print(json.dumps({key: result.get(key) for key in ("rates", "projection", "wall_s")}, indent=1,
                     default=str))


if __name__ == "__main__":
    main()
