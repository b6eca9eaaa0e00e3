"""The three ways to run a planned sweep, as the command line offers them: each prints what it did and
returns the exit status.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from jedi_core.sweep.local import LocalPool, parse_gpus, worker_envs
from jedi_core.sweep.runs import Run, run_state, shown_path
from jedi_core.sweep.sbatch import SlurmOptions, sbatch_script

BACKENDS = ("local", "slurm", "print")
#: The options that only some backends read, and those backends.
BACKEND_OPTIONS = {"--gpus": ("local",), "--jobs": ("local",), "--partition": ("slurm", "print"),
                   "--time": ("slurm", "print"), "--max-parallel": ("slurm", "print"),
                   "--gpus-per-run": ("slurm", "print"), "--cpus-per-run": ("slurm", "print"),
                   "--mem": ("slurm", "print"), "--script": ("print",)}


def check_options(backend: str, given: dict[str, object]) -> None:
    """Refuse an option the backend would ignore (``given``: option -> value, None when not given)."""
    for option, value in given.items():
        if value is not None and backend not in BACKEND_OPTIONS[option]:
            hint = " (SLURM picks the GPUs: ask for --gpus-per-run)" if option == "--gpus" else ""
            raise ValueError(f"{option} is for --backend {' or '.join(BACKEND_OPTIONS[option])}, not "
                             f"{backend}{hint}")
    if given.get("--gpus") is not None and given.get("--jobs") is not None:
        raise ValueError("give --gpus (one run per GPU at a time) or --jobs (runs at a time), not both")
    if given.get("--jobs") is not None and given["--jobs"] < 1:
        raise ValueError(f"--jobs must be at least 1, got {given['--jobs']}")
    if given.get("--gpus") is not None:
        parse_gpus(given["--gpus"])


def report_hint(runs_dir: Path) -> str:
    return f"then: python -m jedi_core report {shown_path(runs_dir)}"


def unfinished(runs: Sequence[Run]) -> list[Run]:
    """The runs still to train: the partial ones first, then the new ones, each in plan order. A finished run
    (its final_scores.json exists) is skipped; a stopped sweep finishes the runs it started (their replay
    and checkpoint are work already paid for) before it starts others."""
    states = {run.run_dir: run_state(run) for run in runs}
    return sorted((run for run in runs if states[run.run_dir] != "done"),
                  key=lambda run: states[run.run_dir] != "partial")


def run_local(runs: Sequence[Run], runs_dir: Path, gpus: str | None = None, jobs: int | None = None) -> int:
    """Train the unfinished runs here, ``len(gpus)`` or ``jobs`` at a time (see :class:`LocalPool`)."""
    todo = unfinished(runs)
    workers = worker_envs(parse_gpus(gpus) if gpus is not None else None, jobs or 1)
    if not todo:
        print(f"all {len(runs)} runs have finished; {report_hint(runs_dir)}")
        return 0
    print(f"{len(todo)} of {len(runs)} runs to train, {len(workers)} at a time; each one's output goes to "
          f"RUN_DIR/sweep.log, RUN_DIR in {shown_path(runs_dir)}")
    status = LocalPool(todo, workers, skipped=len(runs) - len(todo)).run()
    if status == 0:
        print(f"all {len(runs)} runs have finished; {report_hint(runs_dir)}")
    return status


def run_print(runs: Sequence[Run], runs_dir: Path, options: SlurmOptions, script: str | None = None) -> int:
    """Print the unfinished runs' ``train`` commands, one a line, and write the sbatch script that runs them
    (what it says goes to stderr, so the commands can be piped)."""
    todo = unfinished(runs)
    if not todo:
        print(f"all {len(runs)} runs have finished; {report_hint(runs_dir)}", file=sys.stderr)
        return 0
    for run in todo:
        print(run.shell_command)
    path = Path(script) if script is not None else runs_dir / "sweep.sbatch"
    logs = (runs_dir / "slurm_logs").absolute()
    logs.mkdir(parents=True, exist_ok=True)  # SLURM does not make the --output folder
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(sbatch_script(todo, options, logs, Path.cwd()))
    print(f"wrote {path}: `sbatch {path}` runs the {len(todo)} commands as one job array, each run's output "
          f"in RUN_DIR/sweep.log ({len(runs) - len(todo)} finished runs left out); {report_hint(runs_dir)}",
          file=sys.stderr)
    return 0


def run_slurm(runs: Sequence[Run], runs_dir: Path, options: SlurmOptions) -> int:
    """Submit the unfinished runs as one submitit job array and say where everything goes."""
    from jedi_core.sweep import slurm_backend

    slurm = slurm_backend()
    todo = unfinished(runs)
    if not todo:
        print(f"all {len(runs)} runs have finished; {report_hint(runs_dir)}")
        return 0
    folder = (runs_dir / "submitit").absolute()
    jobs = slurm.submit(slurm.make_executor(folder, options), todo)
    at_once = min(options.max_parallel or len(todo), len(todo))
    print(f"submitted {len(jobs)} task(s) as job {jobs[0].job_id.split('_')[0]}, {at_once} at a time "
          f"({len(runs) - len(todo)} finished runs left out):")
    for job, run in zip(jobs, todo, strict=True):
        print(f"  {job.job_id:<14}{shown_path(run.run_dir)}")
    print(f"each run's output: RUN_DIR/sweep.log; submitit's logs: {shown_path(folder)}/<job id>/; "
          f"a task that reaches --time saves and is requeued. {report_hint(runs_dir)}")
    return 0
