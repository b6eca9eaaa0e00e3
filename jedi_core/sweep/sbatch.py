"""The print backend: a sweep as ``train`` commands and one sbatch job-array script, for clusters driven by
hand. Task N of the array runs command N; nothing here needs SLURM or submitit.
"""

from __future__ import annotations

import shlex
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from jedi_core.sweep.runs import Run

#: Seconds of warning SLURM gives before the time limit (SIGUSR2), for ``train`` to save its checkpoint.
SIGNAL_DELAY_S = 120
#: ``train``'s exit status after SIGUSR2: saved and stopped, so the task is requeued to resume.
STOPPED_BY_USR2 = 128 + int(getattr(signal, "SIGUSR2", 12))


@dataclass(frozen=True)
class SlurmOptions:
    """What each run asks SLURM for (both SLURM backends)."""

    time_min: int = 24 * 60
    partition: str | None = None
    max_parallel: int | None = None  # array tasks running at once (default: all)
    gpus_per_run: int = 1
    cpus_per_run: int | None = None  # default: the cluster's
    mem_gb: float | None = None  # default: the cluster's
    job_name: str = "jedi-sweep"

    def __post_init__(self) -> None:
        lowest = {"--time": (self.time_min, 1), "--max-parallel": (self.max_parallel, 1),
                  "--gpus-per-run": (self.gpus_per_run, 0), "--cpus-per-run": (self.cpus_per_run, 1),
                  "--mem": (self.mem_gb, 1e-3)}
        for name, (value, low) in lowest.items():
            if value is not None and value < low:
                raise ValueError(f"{name} must be at least {low:g}, got {value}")


def sbatch_script(runs: Sequence[Run], options: SlurmOptions, logs_dir: Path, workdir: Path) -> str:
    """A bash script for ``sbatch``: one array task per run, ``options.max_parallel`` at a time.

    The task forwards SLURM's stop signals to ``train`` and waits while it saves. ``--signal=B:USR2@120``
    (``B:``: the batch shell, which runs ``train`` itself, not in a job step) warns it 120 s before the time
    limit; ``train`` then exits with 140, and the task requeues itself to resume. A preemption's SIGTERM saves
    too, and SLURM requeues the task itself (``--requeue``).
    """
    if not runs:
        raise ValueError("no run to write a script for: every run of the sweep has finished")
    parallel = min(options.max_parallel or len(runs), len(runs))
    flags = [f"--job-name={options.job_name}", f"--array=0-{len(runs) - 1}%{parallel}",
             f"--time={options.time_min}", f"--signal=B:USR2@{SIGNAL_DELAY_S}", "--requeue",
             "--open-mode=append", f"--output={logs_dir / '%A_%a.out'}"]
    if options.partition:
        flags.append(f"--partition={options.partition}")
    if options.gpus_per_run:
        flags.append(f"--gpus-per-node={options.gpus_per_run}")
    if options.cpus_per_run:
        flags.append(f"--cpus-per-task={options.cpus_per_run}")
    if options.mem_gb:
        flags.append(f"--mem={options.mem_gb:g}G")
    cases = [f"  {index}) LOG={shlex.quote(str(run.log_path))}; COMMAND=({run.shell_command}) ;;"
             for index, run in enumerate(runs)]
    return "\n".join([
        "#!/bin/bash",
        f"# {len(runs)} train runs of a jedi_core sweep, one array task each: sbatch this file.",
        "# Each run resumes from its run folder, so a requeued or resubmitted task goes on where it stopped.",
        *(f"#SBATCH {flag}" for flag in flags),
        "",
        f"cd {shlex.quote(str(workdir))} || exit 1",
        'case "$SLURM_ARRAY_TASK_ID" in',
        *cases,
        '  *) echo "no run for array task $SLURM_ARRAY_TASK_ID" >&2; exit 2 ;;',
        "esac",
        'mkdir -p "$(dirname "$LOG")"',
        "# train saves a checkpoint and exits on SIGUSR2 (the time limit is near) and SIGTERM (preemption).",
        'trap \'kill -USR2 "$child" 2>/dev/null\' USR2',
        'trap \'kill -TERM "$child" 2>/dev/null\' TERM',
        '"${COMMAND[@]}" >>"$LOG" 2>&1 &',
        "child=$!",
        'wait "$child"',
        "status=$?",
        'while kill -0 "$child" 2>/dev/null; do  # a trapped signal ended the wait: train is still saving',
        '  wait "$child"',
        "  status=$?",
        "done",
        f'if [ "$status" -eq {STOPPED_BY_USR2} ]; then  # stopped for the time limit, saved: go on later',
        '  scontrol requeue "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"',
        "fi",
        'exit "$status"',
        ""])
