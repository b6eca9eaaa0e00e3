"""The runs of a sweep: games x methods x seeds, each one ``train`` command with its own run folder.

Nothing here starts a process or imports torch, so ``sweep --dry-run`` and a SLURM submission stay light. A
run is only its ``train`` command: ``train`` resumes from its run folder by itself, skips a finished one and
locks the folder while it trains, so running the same command twice never trains anything twice.
"""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from jedi_core.configlib import ConfigError, did_you_mean
from jedi_core.envs.games import ATARI100K_GAMES, canonical_game_name
from jedi_core.presets import PRESETS, make_config
from jedi_core.training.run_dir import FINAL_SCORES_FILE, default_run_dir, has_checkpoint, read_metrics

#: The methods a sweep compares: JEDI and the pixel-diffusion baseline (DIAMOND).
METHODS = ("jedi", "diamond")
#: The pixel-diffusion preset that matches a JEDI preset: the same protocol, budget and batch sizes, the
#: baseline's networks. Presets without one (``toy``, ``colab``) sweep JEDI only.
PIXEL_PRESETS = {"atari100k": "diamond", "smoke": "smoke_diamond", "cpu": "cpu_diamond"}
#: The ``--games`` value of the toy Catch game (``env.kind=toy``); its run folders say ``toy`` too.
TOY_GAME = "toy"
#: Each run's ``train`` output, appended, in its run folder.
LOG_FILE = "sweep.log"
#: Config keys the sweep sets itself, and the option that sets each.
SWEEP_KEYS = {"seed": "--seeds", "env.game": "--games", "env.kind": "--games", "method": "--methods",
              "preset": "--preset"}


@dataclass(frozen=True)
class Run:
    """One run of a sweep: what it trains, where, and the ``train`` command that does it."""

    method: str
    game: str
    seed: int
    preset: str
    run_dir: Path
    command: tuple[str, ...]

    @property
    def log_path(self) -> Path:
        return self.run_dir / LOG_FILE

    @property
    def shell_command(self) -> str:
        return shlex.join(self.command)


# ----------------------------------------------------------------------------------------------
# The options


def parse_games(values: Sequence[str]) -> list[str]:
    """``--games``: names (any case, comma- or space-separated), ``all`` (the 26 games) or ``toy``."""
    games: list[str] = []
    for value in values:
        for name in filter(None, (part.strip() for part in value.split(","))):
            if name.lower() == "all":
                games += list(ATARI100K_GAMES)
            elif name.lower() == TOY_GAME:
                games.append(TOY_GAME)
            else:
                games.append(canonical_game_name(name))  # an unknown name: a did-you-mean and the list
    if not games:
        raise ValueError("--games names no game: give names (Pong,Breakout), all, or toy")
    return list(dict.fromkeys(games))  # "pong,Pong" is one game, one run folder


def parse_seeds(text: str) -> list[int]:
    """``--seeds``: ``0-4``, ``0,2,5`` or both (``0-2,7``); duplicates count once."""
    seeds: list[int] = []
    for part in (part.strip() for part in text.split(",")):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if match is None:
            raise ValueError(f"bad --seeds {text!r}: {part!r} is not a seed or a range; use non-negative "
                             "integers, ranges and commas, e.g. 0-4 or 0,2,5")
        low, high = int(match[1]), int(match[2] if match[2] is not None else match[1])
        if high < low:
            raise ValueError(f"bad --seeds {text!r}: the range {part!r} goes down; write {high}-{low}")
        seeds += range(low, high + 1)
    return list(dict.fromkeys(seeds))


def parse_methods(text: str) -> list[str]:
    """``--methods``: ``jedi``, ``diamond`` or both, comma-separated."""
    methods = [name.strip().lower() for name in text.split(",") if name.strip()]
    for name in methods:
        if name not in METHODS:
            raise ValueError(f"unknown method {name!r}{did_you_mean(name, METHODS)}; methods: "
                             f"{', '.join(METHODS)}")
    if not methods:
        raise ValueError(f"--methods names no method; choose from: {', '.join(METHODS)}")
    return list(dict.fromkeys(methods))


