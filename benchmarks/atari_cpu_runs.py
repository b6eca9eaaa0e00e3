"""Summarise finished Atari runs: final score with its standard error, HNS, the untrained agent's score and
the published random score beside it, whether the run learnt, and the learning curves as one figure.

    python benchmarks/atari_cpu_runs.py runs/jedi_cpu_Boxing_seed0 runs/jedi_cpu_Boxing_seed1 ...

The runs themselves are made by ``python -m jedi_core train --game GAME --preset cpu --seed S`` (resumable).
A run *learns* where its final mean beats the published random score by more than three standard errors of
that mean (``RunResult.learns``). The untrained agent (the same seed's initial weights) plays the same 100
evaluation episodes: a run records them itself (``untrained_scores.json``); for an older run they are played
here and kept in the JSON so a second call does not play them again. Writes ``--json`` and ``--figure`` and
prints the Markdown table of ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from jedi_core.agent import Agent
from jedi_core.analysis.metrics import hns, load_reference, standard_error
from jedi_core.analysis.run_results import RunResult
from jedi_core.config import Config
from jedi_core.configlib import from_dict, to_dict
from jedi_core.envs import env_num_actions
from jedi_core.presets import make_config
from jedi_core.runtime import atomic_write_text, seed_everything
from jedi_core.training.collect import evaluate
from jedi_core.training.loop import final_evaluation_seed
from jedi_core.training.run_dir import CONFIG_FILE, read_metrics

#: Config keys (or key prefixes) that say which run it is, or where and how fast it ran: never a variant.
NOT_A_VARIANT = ("seed", "device", "env.game", "performance.", "logging.")


def _flat(data: dict, prefix: str = "") -> dict[str, object]:
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def variant(cfg: Config) -> str:
    """The overrides that set a run apart from its preset (``training.world_model_updates=40``), or ``""``."""
    preset = _flat(to_dict(make_config(cfg.preset)))
    changed = [f"{key}={value}" for key, value in _flat(to_dict(cfg)).items()
               if preset.get(key) != value and not key.startswith(NOT_A_VARIANT)]
    return " ".join(sorted(changed))


def untrained_returns(cfg: Config, episodes: int) -> list[float]:
    """The returns of the run's agent before any update (its seed's initial weights), on the final
    evaluation's episodes: what training added is the difference."""
    seed_everything(cfg.seed)
    agent = Agent(cfg, env_num_actions(cfg.env))
    return evaluate(agent, cfg, episodes, seed=final_evaluation_seed(cfg.seed))


def summarise_run(run_dir: Path, untrained: dict[str, list[float]], untrained_episodes: int) -> dict:
    """One run's row: scores, standard error, HNS, verdict, training time and curve."""
    cfg = from_dict(json.loads((run_dir / CONFIG_FILE).read_text()), Config)
    run = RunResult.load(run_dir)
    game = cfg.env.game_name
    overrides = variant(cfg)
    key = f"{game}/{cfg.preset}/seed{cfg.seed}" + (f"/{overrides}" if overrides else "")
    if run.untrained_returns is not None:  # played by the run itself, before its first update
        untrained[key] = list(run.untrained_returns)
    elif key not in untrained:
        print(f"playing {untrained_episodes} episodes of {key}'s untrained agent")
        untrained[key] = untrained_returns(cfg, untrained_episodes)
    reference = load_reference()
    records = read_metrics(run_dir)
    return {
        "run_dir": str(run_dir), "game": game, "method": run.method, "preset": cfg.preset,
        "variant": overrides, "seed": cfg.seed, "env_steps": run.env_steps,
        "episodes": len(run.episode_returns),
        "mean": run.score, "standard_error": run.standard_error, "hns": hns(run.score, game),
        "random": reference.random[game], "human": reference.human[game],
        "untrained_mean": float(np.mean(untrained[key])),
        "untrained_standard_error": standard_error(untrained[key]),
        "learns": run.learns,
        "training_hours": sum(r["epoch_seconds"] for r in records) / 3600,
        "environment": json.loads(run.path.read_text()).get("environment", {}),
        "curve": [{"env_steps": r["env_steps"], "eval_return": r["eval_return"]}
                  for r in records if "eval_return" in r],
    }


