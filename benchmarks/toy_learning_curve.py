"""Train JEDI on the toy Catch game and record its learning curve.

    python benchmarks/toy_learning_curve.py --seed 0
    python benchmarks/toy_learning_curve.py --redraw     # the figure again from the JSON, no training

Runs ``python -m jedi_core train --preset toy`` in ``--run-dir`` (resumable: run it again to continue), then
writes the curve to ``assets/toy_learning_curve.png`` and a JSON summary (env steps and wall time to reach
90% of the optimal return, the final 100-episode score, the machine) beside it.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

import jedi_core
from jedi_core.analysis.viz import plot_learning_curve
from jedi_core.envs.toy import CatchEnv, random_policy_return
from jedi_core.presets import make_config
from jedi_core.runtime import atomic_write_text
from jedi_core.training.loop import Trainer
from jedi_core.training.run_dir import read_metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run-dir", default=None, help="default: runs/toy_learning_curve_seed<seed>")
    parser.add_argument("--out", default="assets")
    parser.add_argument("--redraw", action="store_true", help="the figure again from OUT's JSON; no training")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. env_steps=5000")
    args = parser.parse_args()
    out = Path(args.out)
    if args.redraw:
        summary = json.loads((out / "toy_learning_curve.json").read_text())
        cfg = make_config("toy", [f"seed={summary['seed']}", *summary["overrides"]])
        draw(summary, summary["curve"], cfg, out)
        return

    cfg = make_config("toy", [f"seed={args.seed}", *args.overrides])
    run_dir = Path(args.run_dir or f"runs/toy_learning_curve_seed{args.seed}")
    started = time.perf_counter()
    scores = Trainer(cfg, run_dir).run()
    records = read_metrics(run_dir)
    target = 0.9 * CatchEnv.optimal_return
    reached = [r for r in records if r.get("eval_return", -np.inf) >= target]
    summary = {
        "preset": "toy", "seed": args.seed, "overrides": args.overrides,
        "final_mean_return": float(np.mean(scores["episode_returns"])),
        "final_episodes": len(scores["episode_returns"]), "env_steps": scores["env_steps"],
        "first_env_steps_at_90_percent": reached[0]["env_steps"] if reached else None,
        "training_seconds": sum(r["epoch_seconds"] for r in records),
        "wall_seconds_this_invocation": time.perf_counter() - started,
        "curve": [{k: r[k] for k in ("env_steps", "eval_return", "train_return") if k in r} for r in records],
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "device": str(cfg.device), "jedi_core": jedi_core.__version__},
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "toy_learning_curve.json", json.dumps(summary, indent=1))
    draw(summary, records, cfg, out)
    print(json.dumps({k: v for k, v in summary.items() if k != "curve"}, indent=1))


def draw(summary: dict, records: list[dict], cfg, out: Path) -> None:
    title = (f"JEDI on Catch (toy preset, seed {summary['seed']}): {summary['final_mean_return']:.2f} over "
             f"{summary['final_episodes']} episodes after {summary['env_steps']:,} steps")
    figure = plot_learning_curve(records, title, optimal=CatchEnv.optimal_return,
                                 random=random_policy_return(),
                                 random_steps=cfg.training.initial_random_steps,
                                 eval_episodes=cfg.training.periodic_eval_episodes)
    figure.savefig(out / "toy_learning_curve.png", dpi=120)


if __name__ == "__main__":
    main()
