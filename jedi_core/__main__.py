"""Command line: ``python -m jedi_core <command>`` (also installed as ``jedi``).

Commands: ``train`` (train an agent, resuming if its run folder has a checkpoint), ``evaluate`` (score a
trained run; ``--video`` adds videos of the agent and of its imagination), ``export`` (a run's config and
agent weights in one small file), ``sweep`` (many runs: games x methods x seeds, here or on SLURM), ``report``
(turn finished runs into the paper's tables and a figure), ``bench`` (JEDI against pixel diffusion: speed and
memory; ``--ops``: kernel launches), ``games`` (the Atari100k games and their action counts), ``config``
(print a preset with overrides applied).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from jedi_core.config import Config
from jedi_core.configlib import describe
from jedi_core.presets import PRESETS, make_config

EPILOG = """examples:
  python -m jedi_core train --game Breakout --preset atari100k --seed 0   # a full run on a GPU
  python -m jedi_core train --game Pong --preset smoke                    # every code path, minutes on a CPU
  python -m jedi_core train --preset diamond --game Breakout              # the pixel-diffusion baseline
  python -m jedi_core train --preset toy                                  # learns the toy Catch game on a CPU
  python -m jedi_core evaluate runs/jedi_smoke_Pong_seed0 --episodes 10 --video
  python -m jedi_core export runs/jedi_toy_toy_seed0 my_agent.pt   # config + weights only
  python -m jedi_core sweep --games Pong,Breakout --seeds 0-4 --methods jedi,diamond --gpus 0,1
  python -m jedi_core report runs/                 # every finished run below runs/
  python -m jedi_core report runs/a runs/b --out my_report --baselines DIAMOND IRIS
  python -m jedi_core bench --pair smoke           # JEDI vs pixel diffusion: speed and memory, in seconds
  python -m jedi_core bench --ops                  # kernel launches per imagined step and per update
  python -m jedi_core games
  python -m jedi_core config --preset smoke env.game=Pong seed=3
  python -m jedi_core config --preset diamond --params