def label(row: dict, short: bool = False) -> str:
    """The method, its preset and its overrides: ``JEDI (cpu, training.world_model_updates=40)``; ``short``
    keeps each override's last name (``world_model_updates=40``), for legends."""
    overrides = row.get("variant", "")
    if short:
        names_and_values = (override.partition("=") for override in overrides.split())
        overrides = " ".join(f"{name.rsplit('.', 1)[-1]}={value}" for name, _, value in names_and_values)
    return f"{row['method']} ({', '.join(filter(None, (row['preset'], overrides)))})"


def markdown_table(rows: list[dict]) -> str:
    """The table of ``benchmarks/RESULTS.md``."""
    lines = ["| game | method (preset, overrides) | seed | final mean ± s.e. (episodes) | HNS "
             "| untrained agent | published random | learns (> random + 3 s.e.) | training time |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(
            f"| {row['game']} | {label(row)} | {row['seed']} "
            f"| {row['mean']:.1f} ± {row['standard_error']:.1f} "
            f"({row['episodes']}) | {row['hns']:.3f} | {row['untrained_mean']:.1f} ± "
            f"{row['untrained_standard_error']:.1f} | {row['random']:g} | {'yes' if row['learns'] else 'no'} "
            f"| {row['training_hours']:.2f} h |")
    return "\n".join(lines)


def plot_curves(rows: list[dict]):
    """One panel per game: each run's periodic evaluations against env steps, its final mean ± s.e. at the
    end, the published random score and the untrained agent's score."""
    import matplotlib.pyplot as plt

    games = sorted({row["game"] for row in rows})
    # One colour per method, preset and overrides; one line style per seed.
    palette = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")
    colours = dict(zip(dict.fromkeys(label(row) for row in rows), palette, strict=False))
    figure, axes = plt.subplots(1, len(games), figsize=(5.2 * len(games), 6.0), squeeze=False)
    for axis, game in zip(axes[0], games, strict=True):
        game_rows = [row for row in rows if row["game"] == game]
        for index, row in enumerate(game_rows):
            colour = colours.get(label(row), "0.3")
            style = ("-", "--", ":", "-.")[row["seed"] % 4]
            steps = [point["env_steps"] for point in row["curve"]]
            values = [point["eval_return"] for point in row["curve"]]
            axis.plot(steps, values, style, color=colour, marker="o", markersize=3,
                      label=f"{label(row, short=True)} seed {row['seed']}")
            final_step = row["env_steps"] * (1.02 + 0.02 * index)  # side by side, not on top of each other
            axis.errorbar([final_step], [row["mean"]], yerr=[row["standard_error"]], color=colour, marker="s",
                          capsize=3)
        axis.axhline(game_rows[0]["random"], color="k", linestyle=":", linewidth=1, label="published random")
        untrained = float(np.mean([row["untrained_mean"] for row in game_rows]))
        axis.axhline(untrained, color="0.5", linestyle="--", linewidth=1, label="untrained agent")
        axis.set_title(game)
        axis.set_xlabel("env steps (squares: final 100-episode mean ± s.e.)")
        axis.set_ylabel("return")
        axis.set_xlim(left=0)
        # Below the panel, so that no curve is hidden.
        axis.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=1)
    figure.tight_layout()
    return figure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", type=Path)
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/atari_cpu_runs.json"))
    parser.add_argument("--figure", type=Path, default=Path("assets/atari_cpu_learning_curves.png"))
    parser.add_argument("--untrained-episodes", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for the untrained agent")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    previous = json.loads(args.json.read_text()) if args.json.is_file() else {}
    untrained: dict[str, list[float]] = previous.get("untrained_returns", {})
    rows = [summarise_run(run_dir, untrained, args.untrained_episodes) for run_dir in args.run_dirs]
    args.json.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.json, json.dumps({"runs": rows, "untrained_returns": untrained}, indent=1))
    args.figure.parent.mkdir(parents=True, exist_ok=True)
    plot_curves(rows).savefig(args.figure, dpi=120)
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
