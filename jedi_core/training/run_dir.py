"""A run's folder: its name and the files in it (no torch here, so readers such as ``report`` stay light).

A run lives in one folder::

    RUN_DIR/config.json         the resolved config
    RUN_DIR/checkpoint.pt       models, optimisers, schedules, counters, RNG states (atomic)
    RUN_DIR/replay/             every real transition (atomic, incremental)
    RUN_DIR/metrics.jsonl       one line per epoch
    RUN_DIR/final_scores.json   the final evaluation, read by ``python -m jedi_core report``
"""

from __future__ import annotations

from pathlib import Path

from jedi_core.config import Config

CHECKPOINT_FILE = "checkpoint.pt"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
REPLAY_DIR = "replay"
FINAL_SCORES_FILE = "final_scores.json"


def default_run_dir(cfg: Config) -> Path:
    """``runs/<method>_<preset>_<game>_seed<seed>``."""
    return Path("runs") / f"{cfg.method}_{cfg.preset}_{cfg.env.game_name}_seed{cfg.seed}"
