"""Project the wall time of a whole run from the epochs a (partial) run folder has logged.

    python benchmarks/project_run_hours.py RUN_DIR

Reads ``config.json`` and ``metrics.jsonl``; the first epoch (with its long world-model warm-up) and the
epochs that ran a periodic evaluation are timed separately, then scaled to the preset's full schedule.
Run it on a run that was stopped early (``timeout -s INT 600 python -m jedi_core train ...`` saves a
checkpoint on the interrupt, so the run can later be resumed).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from jedi_core.config import Config
from jedi_core.configlib import from_dict
from jedi_core.training.run_dir import CONFIG_FILE, read_metrics
from jedi_core.training.schedule import schedule_epochs


def project(run_dir: Path) -> dict:
    cfg = from_dict(json.loads((run_dir / CONFIG_FILE).read_text()), Config)
    records = read_metrics(run_dir)
    if len(records) < 3:
        raise SystemExit(f"{run_dir} has {len(records)} logged epochs; at least 3 are needed to project")
    train = cfg.training
    epochs = schedule_epochs(cfg)
    later = records[1:]
    plain = ([r["epoch_seconds"] for r in later if "eval_return" not in r]
             or [r["epoch_seconds"] for r in later])
    evaluated = [r["epoch_seconds"] for r in later if "eval_return" in r]
    evaluations = epochs // train.eval_every_epochs if train.eval_every_epochs else 0
    extra_per_evaluation = statistics.median(evaluated) - statistics.median(plain) if evaluated else 0.0
    seconds = (records[0]["epoch_seconds"] + (epochs - 1) * statistics.median(plain)
               + evaluations * max(extra_per_evaluation, 0.0))
    return {"preset": cfg.preset, "method": cfg.method, "epochs_logged": len(records), "epochs_total": epochs,
            "first_epoch_s": records[0]["epoch_seconds"], "median_epoch_s": statistics.median(plain),
            "projected_hours": seconds / 3600,
            "note": "excludes the initial random collection and the final evaluation"}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    print(json.dumps(project(Path(sys.argv[1])), indent=1))