"""


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m jedi_core`` argument parser: one sub-command per job (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m jedi_core", description="JEDI: latent diffusion world models for Atari100k.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    train = commands.add_parser(
        "train", help="train an agent (the same command resumes an interrupted run)",
        description="Train JEDI (or, with --preset diamond, the pixel baseline) under the Atari100k "
                    "protocol. The run folder holds the config, checkpoint, replay, metrics and final "
                    "scores; running the same command again resumes from the last checkpoint.")
    train.add_argument("--game", default=None, help="an Atari100k game (see `python -m jedi_core games`)")
    train.add_argument("--env", choices=("atari", "toy"), default=None,
                       help="atari (default) or the toy game")
    train.add_argument("--preset", default="atari100k", choices=list(PRESETS),
                       help="default: atari100k (paper scale, for a GPU); smoke, toy and cpu run on a CPU "
                            "(cpu: about an hour a run on one thread)")
    train.add_argument("--seed", type=int, default=None)
    train.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:N or mps")
    train.add_argument("--run-dir", default=None, help="default: runs/<method>_<preset>_<game>_seed<seed>")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                       help="config overrides, e.g. env_steps=50000")

    evaluate = commands.add_parser("evaluate", help="evaluate a trained run over full episodes")
    evaluate.add_argument("run_dir", metavar="RUN_DIR")
    evaluate.add_argument("--episodes", type=int, default=100)
    evaluate.add_argument("--seed", type=int, default=12345)
    evaluate.add_argument("--device", default=None)
    evaluate.add_argument("--video", action="store_true",
                          help="also write RUN_DIR/videos/agent and agent_vs_imagination (the real episode "
                               "beside the world model's open-loop imagination of it under the same "
                               "actions): H.264 .mp4 with the video extra, else VP9 .webm; both play in "
                               "browsers")
    evaluate.add_argument("--probe-updates", type=int, default=500,
                          help="JEDI runs trained without a decoder probe: updates to fit one for the video")

    export = commands.add_parser(
        "export", help="write a run's config and agent weights to one small file (no optimiser, no replay)",
        description="Write RUN_DIR's config and agent weights to OUT, a file that load_agent(OUT) reads: for "
                    "sharing a trained agent, and for the checkpoint the imagination notebook ships.")
    export.add_argument("run_dir", metavar="RUN_DIR")
    export.add_argument("out", metavar="OUT", help="the file to write, e.g. assets/catch_toy_agent.pt")

    report = commands.add_parser(
        "report", help="tables and a figure from finished runs, beside the published baselines",
        description="Read RUN_DIRS (each a run folder holding final_scores.json, or a folder to search), "
                    "write report.md and report.png: per-game HNS, Human-/Agent-Optimal means, Sym-HNS, "
                    "Har-HNS, mean/median/IQM/optimality gap with stratified-bootstrap 95% CIs.")
    report.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                        help="run folders or folders that contain runs")
    report.add_argument("--out", default="report", help="output folder (default: ./report)")
    report.add_argument("--baselines", nargs="*", default=["DIAMOND", "STORM", "IRIS"],
                        help="published methods to show beside yours (default: DIAMOND STORM IRIS)")
    report.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples for the CIs")
    report.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    report.add_argument("--skip-bad", action="store_true",
                        help="leave out runs whose final_scores.json is damaged (listed in the report) "
                             "instead of stopping")

    from jedi_core.sweep import EPILOG as SWEEP_EPILOG

    sweep = commands.add_parser(
        "sweep", help="many train runs (games x methods x seeds) on this machine or on SLURM",
        description="Train every game x method x seed, each run the idempotent `train` command in its own\n"
                    "run folder: finished runs are skipped, stopped ones resume first. --backend local runs\n"
                    "them here (--gpus or --jobs at a time), slurm submits a submitit job array, print\n"
                    "writes the commands and an sbatch script.",
        epilog=SWEEP_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sweep.add_argument("--games", required=True,
                       help="Atari100k games, comma-separated, any case; all (the 26); toy (Catch)")
    sweep.add_argument("--seeds", default="0", help="e.g. 0-4, 0,2,5 or 0-2,7 (default: 0)")
    sweep.add_argument("--methods", default="jedi",
                       help="jedi, diamond or jedi,diamond (default: jedi); diamond trains the pixel preset "
                            "paired with --preset: atari100k -> diamond, smoke -> smoke_diamond")
    sweep.add_argument("--preset", default="atari100k", choices=list(PRESETS),
                       help="the JEDI preset (default: atari100k)")
    sweep.add_argument("--runs-dir", default=None,
                       help="parent of the run folders (default: runs); `report RUNS_DIR` reads it")
    sweep.add_argument("--backend", choices=("local", "slurm", "print"), default="local",
                       help="local (default): here; slurm: a submitit job array (the slurm extra); print: "
                            "the commands, and an sbatch script for clusters driven by hand")
    sweep.add_argument("--dry-run", action="store_true",
                       help="list the runs and their states (done: skipped; partial: resumes; new)")
    local = sweep.add_argument_group("local backend")
    local.add_argument("--gpus", default=None, help="GPUs, one run on each at a time, e.g. 0,1,2,3 "
                                                    "(a GPU listed twice takes two)")
    local.add_argument("--jobs", type=int, default=None, help="runs at a time without --gpus (default: 1)")
    cluster = sweep.add_argument_group("slurm and print backends (one array task per run)")
    cluster.add_argument("--partition", default=None)
    cluster.add_argument("--time", type=int, default=None, metavar="MINUTES",
                         help="each task's time limit (default: 1440); a run that needs more is requeued")
    cluster.add_argument("--max-parallel", type=int, default=None, help="tasks at a time (default: all)")
    cluster.add_argument("--gpus-per-run", type=int, default=None, help="default: 1")
    cluster.add_argument("--cpus-per-run", type=int, default=None, help="default: the cluster's")
    cluster.add_argument("--mem", type=float, default=None, metavar="GB", help="default: the cluster's")
    cluster.add_argument("--script", default=None,
                         help="print: the sbatch file to write (default: RUNS_DIR/sweep.sbatch)")
    sweep.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides for every run")

    bench = commands.add_parser(
        "bench",
        help="JEDI against the pixel baseline: training/sampling speed and peak memory, side by side",
        description="Measure world-model updates/s, imagined transitions/s, actor-critic updates/s and peak "
                    "memory for a JEDI preset and its pixel-diffusion counterpart with the same batch sizes "
                    "on one device (each in its own process), print the table with the JEDI/pixel ratios "
                    "and write JSON.")
    bench.add_argument("--pair", choices=["paper", "smoke"], default="paper",
                       help="paper: atari100k vs diamond (default); smoke: the tiny presets "
                            "(seconds on a CPU)")
    bench.add_argument("--device", default="auto")
    bench.add_argument("--batch", type=int, default=32, help="world-model batch size (both presets)")
    bench.add_argument("--imagination-batches", type=int, nargs="+", default=[32, 128],
                       help="imagined rollouts per batch to time sampling at "
                            "(the first is the actor-critic's)")
    bench.add_argument("--horizon", type=int, default=15)
    bench.add_argument("--warmup", type=int, default=2)
    bench.add_argument("--repeats", type=int, default=5)
    bench.add_argument("--iterations", type=int, default=3, help="calls per timed repeat")
    bench.add_argument("--threads", type=int, default=None,
                       help="torch CPU threads (default: torch's choice)")
    bench.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", dest="overrides",
                       help="config overrides for both presets, e.g. performance.precision=bf16 "
                            "performance.compile=reduce-overhead")
    bench.add_argument("--out", default=None,
                       help="JSON file (default: benchmarks/results/bench_<pair>_<device>.json)")
    bench.add_argument("--ops", action="store_true",
                       help="count kernel launches per imagined step and per update instead of timing "
                            "(any device, the CPU included; default JSON: launch_counts_<pair>.json)")

    commands.add_parser("games", help="list the 26 Atari100k games, their action counts and subsets")

    show = commands.add_parser("config", help="print a preset's resolved config (with KEY=VALUE overrides)")
    show.add_argument("--preset", default="atari100k", choices=list(PRESETS))
    show.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. env.game=Pong seed=3")
    show.add_argument("--params", action="store_true",
                      help="also build the world model and count its parameters")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sub-command named in ``argv`` (default: the command line); return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train":
            _train(args)
        elif args.command == "evaluate":
            _evaluate(args)
        elif args.command == "export":
            from jedi_core.training.checkpoint import export_agent

            print(f"wrote {export_agent(args.run_dir, args.out)}")
        elif args.command == "report":
            from jedi_core.analysis.report import write_report

            markdown, figure = write_report(args.run_dirs, args.out, baselines=tuple(args.baselines),
                                            reps=args.bootstrap, seed=args.seed, skip_bad=args.skip_bad)
            print(f"wrote {markdown}\nwrote {figure}")
        elif args.command == "sweep":
            return _sweep(args)
        elif args.command == "bench":
            _bench(args)
        elif args.command == "games":
            _print_games()
        elif args.command == "config":
            cfg = make_config(args.preset, args.overrides)
            print("\n".join(describe(cfg)))
            if args.params:
                _print_parameter_counts(cfg)
    except KeyboardInterrupt as stop:  # Ctrl-C, or a stop signal (runtime.StopRequested): 128 + its number
        return getattr(stop, "exit_code", 130)
    except FloatingPointError as error:
        print(f"error: training stopped on a non-finite loss ({error}); the last good checkpoint is kept",
              file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        # Bad input (unknown game, key, file, ...): say what is wrong without a traceback.
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def _train(args: argparse.Namespace) -> None:
    """``train``: train (or resume) a run under the Atari100k protocol and print its mean final return."""
    from jedi_core.training.loop import Trainer
    from jedi_core.training.run_dir import default_run_dir

    overrides = [f"{key}={value}" for key, value in (("env.game", args.game), ("env.kind", args.env),
                                                      ("seed", args.seed), ("device", args.device))
                 if value is not None]
    cfg = make_config(args.preset, [*overrides, *args.overrides])
    if args.game is not None and cfg.env.kind == "toy":
        print(f"warning: --game {args.game} is ignored: the toy game has no Atari game", file=sys.stderr)
    run_dir = args.run_dir or default_run_dir(cfg)
    scores = Trainer(cfg, run_dir, quiet=args.quiet).run()
    returns = scores["episode_returns"]
    print(f"{run_dir}: {scores['method']} on {scores['game']}, mean return {sum(returns) / len(returns):.2f} "
          f"over {len(returns)} episodes")


def _sweep(args: argparse.Namespace) -> int:
    """``sweep``: plan the runs (games x methods x seeds), then list them, train them here, submit them to
    SLURM, or print them with an sbatch script; the exit status is the backend's."""
    from jedi_core import sweep
    from jedi_core.sweep import backends
    from jedi_core.sweep.sbatch import SlurmOptions

    cluster = {"--partition": args.partition, "--time": args.time, "--max-parallel": args.max_parallel,
               "--gpus-per-run": args.gpus_per_run, "--cpus-per-run": args.cpus_per_run, "--mem": args.mem}
    backends.check_options(args.backend, {"--gpus": args.gpus, "--jobs": args.jobs, "--script": args.script,
                                          **cluster})
    runs = sweep.plan_runs(sweep.parse_games([args.games]), sweep.parse_methods(args.methods),
                           sweep.parse_seeds(args.seeds), args.preset, args.overrides, args.runs_dir)
    runs_dir = runs[0].run_dir.parent
    options = SlurmOptions(SlurmOptions.time_min if args.time is None else args.time, args.partition,
                           args.max_parallel, 1 if args.gpus_per_run is None else args.gpus_per_run,
                           args.cpus_per_run, args.mem)
    if args.dry_run:
        print("\n".join(sweep.describe_runs(runs)))
        return 0
    if args.backend == "local":
        return backends.run_local(runs, runs_dir, args.gpus, args.jobs)
    if args.backend == "print":
        return backends.run_print(runs, runs_dir, options, args.script)
    return backends.run_slurm(runs, runs_dir, options)


