"""The training loop: collect, train the world model, train the actor-critic, evaluate, save.

One run follows DIAMOND's Atari schedule (the paper's Algorithm 1): an initial random collection, then
epochs of (collect ``env_steps_per_epoch`` real steps with epsilon 0.01, ``world_model_updates`` updates of
the world model, ``actor_critic_updates`` updates of the actor-critic in imagination), then a few
training-only epochs, then the final evaluation. The run folder and its files are described in
:mod:`jedi_core.training.run_dir`.

Running the same command again resumes from the checkpoint. Ctrl-C, SIGTERM and SIGUSR2 save before exiting.
A non-finite loss stops the run, and the last good checkpoint is kept.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

import jedi_core
from jedi_core.agent import Agent
from jedi_core.config import Config
from jedi_core.configlib import to_dict
from jedi_core.envs import env_num_actions
from jedi_core.imagination import actor_critic_training_step
from jedi_core.replay import ReplayBuffer, sample_contexts, sample_training_batch
from jedi_core.runtime import (
    Logs,
    StopRequested,
    atomic_write_text,
    mean_logs,
    non_finite,
    resolve_device,
    seed_everything,
    set_backend_flags,
    stop_signals_as_interrupts,
)
from jedi_core.training.checkpoint import check_resumable, read_run_checkpoint, write_checkpoint
from jedi_core.training.collect import Collector, evaluate
from jedi_core.training.run_dir import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    ENVIRONMENT_FILE,
    FINAL_SCORES_FILE,
    METRICS_FILE,
    REPLAY_DIR,
    append_metrics,
    has_checkpoint,
    lock_run_dir,
    run_environment,
    truncate_metrics,
)
from jedi_core.training.schedule import hours_left
from jedi_core.training.tensorboard import TensorBoardMirror, check_tensorboard
from jedi_core.world_model import UPDATE_SCHEDULES

#: Updates whose logs are read (and checked for divergence) in one device-to-host transfer.
LOG_CHUNK = 200
#: Periodic evaluations at epoch e use seeds from PERIODIC_EVAL_SEED + e; the final one from FINAL_EVAL_SEED
#: + the run's seed. Both are far from the collector's reset seeds, so no evaluation replays a training start.
PERIODIC_EVAL_SEED = 10**6
FINAL_EVAL_SEED = 10**7
#: ``train_return`` in metrics.jsonl is the mean of the last this many finished training episodes.
RECENT_RETURNS_KEPT = 20
#: How each method is named in ``final_scores.json`` (and so in reports, beside the published baselines).
METHOD_LABELS = {"jedi": "JEDI", "diamond": "DIAMOND (ours)"}


class Trainer:
    """One run, from an empty folder (or its last checkpoint) to ``final_scores.json``.

    It owns the agent, both optimisers and their schedules, the replay, the NumPy generator that draws
    every batch, and the counters; :meth:`run` is the whole of Algorithm 1. The world-model and
    actor-critic updates run without waiting for the device; their logs are read every ``LOG_CHUNK``
    updates, when a non-finite one stops the run before the next checkpoint.
    """

    def __init__(self, cfg: Config, run_dir: str | Path, quiet: bool = False):
        if cfg.logging.tensorboard:
            check_tensorboard()
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.quiet = quiet
        self.device = resolve_device(cfg.device)
        set_backend_flags(cfg.performance.tf32, cfg.performance.cudnn_benchmark)
        seed_everything(cfg.seed)
        self.agent = Agent(cfg, env_num_actions(cfg.env)).to(self.device)
        self.agent.compile_per_step_networks(cfg.performance.compile)
        # One optimiser and schedule per part of the world-model update (one for a joint update).
        self.wm_parts = UPDATE_SCHEDULES[cfg.world_model.updates]
        self.wm_optimizers = {part: self.agent.world_model.make_optimizer(part) for part in self.wm_parts}
        self.ac_optimizer, self.ac_scheduler = self.agent.make_actor_critic_optimizer()
        self.replay = ReplayBuffer()
        self.rng = np.random.default_rng(cfg.seed)
        self.counters = {"epoch": 0, "env_steps": 0, "world_model_updates": 0, "reward_end_updates": 0,
                         "actor_critic_updates": 0, "final_epochs": 0, "collector_resets": 0}
        self.recent_returns: list[float] = []
        self._unlogged_epoch: dict[str, int] | None = None  # the counters before the epoch in progress
        self._newest_damaged = False  # resumed from checkpoint.prev.pt because checkpoint.pt is damaged
        self._rates: dict[str, float] = {}  # updates/s measured over the last epoch, for the time left
        self._collector: Collector | None = None  # the run's, once it runs
        self._bar: tqdm | None = None  # the run's progress bar, once it runs
        self._tensorboard: TensorBoardMirror | None = None  # with logging.tensorboard, once it runs
        self.environment = run_environment(self.device, cfg.performance.precision)
        self._bar_title = f"{cfg.method} {cfg.env.game_name}"

    # -- the loop -------------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return (self.run_dir / FINAL_SCORES_FILE).is_file()

    def run(self) -> dict:
        """Train to the end of the schedule (resuming if a checkpoint exists), evaluate, return the scores.

        The run folder is locked meanwhile: a second process training into it is refused."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with lock_run_dir(self.run_dir):
            return self._run()

    def _run(self) -> dict:
        if self.finished:
            self._say(f"{self.run_dir} has finished already: see {FINAL_SCORES_FILE}")
            return json.loads((self.run_dir / FINAL_SCORES_FILE).read_text())
        if has_checkpoint(self.run_dir):
            self.load_checkpoint()
            self._say(f"resumed {self.run_dir} at epoch {self.counters['epoch']}, "
                      f"{self.counters['env_steps']} env steps")
        atomic_write_text(self.run_dir / CONFIG_FILE, json.dumps(to_dict(self.cfg), indent=1))
        atomic_write_text(self.run_dir / ENVIRONMENT_FILE, json.dumps(self.environment, indent=1))
        cfg = self.cfg
        if cfg.logging.tensorboard:
            self._tensorboard = TensorBoardMirror(self.run_dir, next_epoch=self.counters["epoch"] + 1)
        train = cfg.training
        collector = Collector(cfg, self.replay, self.agent, cfg.seed,
                              resets=self.counters["collector_resets"])
        self._collector = collector
        # tqdm's own remaining time would count env steps, which go fast while the updates take nearly all
        # of a run: the "left" field counts updates instead (Trainer._epoch).
        bar = tqdm(total=cfg.env_steps, initial=self.counters["env_steps"], unit="step", disable=self.quiet,
                   desc=self._bar_title,
                   bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} env steps [{elapsed}{postfix}]")
        self._bar = bar
        with stop_signals_as_interrupts():  # SIGTERM and SIGUSR2 save and stop as Ctrl-C does
            try:
                if self.counters["epoch"] == 0:
                    self._initial_collection(collector, bar)
                while (self.counters["final_epochs"] < train.final_training_epochs
                       or self.counters["env_steps"] < cfg.env_steps):
                    self._epoch(collector, bar)
                if self.counters["epoch"] % train.checkpoint_every_epochs:  # else the last epoch saved
                    self.save_checkpoint()
            except KeyboardInterrupt as stop:
                self.save_checkpoint()
                cause = f"stopped by {stop}" if isinstance(stop, StopRequested) else "interrupted"
                self._say(f"{cause}: saved {self.run_dir / CHECKPOINT_FILE}; run the same command to resume",
                          always=True)
                raise
            finally:
                bar.close()
                if self._tensorboard is not None:
                    self._tensorboard.close()
            return self.final_evaluation()

    def _initial_collection(self, collector: Collector, bar: tqdm) -> None:
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
            self.recent_returns += collector.collect(steps, 1.0, self.rng, random_policy=True)
            self._count_steps(steps, collector, bar)

    def _epoch(self, collector: Collector, bar: tqdm) -> None:
        cfg = self.cfg
        train = cfg.training
        started = time.perf_counter()
        # Until its record is logged, a checkpoint saves this epoch as not begun (see save_checkpoint).
        self._unlogged_epoch = {key: self.counters[key] for key in ("epoch", "final_epochs")}
        self.counters["epoch"] += 1
        first = self.counters["epoch"] == 1
        if self.counters["env_steps"] < cfg.env_steps:
            steps = min(train.env_steps_per_epoch, cfg.env_steps - self.counters["env_steps"])
            self.recent_returns += collector.collect(steps, train.epsilon, self.rng)
            self._count_steps(steps, collector, bar)
        else:
            self.counters["final_epochs"] += 1
        wm_updates = train.first_epoch_world_model_updates if first else train.world_model_updates
        ac_updates = train.first_epoch_actor_critic_updates if first else train.actor_critic_updates
        logs = {}
        started_updates = time.perf_counter()
        for part in self.wm_parts:  # separate updates: diffusion, then reward/end (Algorithm 1)
            logs.update(self._updates(functools.partial(self.train_world_model, part), wm_updates,
                                      label=f"epoch {self.counters['epoch']}: {part}",
                                      announce_rate=part == self.wm_parts[0]))
        world_model_done = time.perf_counter()
        self._rates["world_model"] = wm_updates / max(world_model_done - started_updates, 1e-9)
        logs.update(self._updates(self.train_actor_critic, ac_updates,
                                  label=f"epoch {self.counters['epoch']}: actor-critic"))
        self._rates["actor_critic"] = ac_updates / max(time.perf_counter() - world_model_done, 1e-9)
        if train.eval_every_epochs and self.counters["epoch"] % train.eval_every_epochs == 0:
            returns = evaluate(self.agent, cfg, train.periodic_eval_episodes,
                               seed=PERIODIC_EVAL_SEED + self.counters["epoch"])
            logs["eval_return"] = float(np.mean(returns))
        self.recent_returns = self.recent_returns[-RECENT_RETURNS_KEPT:]
        if self.recent_returns:
            logs["train_return"] = float(np.mean(self.recent_returns))
        logs["epoch_seconds"] = time.perf_counter() - started
        self._log({**self.counters, **logs})
        postfix = {k: f"{logs[k]:.3g}" for k in ("train_return", "loss", "return_mean") if k in logs}
        postfix["left"] = _hours_text(hours_left(cfg, self.counters, self._rates["world_model"],
                                                 self._rates["actor_critic"]))
        bar.set_postfix(postfix)
        if self.counters["epoch"] % train.checkpoint_every_epochs == 0:
            self.save_checkpoint()

    def _updates(self, update: Callable[[], Logs], count: int, chunk: int = LOG_CHUNK, label: str = "",
                 announce_rate: bool = False) -> dict[str, float]:
        """Run ``count`` updates; return their mean logs.

        The updates queue work on the device without waiting for it. Their logs are read once per ``chunk``
        updates (one transfer) and checked, so a diverged update stops the run within a chunk, before the
        next checkpoint is written. ``label`` shows on the progress bar with the updates done, chunk by chunk
        (a first epoch is 10,000 of them). With ``announce_rate``, the first chunk timed before any epoch of
        this process has ended gives the time-left message (:meth:`_say_time_left`).
        """
        sums: dict[str, float] = {}
        for start in range(0, count, chunk):
            size = min(chunk, count - start)
            began = time.perf_counter()
            logs = mean_logs([update() for _ in range(size)])  # reading the logs waits for the device
            if label and self._bar is not None:
                self._bar.set_description(f"{self._bar_title} | {label} {start + size}/{count}")
            if announce_rate and start == 0 and not self._rates:
                # One part of the world-model update was timed; an update is all of its parts.
                self._say_time_left(size / max(time.perf_counter() - began, 1e-9) / len(self.wm_parts))
            if diverged := non_finite(logs):
                raise FloatingPointError(f"epoch {self.counters['epoch']}: non-finite {', '.join(diverged)} "
                                         f"(logs: {logs}); the last good checkpoint in {self.run_dir} "
                                         "is kept")
            for key, value in logs.items():
                sums[key] = sums.get(key, 0.0) + value * size
        return {key: value / count for key, value in sums.items()}

    def _say_time_left(self, rate: float) -> None:
        """How long the rest of the run will take here, from a first measured world-model update ``rate``."""
        hours = hours_left(self.cfg, self.counters, rate, None)
        message = (f"{rate:.3g} world-model updates/s on {self.device}: the rest of this run needs at least "
                   f"{_hours_text(hours)} (its world-model updates alone)")
        if self.device.type == "cpu" and hours > 24:
            message += ("; a CPU is days away from a paper-scale run: the smoke, toy and cpu presets are "
                        "made for a CPU, and a GPU runs this one (README)")
        self._say(message, always=self.device.type == "cpu" and hours > 24)

    def _count_steps(self, steps: int, collector: Collector, bar: tqdm) -> None:
        self.counters["env_steps"] += steps
        self.counters["collector_resets"] = collector.resets
        bar.update(steps)

    def train_world_model(self, part: str = "all") -> Logs:
        """One world-model update of ``part`` on a recency-weighted batch of replay windows (a diffusion
        update's just hold its context and targets: ``sample_training_batch``)."""
        batch = sample_training_batch(self.replay, self.cfg.world_model, self.rng,
                                      self.cfg.replay.sample_weights, part)
        optimizer, scheduler = self.wm_optimizers[part]
        logs = self.agent.world_model.training_step(batch.to_torch(self.device), optimizer, scheduler,
                                                    check_finite=False, part=part)
        self.counters["reward_end_updates" if part == "reward_end" else "world_model_updates"] += 1
        if part == "reward_end":  # the epoch's "loss" stays the diffusion update's, as in a joint run's logs
            logs.pop("loss")
        return logs

    def train_actor_critic(self) -> Logs:
        """One actor-critic update on rollouts imagined from recency-weighted real contexts."""
        ac_cfg = self.cfg.actor_critic
        world_model = self.agent.world_model

        def contexts(count: int) -> tuple[Tensor, Tensor]:
            return sample_contexts(self.replay, count, world_model.context_length, self.rng,
                                   self.cfg.replay.sample_weights, self.device)

        logs = actor_critic_training_step(world_model, self.agent.actor_critic, contexts, ac_cfg,
                                          self.ac_optimizer, self.ac_scheduler, check_finite=False)
        self.counters["actor_critic_updates"] += 1
        return logs

    def final_evaluation(self) -> dict:
        """Play ``eval_episodes`` full games and write ``final_scores.json`` (what ``report`` reads)."""
        cfg = self.cfg
        returns = evaluate(self.agent, cfg, cfg.eval_episodes, seed=FINAL_EVAL_SEED + cfg.seed,
                           progress=not self.quiet)
        scores = {"method": METHOD_LABELS[cfg.method], "game": cfg.env.game_name, "seed": cfg.seed,
                  "episode_returns": returns, "env_steps": self.counters["env_steps"], "preset": cfg.preset,
                  "jedi_core": jedi_core.__version__, "environment": self.environment}
        atomic_write_text(self.run_dir / FINAL_SCORES_FILE, json.dumps(scores, indent=1))
        self._say(f"final evaluation over {len(returns)} episodes: mean return {np.mean(returns):.2f}")
        return scores

    # -- checkpoints ----------------------------------------------------------------------------

    def save_checkpoint(self) -> Path:
        """Replay first (its own atomic index), then everything else in one atomically written file."""
        # An epoch cut short (Ctrl-C, a stop signal) is saved as not yet begun, so the resumed run trains it
        # again and logs it once; its env steps and updates so far are kept.
        counters = {**self.counters, **(self._unlogged_epoch or {})}
        if self._collector is not None:  # live: a stop in mid-collection has reset the env since the count
            counters["collector_resets"] = self._collector.resets
        state = {"config": to_dict(self.cfg),
                 "counters": counters,
                 "agent": self.agent.state_dict(),
                 "wm_optimizers": {part: (optimizer.state_dict(), scheduler.state_dict())
                                   for part, (optimizer, scheduler) in self.wm_optimizers.items()},
                 "ac_optimizer": self.ac_optimizer.state_dict(),
                 "ac_scheduler": self.ac_scheduler.state_dict(),
                 "numpy_rng": self.rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                 "recent_returns": self.recent_returns}
        if torch.cuda.is_available():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        path = write_checkpoint(self.run_dir, self.replay, state, keep_previous=not self._newest_damaged)
        self._newest_damaged = False
        return path

    def load_checkpoint(self) -> None:
        """Restore everything :meth:`save_checkpoint` wrote; refuse a checkpoint of other settings."""
        state, path, why = read_run_checkpoint(self.run_dir, self.device)
        self._newest_damaged = why is not None  # the next save replaces it, and keeps the previous one
        if why:
            self._say(f"{why}: resuming from {path.name} instead (epoch {state['counters']['epoch']})",
                      always=True)
        check_resumable(path, state["config"], self.cfg)
        self.agent.load_state_dict(state["agent"])
        for part, (optimizer, scheduler) in self.wm_optimizers.items():
            optimizer_state, scheduler_state = state["wm_optimizers"][part]
            optimizer.load_state_dict(optimizer_state)
            scheduler.load_state_dict(scheduler_state)
        for name in ("ac_optimizer", "ac_scheduler"):
            getattr(self, name).load_state_dict(state[name])
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
        # Epochs logged after this checkpoint (a kill) will be trained and logged again; a torn line goes.
        if dropped := truncate_metrics(self.run_dir, self.counters["epoch"]):
            self._say(f"{METRICS_FILE}: dropped {dropped} line(s) past the checkpoint's epoch "
                      f"{self.counters['epoch']}; those epochs run again")

    # -- output ---------------------------------------------------------------------------------

    def _log(self, record: dict) -> None:
        append_metrics(self.run_dir, record)
        self._unlogged_epoch = None
        if self._tensorboard is not None:
            self._tensorboard.write(record)

    def _say(self, message: str, always: bool = False) -> None:
        """Print ``message`` above the progress bar, unless quiet (``always``: a stop's message, printed even
        then, on stderr, so the log of a scheduled run says what happened)."""
        if always and self.quiet:
            print(message, file=sys.stderr)
        elif not self.quiet:
            tqdm.write(message)


def _hours_text(hours: float) -> str:
    """``"3 min"``, ``"2.5 h"`` or ``"3.1 days"``."""
    if hours < 1:
        return f"{hours * 60:.0f} min" if hours * 60 >= 1 else "<1 min"
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"
