"""The training loop: collect, train the world model, train the actor-critic, evaluate, log, save.

One run follows DIAMOND's Atari schedule (the paper's Algorithm 1): an initial random collection, then
epochs of (collect ``env_steps_per_epoch`` real steps with epsilon 0.01, ``world_model_updates`` updates of
the world model, ``actor_critic_updates`` updates of the actor-critic in imagination), then a few
training-only epochs, then the final evaluation. The run folder and its files are described in
:mod:`jedi_core.training.run_dir`.

Running the same command again resumes from the checkpoint. Ctrl-C, SIGTERM and SIGUSR2 save before exiting.
A non-finite loss stops the run, and the last good checkpoint is kept (:mod:`jedi_core.training.harness`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

import jedi_core
from jedi_core.agent import build_agent
from jedi_core.config import Config
from jedi_core.configlib import to_dict
from jedi_core.envs import env_num_actions
from jedi_core.replay import ReplayBuffer
from jedi_core.runtime import (
    Logs,
    Stopwatch,
    atomic_write_text,
    resolve_device,
    seed_everything,
    set_backend_flags,
)
from jedi_core.training.collect import Collector, evaluate
from jedi_core.training.harness import RunHarness
from jedi_core.training.projection import project
from jedi_core.training.run_dir import (
    FINAL_SCORES_FILE,
    REPLAY_DIR,
    UNTRAINED_SCORES_FILE,
    read_metrics,
    run_environment,
)
from jedi_core.training.tensorboard import check_tensorboard
from jedi_core.training.updates import draw_inputs, make_updates

#: Periodic evaluations at epoch e use seeds from PERIODIC_EVAL_SEED + e; run seed s's final one plays
#: episode i from FINAL_EVAL_SEED + s * FINAL_EVAL_STRIDE + i, so two run seeds share no episode. Both are
#: far from the collector's reset seeds (for run seeds below 100): no evaluation replays a training start.
PERIODIC_EVAL_SEED = 10**6
FINAL_EVAL_SEED = 10**7
FINAL_EVAL_STRIDE = 1_000
#: ``train_return`` in metrics.jsonl is the mean of the last this many finished training episodes.
RECENT_RETURNS_KEPT = 20
#: How each method is named in ``final_scores.json`` (and so in reports, beside the published baselines).
METHOD_LABELS = {"jedi": "JEDI", "diamond": "DIAMOND (ours)"}


class Trainer(RunHarness):
    """One run, from an empty folder (or its last checkpoint) to ``final_scores.json``.

    It owns the agent, its optimisers and schedules, the replay, the NumPy generator that draws every batch,
    and the counters; :meth:`train` is Algorithm 1. The run around it (lock, resume, stop signals, progress,
    logs, checkpoint files) is :class:`~jedi_core.training.harness.RunHarness`.
    """

    def __init__(self, cfg: Config, run_dir: str | Path, quiet: bool = False):
        if cfg.logging.tensorboard:
            check_tensorboard()
        device = resolve_device(cfg.device)
        super().__init__(cfg, run_dir, device, run_environment(device, cfg.performance.precision), quiet)
        set_backend_flags(cfg.performance.tf32, cfg.performance.cudnn_benchmark)
        seed_everything(cfg.seed)
        self.agent = build_agent(cfg, env_num_actions(cfg.env), self.device)
        self.wm_optimizers = self.agent.world_model.make_optimizers()  # one per module, the encoder's shared
        self.ac_optimizer, self.ac_scheduler = self.agent.make_actor_critic_optimizer()
        self.updates = make_updates(self.agent, self.wm_optimizers, (self.ac_optimizer, self.ac_scheduler),
                                    cfg.performance)
        self.replay = ReplayBuffer()
        self.rng = np.random.default_rng(cfg.seed)
        self.counters = {"epoch": 0, "env_steps": 0, "world_model_updates": 0, "reward_end_updates": 0,
                         "actor_critic_updates": 0, "final_epochs": 0, "collector_resets": 0}
        self.recent_returns: list[float] = []
        self._collector: Collector | None = None  # the run's, once it trains

    # -- Algorithm 1 ----------------------------------------------------------------------------

    def train(self) -> None:
        """Algorithm 1 from where the counters stand: random collection, then epochs to the schedule's end."""
        if self.counters["epoch"] == 0:
            self.evaluate_untrained()
            self._initial_collection()
            self.announce_projection()
        while (self.counters["final_epochs"] < self.cfg.training.final_training_epochs
               or self.counters["env_steps"] < self.cfg.env_steps):
            self._epoch()

    def _epoch(self) -> None:
        """Collect, train the world model, train the actor-critic in imagination, evaluate, log, save."""
        cfg, train = self.cfg, self.cfg.training
        self.begin_epoch()
        first = self.counters["epoch"] == 1
        if self.counters["env_steps"] < cfg.env_steps:
            self.collect(min(train.env_steps_per_epoch, cfg.env_steps - self.counters["env_steps"]),
                         train.epsilon)
        else:
            self.counters["final_epochs"] += 1
        wm_updates = train.first_epoch_world_model_updates if first else train.world_model_updates
        ac_updates = train.first_epoch_actor_critic_updates if first else train.actor_critic_updates
        logs = self._updates(self.train_diffusion, wm_updates, label="diffusion")
        logs |= self._updates(self.train_reward_end, wm_updates, label="reward/end")
        logs |= self._updates(self.train_actor_critic, ac_updates, label="actor-critic")
        if train.eval_every_epochs and self.counters["epoch"] % train.eval_every_epochs == 0:
            logs["eval_return"] = float(np.mean(evaluate(self.agent, cfg, train.periodic_eval_episodes,
                                                         seed=PERIODIC_EVAL_SEED + self.counters["epoch"])))
        if self.recent_returns:
            logs["train_return"] = float(np.mean(self.recent_returns))
        self.end_epoch(logs)

    def _initial_collection(self) -> None:
        """Uniformly random steps before the first epoch, by DIAMOND's rule: ``initial_random_steps``, then
        an epoch's worth more at a time until the replay holds ``initial_minority_rewards`` transitions whose
        reward sign is not the commonest, or ``initial_random_steps_max`` steps. Sparse-reward games (Freeway,
        PrivateEye) thus start training with some rewards for the reward model to learn from."""
        train = self.cfg.training
        cap = min(train.initial_random_steps_max, self.cfg.env_steps)
        while self.counters["env_steps"] < cap:
            if self.counters["env_steps"] < train.initial_random_steps:
                steps = min(train.initial_random_steps, cap) - self.counters["env_steps"]
            elif (seen := self.replay.minority_reward_count()) >= train.initial_minority_rewards:
                return
            else:
                if self.counters["env_steps"] == train.initial_random_steps:
                    self._say(f"{seen} of {train.initial_minority_rewards} minority rewards seen after "
                              f"{train.initial_random_steps} random steps: collecting more (at most {cap})")
                steps = min(train.env_steps_per_epoch, cap - self.counters["env_steps"])
            self.collect(steps, 1.0, random_policy=True)

    def collect(self, steps: int, epsilon: float, random_policy: bool = False) -> None:
        """``steps`` real env steps into the replay (the agent's policy, or uniformly random actions), in the
        run's environment, opened on first use where the run left it."""
        if self._collector is None:
            self._collector = Collector(self.cfg, self.replay, self.agent, self.cfg.seed,
                                        resets=self.counters["collector_resets"])
        self.recent_returns += self._collector.collect(steps, epsilon, self.rng, random_policy=random_policy)
        self.recent_returns = self.recent_returns[-RECENT_RETURNS_KEPT:]
        self.counters["collector_resets"] = self._collector.resets
        self.count_env_steps(steps)

    def train_diffusion(self) -> Logs:
        """One diffusion update on a recency-weighted batch of replay windows."""
        self.counters["world_model_updates"] += 1
        return self.updates.diffusion(*self._draw("diffusion"), check_finite=False)

    def train_reward_end(self) -> Logs:
        """One reward/end update on a recency-weighted batch of replay windows."""
        self.counters["reward_end_updates"] += 1
        return self.updates.reward_end(*self._draw("reward_end"), check_finite=False)

    def train_actor_critic(self) -> Logs:
        """One actor-critic update: ``horizon`` more imagined steps of every rollout, ended or truncated ones
        restarting from recency-weighted real contexts."""
        self.counters["actor_critic_updates"] += 1
        return self.updates.actor_critic(*self._draw("actor_critic"), check_finite=False)

    def _draw(self, kind: str) -> tuple:
        return draw_inputs(kind, self.cfg, self.replay, self.rng, self.device)

    def evaluate_untrained(self) -> None:
        """The agent before any update plays the final evaluation's episodes (``untrained_scores.json``, once
        per run). Its draws come from a copy of the generators' state, so the run trains as it would
        without it."""
        path = self.run_dir / UNTRAINED_SCORES_FILE
        if path.is_file():
            return
        watch = Stopwatch()
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            returns = evaluate(self.agent, self.cfg, self.cfg.eval_episodes,
                               seed=final_evaluation_seed(self.cfg.seed))
        timing = {"seconds": watch.seconds(), "cpu_seconds": watch.cpu_seconds()}
        atomic_write_text(path, json.dumps({"episode_returns": returns, **timing}, indent=1))
        self._say(f"the untrained agent over {len(returns)} episodes: mean return {np.mean(returns):.2f}")

    def announce_projection(self) -> None:
        """Say how long this whole run takes here, before its first update: updates timed on a copy of the
        trainer, episodes at the untrained agent's pace (``training.projection``)."""
        untrained = json.loads((self.run_dir / UNTRAINED_SCORES_FILE).read_text())
        self.say_projection(project(self, untrained["seconds"] / max(len(untrained["episode_returns"]), 1)))

    def final_evaluation(self) -> dict:
        """Play ``eval_episodes`` full games and write ``final_scores.json`` (what ``report`` reads), with the
        untrained agent's returns on the same episodes and the hours the run took (wall and CPU)."""
        cfg = self.cfg
        watch = Stopwatch()
        returns = evaluate(self.agent, cfg, cfg.eval_episodes, seed=final_evaluation_seed(cfg.seed),
                           progress=not self.quiet)
        untrained_file = self.run_dir / UNTRAINED_SCORES_FILE
        untrained = json.loads(untrained_file.read_text()) if untrained_file.is_file() else {}
        # Wall time on the run's threads: the untrained agent's games, its epochs (summed over resumes) and
        # this evaluation.
        records = read_metrics(self.run_dir)
        hours = (untrained.get("seconds", 0.0) + sum(record.get("epoch_seconds", 0.0) for record in records)
                 + watch.seconds()) / 3600
        # CPU-hours of this process over the same parts; unknown where a part was run by older code.
        timed = "cpu_seconds" in untrained and all("epoch_cpu_seconds" in record for record in records)
        cpu_hours = (untrained["cpu_seconds"] + sum(record["epoch_cpu_seconds"] for record in records)
                     + watch.cpu_seconds()) / 3600 if timed else None
        scores = {"method": METHOD_LABELS[cfg.method], "game": cfg.env.game_name, "seed": cfg.seed,
                  "episode_returns": returns, "env_steps": self.counters["env_steps"], "preset": cfg.preset,
                  "untrained_episode_returns": untrained.get("episode_returns"), "hours": hours,
                  "cpu_hours": cpu_hours, "threads": torch.get_num_threads(),
                  "jedi_core": jedi_core.__version__, "environment": self.environment}
        atomic_write_text(self.run_dir / FINAL_SCORES_FILE, json.dumps(scores, indent=1))
        self._say(f"final evaluation over {len(returns)} episodes: mean return {np.mean(returns):.2f}")
        return scores

    # -- what a checkpoint holds ----------------------------------------------------------------

    def checkpoint_state(self) -> dict:
        counters = dict(self.counters)
        if self._collector is not None:  # live: a stop in mid-collection has reset the env since the count
            counters["collector_resets"] = self._collector.resets
        state = {"config": to_dict(self.cfg),
                 "counters": counters,
                 "agent": self.agent.state_dict(),
                 "wm_optimizers": {name: (optimizer.state_dict(), scheduler.state_dict())
                                   for name, (optimizer, scheduler) in self.wm_optimizers.items()},
                 "imagination": self.updates.imagination.carried,
                 "ac_optimizer": self.ac_optimizer.state_dict(),
                 "ac_scheduler": self.ac_scheduler.state_dict(),
                 "numpy_rng": self.rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                 "recent_returns": self.recent_returns}
        if torch.cuda.is_available():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        return state

    def restore(self, state: dict) -> None:
        self.agent.load_state_dict(state["agent"])
        for name, (optimizer, scheduler) in self.wm_optimizers.items():
            optimizer_state, scheduler_state = state["wm_optimizers"][name]
            optimizer.load_state_dict(optimizer_state)
            scheduler.load_state_dict(scheduler_state)
        self.updates.imagination.carried = [tensor.to(self.device) for tensor in state["imagination"]]
        self.ac_optimizer.load_state_dict(state["ac_optimizer"])
        self.ac_scheduler.load_state_dict(state["ac_scheduler"])
        self.rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"].cpu())
        if "cuda_rng" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.recent_returns = state["recent_returns"]
        self.replay = ReplayBuffer.load(self.run_dir / REPLAY_DIR)
        for episode in self.replay.episodes:
            if not episode.finished:  # the emulator state is gone: that episode ends here, cut short
                episode.finish_truncated()
        # The replay is saved before the checkpoint, so it may hold steps the checkpoint has not counted.
        self.counters = {**state["counters"], "env_steps": self.replay.num_steps}


def final_evaluation_seed(run_seed: int) -> int:
    """The reset seed of run seed ``run_seed``'s first final-evaluation episode (episode i adds i)."""
    return FINAL_EVAL_SEED + run_seed * FINAL_EVAL_STRIDE

