"""The SLURM backend: one submitit job array, one task per run, each requeued until its run has finished.

Needs the ``slurm`` extra (``pip install "jedi-core[slurm]"``: submitit). A task runs its run's ``train``
command in a subprocess. When SLURM warns that the time limit is near (SIGUSR2, ``SIGNAL_DELAY_S`` ahead) or
the task is preempted, submitit calls :meth:`TrainTask.checkpoint`, which lets ``train`` save, then hands
submitit the same task to requeue: ``train`` resumes from its run folder, so the requeued task just runs the
same command again.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import submitit
from submitit.helpers import Checkpointable, DelayedSubmission

from jedi_core.sweep.local import start_run
from jedi_core.sweep.runs import Run
from jedi_core.sweep.sbatch import SIGNAL_DELAY_S, SlurmOptions

#: Requeues after a time limit before submitit gives a task up. Each one resumes the run, so only a run that
#: needs more than this many time limits is stopped (preemptions do not count).
MAX_TIMEOUTS = 100
#: How long a stopping ``train`` may take to save before it is killed; inside the signal's warning time.
SAVE_TIMEOUT_S = SIGNAL_DELAY_S - 30


class TrainTask(Checkpointable):
    """One run as a submitit task: its ``train`` command, requeued (see the module docstring) until done."""

    def __init__(self) -> None:
        self._process: subprocess.Popen | None = None

    def __call__(self, run: Run) -> str:
        self._process = start_run(run)
        status = _wait(self._process)
        self._process = None
        if status != 0:
            raise RuntimeError(f"{run.run_dir}: train exited with status {status}; see {run.log_path}")
        return str(run.run_dir)

    def checkpoint(self, run: Run) -> DelayedSubmission:
        """Stop ``train`` with SIGUSR2 (it saves a checkpoint and exits), wait for it, requeue this task."""
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGUSR2)  # a second one, if SLURM sent one too, is ignored by train
            if _wait(process, SAVE_TIMEOUT_S) is None:
                process.kill()  # the last checkpoint, written atomically, stays whole
        return DelayedSubmission(self, run)

    def __getstate__(self) -> dict:
        return {}  # a requeued task starts its own process

    def __setstate__(self, state: dict) -> None:
        self._process = None


def _wait(process: subprocess.Popen, timeout_s: float = float("inf"), poll_s: float = 0.2) -> int | None:
    """The process's exit status, or None if it still runs after ``timeout_s``.

    Polls rather than ``Popen.wait()``: submitit's signal handler runs on the main thread, in the middle of
    whatever it was doing, and calls :meth:`TrainTask.checkpoint`, which waits for the same process. Under a
    blocking ``wait()`` that second wait would block forever on the lock the first one holds.
    """
    deadline = time.monotonic() + timeout_s
    while (status := process.poll()) is None and time.monotonic() < deadline:
        time.sleep(poll_s)
    return status


def make_executor(folder: Path, options: SlurmOptions, cluster: str = "slurm") -> submitit.AutoExecutor:
    """A submitit executor asking for ``options`` per task; ``cluster="local"`` runs the tasks on this machine
    (submitit's local executor, what the tests use)."""
    try:
        executor = submitit.AutoExecutor(folder=folder / "%j", cluster=cluster,
                                         slurm_max_num_timeout=MAX_TIMEOUTS,
                                         local_max_num_timeout=MAX_TIMEOUTS)
    except RuntimeError as error:  # no srun here
        raise RuntimeError(f"--backend slurm submits from a SLURM login node, and this machine has no SLURM "
                           f"({error}); --backend print writes a script to submit elsewhere") from None
    parameters = {"name": options.job_name, "timeout_min": options.time_min,
                  "gpus_per_node": options.gpus_per_run or None, "cpus_per_task": options.cpus_per_run,
                  "mem_gb": options.mem_gb, "slurm_partition": options.partition,
                  "slurm_signal_delay_s": SIGNAL_DELAY_S, "slurm_additional_parameters": {"requeue": True}}
    if options.max_parallel:
        parameters["slurm_array_parallelism"] = options.max_parallel
    executor.update_parameters(**{key: value for key, value in parameters.items() if value is not None})
    return executor


def submit(executor: submitit.Executor, runs: Sequence[Run]) -> list[submitit.Job]:
    """Submit one task per run (a job array on SLURM); returns the jobs, in the order of ``runs``."""
    if not runs:
        return []
    return executor.map_array(TrainTask(), list(runs))
