"""``python -m jedi_core sweep``: many ``train`` runs (games x methods x seeds), on this machine or on SLURM.

* :mod:`~jedi_core.sweep.runs`: the options, the run list and where each run stands (no process, no torch);
* :mod:`~jedi_core.sweep.local`: the local backend, a pool of ``train`` processes;
* :mod:`~jedi_core.sweep.sbatch`: the print backend, the commands and one sbatch job-array script;
* :mod:`~jedi_core.sweep.slurm`: the SLURM backend through submitit (the ``slurm`` extra), loaded by
  :func:`slurm_backend` only when asked for;
* :mod:`~jedi_core.sweep.backends`: each backend as the command line runs it.

Every run is the idempotent ``train`` command, so a sweep can be stopped, rerun and resubmitted freely: a
finished run is skipped, a partial one resumes. ``docs/sweeps.md`` has the details.
"""

from __future__ import annotations

from types import ModuleType

from jedi_core.sweep.runs import (
    LOG_FILE,
    METHODS,
    PIXEL_PRESETS,
    TOY_GAME,
    Run,
    describe_runs,
    parse_games,
    parse_methods,
    parse_seeds,
    plan_runs,
    run_state,
)

__all__ = ["LOG_FILE", "METHODS", "PIXEL_PRESETS", "TOY_GAME", "Run", "describe_runs", "parse_games",
           "parse_methods", "parse_seeds", "plan_runs", "run_state", "slurm_backend"]

#: ``python -m jedi_core sweep --help``'s examples.
EPILOG = """examples:
  python -m jedi_core sweep --games all --seeds 0-4 --methods jedi,diamond --dry-run   # the 260 runs
  python -m jedi_core sweep --games Pong,Breakout --seeds 0-4 --gpus 0,1,2,3           # 4 GPUs here
  python -m jedi_core sweep --games Pong,Breakout --seeds 0-1 --preset smoke --jobs 2  # a CPU, minutes
  python -m jedi_core sweep --games all --seeds 0-4 --methods jedi,diamond --backend slurm \\
      --partition gpu --time 1440 --max-parallel 64                                   # a SLURM job array
  python -m jedi_core sweep --games all --seeds 0-4 --backend print > commands.txt    # + runs/sweep.sbatch

The same command again skips finished runs and resumes stopped ones. The run folders are train's
(RUNS_DIR/<method>_<preset>_<game>_seed<seed>), so `python -m jedi_core report RUNS_DIR` reads the sweep.
"""

MISSING_SUBMITIT = ("--backend slurm needs submitit, an optional extra: pip install -c constraints.txt -e "
                    "\".[slurm]\" (or pip install \"jedi-core[slurm]\"); --backend print needs nothing")


def slurm_backend() -> ModuleType:
    """:mod:`jedi_core.sweep.slurm`, or a RuntimeError that names the extra when submitit is missing."""
    try:
        from jedi_core.sweep import slurm
    except ModuleNotFoundError as error:
        if error.name != "submitit":
            raise
        raise RuntimeError(MISSING_SUBMITIT) from None
    return slurm
