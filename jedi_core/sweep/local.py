"""The local backend: a pool of ``train`` processes on this machine, each with its own GPU or CPU share.

A stop signal (Ctrl-C, SIGTERM, SIGUSR2) stops the pool: no new run starts, and every running ``train`` gets
SIGTERM, saves a checkpoint and exits; the same sweep command resumes them later. A second signal kills them
at once (each keeps its last checkpoint, which is written atomically).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from datetime import datetime
from typing import TextIO

from jedi_core.sweep.runs import Run, shown_path

#: The signals that stop a sweep, as they stop ``train``.
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGUSR2")
                     if hasattr(signal, name))


def parse_gpus(text: str) -> list[str]:
    """``--gpus 0,1,2,3``: the ``CUDA_VISIBLE_DEVICES`` value of each worker (an index or a GPU's UUID)."""
    gpus = [gpu.strip() for gpu in text.split(",") if gpu.strip()]
    if not gpus:
        raise ValueError(f"--gpus {text!r} lists no GPU; give their indices, e.g. --gpus 0,1,2,3")
    return gpus


def worker_envs(gpus: Sequence[str] | None = None, jobs: int = 1) -> list[dict[str, str]]:
    """The environment changes of each worker: one per GPU (``CUDA_VISIBLE_DEVICES``; a GPU listed twice
    takes two runs), else ``jobs`` CPU workers.

    Each worker gets its share of the CPU cores as ``OMP_NUM_THREADS`` (unless it is set already): torch
    otherwise starts a thread per core in every run, and the runs slow each other down.
    """
    if jobs < 1:
        raise ValueError(f"--jobs must be at least 1, got {jobs}")
    workers = [{"CUDA_VISIBLE_DEVICES": gpu} for gpu in gpus] if gpus else [{} for _ in range(jobs)]
    if "OMP_NUM_THREADS" not in os.environ:
        threads = str(max(1, (os.cpu_count() or 1) // len(workers)))
        workers = [{**worker, "OMP_NUM_THREADS": threads} for worker in workers]
    return workers


def start_run(run: Run, env_changes: dict[str, str] | None = None) -> subprocess.Popen:
    """Start ``run``'s ``train`` command, its output appended to ``RUN_DIR/sweep.log``.

    In a session of its own: a Ctrl-C at the terminal reaches the sweep alone, which then sends each run one
    SIGTERM (two signals could cut a run's save short).
    """
    run.run_dir.mkdir(parents=True, exist_ok=True)
    changes = env_changes or {}
    with open(run.log_path, "a") as log:
        header = [datetime.now().isoformat(timespec="seconds"), *(f"{k}={v}" for k, v in changes.items())]
        log.write(f"\n=== {' '.join(header)} {run.shell_command}\n")
        log.flush()
        return subprocess.Popen(run.command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1", **changes},  # the log keeps up
                                start_new_session=True)


class LocalPool:
    """Runs a sweep's runs on this machine, a fixed number at a time, and reports on one progress line."""

    def __init__(self, runs: Sequence[Run], workers: Sequence[dict[str, str]], skipped: int = 0,
                 out: TextIO | None = None, poll_s: float = 0.5):
        self.queue = deque(runs)
        self.free = list(range(len(workers)))
        self.workers = list(workers)
        self.skipped = skipped
        self.out = out or sys.stdout
        self.poll_s = poll_s
        self.running: dict[int, tuple[Run, subprocess.Popen]] = {}  # by worker
        self.results: dict[str, list[tuple[Run, int]]] = {"done": [], "failed": [], "stopped": []}
        self.signals: list[int] = []  # the stop signals received, appended by the handler
        self._handled = 0  # how many of them the loop has acted on
        self._last_line = ""

    def run(self) -> int:
        """Run every run; the exit status: 0, 1 if a run failed, 128 + the signal's number if stopped."""
        previous = self._catch_stop_signals()
        try:
            while self.running or (self.queue and not self.signals):
                self._handle_signals()
                while self.queue and self.free and not self.signals:
                    worker = self.free.pop(0)
                    run = self.queue.popleft()
                    self.running[worker] = (run, start_run(run, self.workers[worker]))
                self._reap()
                self._show_progress()
                if self.running:
                    time.sleep(self.poll_s)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        self._show_progress(final=True)
        return self._summary()

    # -- the loop -------------------------------------------------------------------------------

    def _catch_stop_signals(self) -> dict[int, object]:
        if threading.current_thread() is not threading.main_thread():
            return {}  # Python installs handlers only there; a caller on another thread stops the runs itself
        return {signum: signal.signal(signum, lambda signum, frame: self.signals.append(signum))
                for signum in STOP_SIGNALS}

    def _handle_signals(self) -> None:
        if self._handled == len(self.signals):
            return
        first = self._handled == 0
        self._handled = len(self.signals)
        name = signal.Signals(self.signals[-1]).name
        if first:
            self._say(f"{name}: stopping; {len(self.running)} running run(s) save a checkpoint and exit "
                      f"({len(self.queue)} not started); send it again to kill them at once")
            self._send(signal.SIGTERM)
        else:
            self._say(f"{name} again: killing {len(self.running)} run(s); each resumes from its last "
                      "checkpoint")
            self._send(signal.SIGKILL)

    def _send(self, signum: int) -> None:
        for _, process in self.running.values():
            if process.poll() is None:
                process.send_signal(signum)

    def _reap(self) -> None:
        for worker, (run, process) in list(self.running.items()):
            status = process.poll()
            if status is None:
                continue
            del self.running[worker]
            self.free.append(worker)
            outcome = "done" if status == 0 else "stopped" if self.signals else "failed"
            self.results[outcome].append((run, status))
            if outcome == "failed":
                self._say(f"failed: {shown_path(run.run_dir)} (exit status {status}); see "
                          f"{shown_path(run.log_path)}")

    # -- what it says ---------------------------------------------------------------------------

    def _progress(self) -> str:
        counts = {name: len(found) for name, found in self.results.items()}
        stopped = f", {counts['stopped']} stopped" if counts["stopped"] else ""
        return (f"sweep: {counts['done']} done, {len(self.running)} running, {counts['failed']} failed, "
                f"{len(self.queue)} queued, {self.skipped} skipped{stopped}")

    def _show_progress(self, final: bool = False) -> None:
        line = self._progress()
        if self.out.isatty():  # one line, rewritten in place
            self.out.write(f"\r{line}\033[K" + ("\n" if final else ""))
        elif line != self._last_line:  # a log file: a line per change
            self.out.write(line + "\n")
        self.out.flush()
        self._last_line = line

    def _say(self, message: str) -> None:
        self.out.write(("\n" if self.out.isatty() else "") + message + "\n")
        self.out.flush()

    def _summary(self) -> int:
        failed, stopped = self.results["failed"], self.results["stopped"]
        for run, status in failed:
            self.out.write(f"failed (exit status {status}): {shown_path(run.log_path)}\n")
        if stopped or self.queue:
            self.out.write(f"{len(stopped)} run(s) stopped and {len(self.queue)} not started: run the same "
                           "sweep command to resume them\n")
        if self.signals:
            return 128 + self.signals[0]
        return 1 if failed else 0
