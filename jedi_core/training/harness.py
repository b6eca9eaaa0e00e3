"""The run around Algorithm 1: what a long job needs, and the method does not.

:class:`RunHarness` locks the run folder, resumes from the checkpoint (falling back to the previous one when
the newest is damaged), turns Ctrl-C and stop signals into a save, shows the progress bar and the time left,
writes ``metrics.jsonl`` (and its TensorBoard mirror), and runs updates in chunks whose logs are read and
checked for divergence at once. :class:`~jedi_core.training.loop.Trainer` fills in the method.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from tqdm.auto import tqdm

from jedi_core.config import Config
from jedi_core.configlib import to_dict
from jedi_core.replay import ReplayBuffer
from jedi_core.runtime import (
    Logs,
    StopRequested,
    Stopwatch,
    atomic_write_text,
    mean_logs,
    non_finite,
    stop_signals_as_interrupts,
)
from jedi_core.training.checkpoint import check_resumable, read_run_checkpoint, write_checkpoint
from jedi_core.training.run_dir import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    ENVIRONMENT_FILE,
    FINAL_SCORES_FILE,
    METRICS_FILE,
    append_metrics,
    has_checkpoint,
    lock_run_dir,
    truncate_metrics,
)
from jedi_core.training.schedule import hours_left
from jedi_core.training.tensorboard import TensorBoardMirror

if TYPE_CHECKING:
    from jedi_core.training.projection import Projection

#: Updates whose logs are read (and checked for divergence) in one device-to-host transfer.
LOG_CHUNK = 200


class RunHarness:
    """Lock, resume, stop, progress, logs and checkpoints of one run folder.

    A subclass supplies the method: ``train()`` (Algorithm 1 from the current counters to the end of the
    schedule), ``final_evaluation()``, ``checkpoint_state()`` and ``restore(state)``, and the attributes
    ``counters`` and ``replay``.
    """

    counters: dict[str, int]
    replay: ReplayBuffer

    def __init__(self, cfg: Config, run_dir: str | Path, device: torch.device, environment: dict,
                 quiet: bool = False):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.device = device
        self.environment = environment
        self.quiet = quiet
        self._unlogged_epoch: dict[str, int] | None = None  # the counters before the epoch in progress
        self._epoch_watch = Stopwatch()
        self._newest_damaged = False  # resumed from checkpoint.prev.pt because checkpoint.pt is damaged
        self._timed: dict[str, tuple[int, float]] = {}  # label -> (updates, seconds) in the epoch so far
        self._rates: dict[str, float] = {}  # updates/s measured over the last epoch, for the time left
        self._bar: tqdm | None = None  # the run's progress bar, once it runs
        self._tensorboard: TensorBoardMirror | None = None  # with logging.tensorboard, once it runs
        self._bar_title = f"{cfg.method} {cfg.env.game_name}"

    # -- the method's side (a subclass) ---------------------------------------------------------

    def train(self) -> None:
        raise NotImplementedError

    def final_evaluation(self) -> dict:
        raise NotImplementedError

    def checkpoint_state(self) -> dict:
        raise NotImplementedError

    def restore(self, state: dict) -> None:
        raise NotImplementedError

    # -- a run ----------------------------------------------------------------------------------

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
        if self.cfg.logging.tensorboard:
            self._tensorboard = TensorBoardMirror(self.run_dir, next_epoch=self.counters["epoch"] + 1)
        # tqdm's own remaining time would count env steps, which go fast while the updates take nearly all
        # of a run: the "left" field counts updates instead (end_epoch).
        self._bar = tqdm(total=self.cfg.env_steps, initial=self.counters["env_steps"], unit="step",
                         disable=self.quiet, desc=self._bar_title,
                         bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} env steps [{elapsed}{postfix}]")
        with stop_signals_as_interrupts():  # SIGTERM and SIGUSR2 save and stop as Ctrl-C does
            try:
                self.train()
                if self.counters["epoch"] % self.cfg.training.checkpoint_every_epochs:  # else saved already
                    self.save_checkpoint()
            except KeyboardInterrupt as stop:
                self.save_checkpoint()
                cause = f"stopped by {stop}" if isinstance(stop, StopRequested) else "interrupted"
                self._say(f"{cause}: saved {self.run_dir / CHECKPOINT_FILE}; run the same command to resume",
                          always=True)
                raise
            finally:
                self._bar.close()
                if self._tensorboard is not None:
                    self._tensorboard.close()
            return self.final_evaluation()

    # -- epochs and updates ---------------------------------------------------------------------

    def begin_epoch(self) -> None:
        """Count a new epoch; until its record is logged, a checkpoint saves it as not begun."""
        self._unlogged_epoch = {key: self.counters[key] for key in ("epoch", "final_epochs")}
        self.counters["epoch"] += 1
        self._epoch_watch = Stopwatch()
        self._timed = {}

    def end_epoch(self, logs: dict[str, float]) -> None:
        """Log the epoch, show it and its time left on the progress bar, and save every few epochs."""
        logs["epoch_seconds"] = self._epoch_watch.seconds()
        logs["epoch_cpu_seconds"] = self._epoch_watch.cpu_seconds()
        self._log({**self.counters, **logs})
        if {"diffusion", "reward/end", "actor-critic"} <= self._timed.keys():
            world_model, diffusion_seconds = self._timed["diffusion"]
            self._rates = {"world_model": world_model / max(diffusion_seconds + self._timed["reward/end"][1],
                                                            1e-9),
                           "actor_critic": self._timed["actor-critic"][0]
                           / max(self._timed["actor-critic"][1], 1e-9)}
        if self._bar is not None:
            postfix = {k: f"{logs[k]:.3g}" for k in ("train_return", "diffusion_loss", "return_mean")
                       if k in logs}
            if self._rates:
                postfix["left"] = hours_text(hours_left(self.cfg, self.counters, self._rates["world_model"],
                                                        self._rates["actor_critic"]))
            self._bar.set_postfix(postfix)
        if self.counters["epoch"] % self.cfg.training.checkpoint_every_epochs == 0:
            self.save_checkpoint()

    def count_env_steps(self, steps: int) -> None:
        self.counters["env_steps"] += steps
        if self._bar is not None:
            self._bar.update(steps)

    def _updates(self, update: Callable[[], Logs], count: int, chunk: int = LOG_CHUNK,
                 label: str = "") -> dict[str, float]:
        """Run ``count`` updates; return their mean logs.

        The updates queue work on the device without waiting for it. Their logs are read once per ``chunk``
        updates (one transfer) and checked, so a diverged update stops the run within a chunk, before the
        next checkpoint is written. ``label`` shows on the progress bar with the updates done, chunk by chunk
        (a first epoch is 10,000 of them); the first diffusion chunk of a process gives the time left.
        """
        sums: dict[str, float] = {}
        began = time.perf_counter()
        for start in range(0, count, chunk):
            size = min(chunk, count - start)
            logs = mean_logs([update() for _ in range(size)])  # reading the logs waits for the device
            if label and self._bar is not None:
                self._bar.set_description(f"{self._bar_title} | epoch {self.counters['epoch']}: {label} "
                                          f"{start + size}/{count}")
            if diverged := non_finite(logs):
                raise FloatingPointError(f"epoch {self.counters['epoch']}: non-finite {', '.join(diverged)} "
                                         f"(logs: {logs}); the last good checkpoint in {self.run_dir} "
                                         "is kept")
            for key, value in logs.items():
                sums[key] = sums.get(key, 0.0) + value * size
        if label:
            self._timed[label] = (count, time.perf_counter() - began)
        return {key: value / count for key, value in sums.items()}

    def say_projection(self, projection: Projection) -> None:
        """Say how long the whole run will take here (printed even when quiet: a sweep's log keeps it)."""
        message = (f"projected: {hours_text(projection.hours)} for this run on {self.device} "
                   f"({hours_text(projection.update_hours)} of updates at {projection.world_model_rate:.3g} "
                   f"world-model and {projection.actor_critic_rate:.3g} actor-critic updates/s, "
                   f"{hours_text(projection.evaluation_hours)} of evaluation at "
                   f"{projection.episode_seconds:.2g} s an episode)")
        if self.device.type == "cpu" and projection.hours > 24:
            message += ("; a CPU is days away from a paper-scale run: the smoke, toy and cpu presets are "
                        "made for a CPU, and a GPU runs this one (README)")
        self._say(message, always=True)

    # -- checkpoints ----------------------------------------------------------------------------

    def save_checkpoint(self) -> Path:
        """Replay first (its own atomic index), then everything else in one atomically written file."""
        state = self.checkpoint_state()
        # An epoch cut short (Ctrl-C, a stop signal) is saved as not yet begun, so the resumed run trains it
        # again and logs it once; its env steps and updates so far are kept.
        state["counters"] = {**state["counters"], **(self._unlogged_epoch or {})}
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
        self.restore(state)
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


def hours_text(hours: float) -> str:
    """``"3 min"``, ``"2.5 h"`` or ``"3.1 days"``."""
    if hours < 1:
        return f"{hours * 60:.0f} min" if hours * 60 >= 1 else "<1 min"
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"