def _evaluate(args: argparse.Namespace) -> None:
    """``evaluate``: score a trained run over full episodes; with ``--video``, also write its videos."""
    from pathlib import Path

    import numpy as np

    from jedi_core.training.checkpoint import load_run
    from jedi_core.training.collect import evaluate

    for name in ("episodes", "probe_updates"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    cfg, agent, replay = load_run(args.run_dir, args.device, replay=args.video)  # only videos need it
    returns = evaluate(agent, cfg, args.episodes, seed=args.seed, progress=True)
    print(f"{args.run_dir}: mean return {np.mean(returns):.2f} +- {np.std(returns):.2f} "
          f"over {len(returns)} episodes")
    if args.video:
        from jedi_core.analysis.video import write_videos
        from jedi_core.training.run_dir import PROBE_FILE

        for path in write_videos(agent, cfg, Path(args.run_dir) / "videos", args.seed, replay,
                                 args.probe_updates, progress=True,
                                 probe_file=Path(args.run_dir) / PROBE_FILE).values():
            print(f"wrote {path}")


def _bench(args: argparse.Namespace) -> None:
    """``bench``: time a JEDI preset against its pixel-diffusion counterpart, print the table, write JSON."""
    from jedi_core.analysis.bench import PAIRS, format_table, run_bench
    from jedi_core.runtime import resolve_device

    if args.ops:
        _count_launches(args)
        return
    for name in ("batch", "horizon", "repeats", "iterations"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be at least 1, got {getattr(args, name)}")
    if min(args.imagination_batches) < 1 or args.warmup < 0:
        raise ValueError("--imagination-batches must be at least 1 and --warmup at least 0")
    variant = "".join(f"_{item.rpartition('.')[2].replace('=', '-')}" for item in args.overrides)
    out = args.out or f"benchmarks/results/bench_{args.pair}_{resolve_device(args.device).type}{variant}.json"
    report = run_bench(PAIRS[args.pair], args.device, args.batch, args.imagination_batches, args.horizon,
                       args.warmup, args.repeats, args.iterations, threads=args.threads,
                       overrides=args.overrides, out=out)
    if "ratios" in report:
        print(format_table(report))
    print(f"wrote {out}")
    if report["errors"]:
        failed = ", ".join(report["errors"])
        raise RuntimeError(f"benchmarking {failed} failed (the traceback is above and in {out}, with what "
                           "was measured)")


def _count_launches(args: argparse.Namespace) -> None:
    """``bench --ops``: kernel launches per imagined step and per update, for both presets of the pair."""
    import json
    from pathlib import Path

    import torch

    from jedi_core.analysis.bench import PAIRS
    from jedi_core.analysis.launches import format_launch_table, launch_counts
    from jedi_core.runtime import atomic_write_text

    results = [launch_counts(preset, tuple(args.overrides)) for preset in PAIRS[args.pair]]
    print(format_launch_table(results))
    out = Path(args.out or f"benchmarks/results/launch_counts_{args.pair}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps({"results": results, "torch": torch.__version__}, indent=1))
    print(f"wrote {out}")


def _print_parameter_counts(cfg: Config) -> None:
    """``config --params``: build the preset's world model and print its parameter counts by part."""
    from jedi_core.envs import env_num_actions
    from jedi_core.world_model import build_world_model

    num_actions = env_num_actions(cfg.env)
    counts = build_world_model(cfg, num_actions).parameter_counts()
    print(f"\nworld model ({cfg.method}, {num_actions} actions) parameters:")
    for name, count in counts.items():
        print(f"  {name:<11}{count:>12,}")


def _print_games() -> None:
    """``games``: list the Atari100k games with their action counts, subsets and random/human scores."""
    from jedi_core.analysis.metrics import load_reference
    from jedi_core.envs.games import ATARI100K_GAMES

    reference = load_reference()
    print(f"{'game':<16}{'actions':>8}  {'subset':<14}{'random':>10}{'human':>10}")
    for game, actions in ATARI100K_GAMES.items():
        subset = reference.subset[game].replace("_", "-")
        print(f"{game:<16}{actions:>8}  {subset:<14}"
              f"{reference.random[game]:>10.1f}{reference.human[game]:>10.1f}")


if __name__ == "__main__":
    sys.exit(main())
