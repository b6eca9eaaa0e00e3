"""Command line: ``python -m jedi_core <command>`` (also installed as ``jedi``).

Commands: ``report`` (turn finished runs into the paper's tables and a figure), ``games`` (the
Atari100k games and their action counts), ``config`` (print a preset with overrides applied).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from jedi_core import config as config_lib

EPILOG = """examples:
  python -m jedi_core report runs/                 # every finished run below runs/
  python -m jedi_core report runs/a runs/b --out my_report --baselines DIAMOND IRIS
  python -m jedi_core games
  python -m jedi_core config --preset smoke env.game=Pong seed=3
  python -m jedi_core config --preset diamond --params
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m jedi_core", description="JEDI: latent diffusion world models for Atari100k.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    report = commands.add_parser(
        "report", help="tables and a figure from finished runs, beside the published baselines",
        description="Read RUN_DIRS (each a run folder holding final_scores.json, or a folder to search), "
                    "write report.md and report.png: per-game HNS, Human-/Agent-Optimal means, Sym-HNS, "
                    "Har-HNS, mean/median/IQM/optimality gap with stratified-bootstrap 95%% CIs.")
    report.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folders or folders that contain runs")
    report.add_argument("--out", default="report", help="output folder (default: ./report)")
    report.add_argument("--baselines", nargs="*", default=["DIAMOND", "STORM", "IRIS"],
                        help="published methods to show beside yours (default: DIAMOND STORM IRIS)")
    report.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples for the CIs")
    report.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")

    commands.add_parser("games", help="list the 26 Atari100k games, their action counts and subsets")

    show = commands.add_parser("config", help="print a preset's resolved config (with KEY=VALUE overrides)")
    show.add_argument("--preset", default="atari100k", choices=list(config_lib.PRESETS))
    show.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. env.game=Pong seed=3")
    show.add_argument("--params", action="store_true", help="also build the world model and count its parameters")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "report":
            from jedi_core.report import write_report

            markdown, figure = write_report(args.run_dirs, args.out, baselines=tuple(args.baselines),
                                            reps=args.bootstrap, seed=args.seed)
            print(f"wrote {markdown}\nwrote {figure}")
        elif args.command == "games":
            _print_games()
        elif args.command == "config":
            cfg = config_lib.make_config(args.preset, args.overrides)
            print("\n".join(config_lib.describe(cfg)))
            if args.params:
                _print_parameter_counts(cfg)
    except (ValueError, FileNotFoundError) as error:
        # Bad input (unknown game, key, file, ...): say what is wrong without a traceback.
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def _print_parameter_counts(cfg: config_lib.Config) -> None:
    from jedi_core.envs import env_num_actions
    from jedi_core.world_model import build_world_model

    num_actions = env_num_actions(cfg.env)
    counts = build_world_model(cfg, num_actions).parameter_counts()
    print(f"\nworld model ({cfg.method}, {num_actions} actions) parameters:")
    for name, count in counts.items():
        print(f"  {name:<11}{count:>12,}")


def _print_games() -> None:
    from jedi_core.envs.games import ATARI100K_GAMES
    from jedi_core.metrics import load_reference

    reference = load_reference()
    print(f"{'game':<16}{'actions':>8}  {'subset':<14}{'random':>10}{'human':>10}")
    for game, actions in ATARI100K_GAMES.items():
        subset = reference.subset[game].replace("_", "-")
        print(f"{game:<16}{actions:>8}  {subset:<14}{reference.random[game]:>10.1f}{reference.human[game]:>10.1f}")


if __name__ == "__main__":
    sys.exit(main())