def preset_for(method: str, jedi_preset: str) -> str:
    """The preset that trains ``method`` at the scale of ``jedi_preset`` (see :data:`PIXEL_PRESETS`)."""
    if jedi_preset not in PRESETS:
        raise ConfigError(f"unknown preset {jedi_preset!r}; choose one of: {', '.join(PRESETS)}"
                          + did_you_mean(jedi_preset, PRESETS))
    if make_config(jedi_preset).method != "jedi":
        pair = next(jedi for jedi, pixel in PIXEL_PRESETS.items() if pixel == jedi_preset)
        raise ValueError(f"--preset names the sweep's JEDI preset, and {jedi_preset} is the pixel "
                         f"baseline's: use --preset {pair} --methods diamond")
    if method == "jedi":
        return jedi_preset
    if jedi_preset not in PIXEL_PRESETS:
        pairs = ", ".join(f"{jedi} -> {pixel}" for jedi, pixel in PIXEL_PRESETS.items())
        raise ValueError(f"--methods {method}: preset {jedi_preset} has no pixel-diffusion counterpart "
                         f"(pairs: {pairs}); sweep --methods jedi, or use one of those presets")
    return PIXEL_PRESETS[jedi_preset]


# ----------------------------------------------------------------------------------------------
# The plan


def plan_runs(games: Sequence[str], methods: Sequence[str], seeds: Sequence[int], preset: str = "atari100k",
              overrides: Sequence[str] = (), runs_dir: str | Path | None = None,
              python: str = sys.executable) -> list[Run]:
    """Every run of the sweep, seed by seed, then game, then method: the same list on every call, so a job
    array's task N is always the same run. A sweep stopped partway has finished whole seeds (every game and
    method of seed 0 before any of seed 1), which is what ``report`` compares; side by side, the two methods
    of a game and seed run under the same conditions.

    Each config is built and validated here, so a bad override stops the sweep before anything starts.
    ``runs_dir`` (default: ``train``'s own parent, ``runs``) holds ``train``'s default run folders.
    """
    for item in overrides:
        key, equals, _ = item.partition("=")
        if not equals:  # "--games Pong Breakout": the second game lands among the overrides
            raise ValueError(f"{item!r} is not a KEY=VALUE override; list several games, seeds or methods "
                             "with commas, e.g. --games Pong,Breakout")
        key = key.strip()
        if key in SWEEP_KEYS:
            raise ValueError(f"override {item!r}: the sweep sets {key} from {SWEEP_KEYS[key]}")
    runs = []
    for seed in seeds:
        for game in games:
            for method in methods:
                run_preset = preset_for(method, preset)
                where = ["env.kind=toy"] if game == TOY_GAME else ["env.kind=atari", f"env.game={game}"]
                cfg = make_config(run_preset, [*where, f"seed={seed}", *overrides])
                parent = Path(runs_dir) if runs_dir is not None else default_run_dir(cfg).parent
                # Absolute: a SLURM job or a hand-run script may start in another folder.
                run_dir = (parent / default_run_dir(cfg).name).absolute()
                runs.append(Run(method, game, seed, run_preset, run_dir,
                                train_command(run_preset, game, seed, run_dir, overrides, python)))
    return runs


def train_command(preset: str, game: str, seed: int, run_dir: Path, overrides: Sequence[str] = (),
                  python: str = sys.executable) -> tuple[str, ...]:
    """The ``python -m jedi_core train`` command of one run, with its run folder named explicitly."""
    where = ["--env", "toy"] if game == TOY_GAME else ["--env", "atari", "--game", game]
    return (python, "-m", "jedi_core", "train", "--preset", preset, *where, "--seed", str(seed),
            "--run-dir", str(run_dir), "--quiet", *overrides)


# ----------------------------------------------------------------------------------------------
# Where each run stands


def run_state(run: Run) -> str:
    """``done`` (final_scores.json exists: skipped), ``partial`` (a checkpoint: resumes) or ``new``."""
    if (run.run_dir / FINAL_SCORES_FILE).is_file():
        return "done"
    return "partial" if has_checkpoint(run.run_dir) else "new"


def describe_runs(runs: Sequence[Run]) -> list[str]:
    """``sweep --dry-run``'s table: each run's state, method, game, seed and run folder."""
    states = [run_state(run) for run in runs]
    counts = ", ".join(f"{states.count(state)} {state}" for state in ("done", "partial", "new"))
    lines = [f"{len(runs)} runs: {counts} (done runs are skipped, partial ones resume)",
             f"{'state':<9}{'method':<9}{'game':<16}{'seed':>5}  run folder"]
    for run, state in zip(runs, states, strict=True):
        line = f"{state:<9}{run.method:<9}{run.game:<16}{run.seed:>5}  {shown_path(run.run_dir)}"
        if state == "partial" and (metrics := read_metrics(run.run_dir)):
            line += f"  (epoch {metrics[-1].get('epoch')}, {metrics[-1].get('env_steps')} env steps logged)"
        lines.append(line)
    return lines


def shown_path(path: Path) -> str:
    """``path`` relative to the working folder when it lies below it (shorter to read), else absolute."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
