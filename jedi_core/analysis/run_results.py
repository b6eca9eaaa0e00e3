"""Finished runs as a report reads them: ``final_scores.json`` loaded and checked, searched for under folders,
and the run folders that have not finished yet.

Contract: a finished run is a folder holding ``final_scores.json``, written after its final evaluation::

    {"method": "JEDI", "game": "Breakout", "seed": 0, "episode_returns": [12.0, 30.0, ...],
     "env_steps": 100000}

``method`` is a non-empty string (runs are grouped by it), ``game`` one of the 26 Atari100k names,
``seed`` and ``env_steps`` integers, ``episode_returns`` a non-empty list of numbers. Optional, as the trainer
writes them: ``untrained_episode_returns`` (the agent before any update, on the same episodes), ``hours``
(the run's wall time), ``cpu_hours`` (its process's CPU time, which pauses and busy cores do not inflate) and
``threads``; other keys are ignored. A ``config.json`` beside it (as ``train`` writes) is compared with the
run's preset: a run that departs from it is marked in a report. The score of a run is the mean of its episode
returns; it *learns* where that mean beats the published random score by more than three standard errors.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jedi_core.analysis import metrics
from jedi_core.config import Config
from jedi_core.configlib import config_differences, from_dict, to_dict
from jedi_core.envs.games import canonical_game_name
from jedi_core.presets import make_config
from jedi_core.training.run_dir import CONFIG_FILE, FINAL_SCORES_FILE, read_metrics

#: How final_scores.json names this project's method (``training.loop.METHOD_LABELS``).
JEDI_LABEL = "JEDI"
#: A run learns where (final mean - published random) exceeds this many standard errors of the final mean.
LEARNS_STANDARD_ERRORS = 3.0
#: The Atari100k budget in agent steps: runs with fewer are marked in a report, not compared silently.
ATARI100K_ENV_STEPS = 100_000
#: Config keys that say where and how a run was watched, not what it trained: no departure from a preset.
UNTRAINED_KEYS = ("device", "logging")


@dataclass(frozen=True)
class RunResult:
    """One finished run, as read from its final_scores.json."""

    method: str
    game: str
    seed: int
    episode_returns: tuple[float, ...]
    env_steps: int
    path: Path
    preset: str | None = None
    untrained_returns: tuple[float, ...] | None = None
    hours: float | None = None
    threads: int | None = None
    cpu_hours: float | None = None
    #: How its config.json departs from its preset (:func:`preset_departures`); None without a config.json.
    departures: tuple[str, ...] | None = None

    @property
    def score(self) -> float:
        return float(np.mean(self.episode_returns))

    @property
    def standard_error(self) -> float:
        return metrics.standard_error(self.episode_returns)

    @property
    def learns(self) -> bool:
        """Whether the final mean beats the published random score by more than three standard errors."""
        random_score = metrics.load_reference().random[self.game]
        return self.score - random_score > LEARNS_STANDARD_ERRORS * self.standard_error

    @property
    def full_protocol(self) -> bool:
        """Whether the run had the benchmark's whole budget, as the published baselines did."""
        return self.env_steps == ATARI100K_ENV_STEPS

    @classmethod
    def load(cls, run_dir: str | os.PathLike) -> RunResult:
        """Read and validate ``run_dir/final_scores.json``; raise ValueError naming what is wrong."""
        path = Path(run_dir) / FINAL_SCORES_FILE
        if not path.is_file():
            raise ValueError(f"{Path(run_dir)} has no {FINAL_SCORES_FILE}: has the run finished its final "
                             "evaluation?")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{path} is not valid JSON: {err}") from err
        expected = ("keys method (str), game (str), seed (int), episode_returns (list of numbers), "
                    "env_steps (int)")
        if not isinstance(data, dict):
            raise ValueError(f"{path} must hold a JSON object with {expected}")
        missing = [k for k in ("method", "game", "seed", "episode_returns", "env_steps") if k not in data]
        if missing:
            raise ValueError(f"{path} is missing {', '.join(missing)}; expected {expected}")
        returns = data["episode_returns"]
        checks = {
            "method": isinstance(data["method"], str) and data["method"].strip() != "",
            "game": isinstance(data["game"], str),
            "seed": _is_int(data["seed"]),
            "env_steps": _is_int(data["env_steps"]),
            "episode_returns": isinstance(returns, list) and len(returns) > 0
            and all(_is_number(r) for r in returns),
        }
        untrained, hours, threads, cpu_hours = (
            data.get(key) for key in ("untrained_episode_returns", "hours", "threads", "cpu_hours"))
        checks |= {"untrained_episode_returns": untrained is None or (
                       isinstance(untrained, list) and len(untrained) > 0
                       and all(map(_is_number, untrained))),
                   "hours": hours is None or (_is_number(hours) and hours >= 0),
                   "cpu_hours": cpu_hours is None or (_is_number(cpu_hours) and cpu_hours >= 0),
                   "threads": threads is None or (_is_int(threads) and threads > 0)}
        bad = [key for key, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"{path} has invalid {', '.join(bad)}; expected {expected}")
        try:
            game = canonical_game_name(data["game"])  # "breakout" -> "Breakout"; unknown -> a suggestion
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from err
        preset = data.get("preset") if isinstance(data.get("preset"), str) else None
        return cls(method=data["method"], game=game, seed=data["seed"],
                   episode_returns=tuple(float(r) for r in returns), env_steps=data["env_steps"], path=path,
                   preset=preset,
                   untrained_returns=None if untrained is None else tuple(map(float, untrained)),
                   hours=None if hours is None else float(hours), threads=threads,
                   cpu_hours=None if cpu_hours is None else float(cpu_hours),
                   departures=preset_departures(path.parent))


def preset_departures(run_dir: str | os.PathLike) -> tuple[str, ...] | None:
    """How ``run_dir/config.json`` departs from its preset with only its game and seed set, as this code
    builds it: ``("world_model.lr: 0.001 (preset: 0.0001)", ...)``; ``()`` where the run trained the preset
    itself; None where the folder has no config.json. ``device`` and ``logging`` are not compared."""
    file = Path(run_dir) / CONFIG_FILE
    if not file.is_file():
        return None
    try:
        saved = json.loads(file.read_text(encoding="utf-8"))
        run = to_dict(from_dict(saved, Config))  # a section added since the run compares as its default
        preset = to_dict(make_config(saved["preset"], [f"env.game={saved['env']['game']}",
                                                       f"seed={saved['seed']}"]))
    except (ValueError, KeyError, TypeError) as err:  # bad JSON or config (ValueErrors), a missing key
        return (f"{file} cannot be compared with a preset ({type(err).__name__}: {err})",)
    changed = sorted(key for key in config_differences(run, preset)
                     if key.split(".")[0] not in UNTRAINED_KEYS)
    return tuple(f"{key}: {json.dumps(_at(run, key))} (preset: {json.dumps(_at(preset, key))})"
                 for key in changed)


def _at(tree: dict, key: str) -> object:
    for name in key.split("."):
        tree = tree.get(name) if isinstance(tree, dict) else None
    return tree


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_toy_run(file: Path) -> bool:
    try:
        return json.loads(file.read_text(encoding="utf-8")).get("game") == "toy"
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return False  # RunResult.load reports what is wrong with it


def find_runs(paths: Iterable[str | os.PathLike], skip_bad: bool = False,
              skipped: list[str] | None = None) -> list[RunResult]:
    """Load every run under ``paths``: each is a run folder or a folder searched recursively.

    A search skips toy-game runs (``--preset toy``): they are not Atari100k results. A run whose
    final_scores.json is damaged stops the search, or with ``skip_bad`` is left out and its error appended
    to ``skipped``.
    """
    runs: dict[Path, RunResult] = {}  # keyed by file, so overlapping paths do not count a run twice
    for root in map(Path, paths):
        if not root.exists():
            raise ValueError(f"{root} does not exist")
        if root.is_file() and root.name == FINAL_SCORES_FILE:
            root = root.parent
        if (root / FINAL_SCORES_FILE).is_file():
            found = [root / FINAL_SCORES_FILE]  # a run folder: do not search inside it
        else:
            found = sorted(root.rglob(FINAL_SCORES_FILE))
        if not found:
            raise ValueError(f"{root} has no {FINAL_SCORES_FILE} (searched recursively): has the run "
                             "finished its final evaluation?")
        if found[0].parent != root:  # a search: skip toy-game runs, which are not Atari100k results
            atari = [file for file in found if not _is_toy_run(file)]
            if not atari:
                raise ValueError(f"{root} holds only toy-game runs ({len(found)}); reports cover the "
                                 "Atari100k games (train one with --game GAME)")
            found = atari
        for file in found:
            if file.resolve() in runs:
                continue
            try:
                runs[file.resolve()] = RunResult.load(file.parent)
            except ValueError as error:
                if not skip_bad:
                    raise ValueError(f"{error} (report --skip-bad leaves such runs out)") from error
                if skipped is not None:
                    skipped.append(str(error))
    seen: dict[tuple[str, str, int], Path] = {}
    for run in runs.values():
        key = (run.method, run.game, run.seed)
        if key in seen:
            raise ValueError(f"Two runs of {run.method} on {run.game} with seed {run.seed}: "
                             f"{seen[key]} and {run.path}")
        seen[key] = run.path
    return sorted(runs.values(), key=lambda r: (r.method, r.game, r.seed))


def find_unfinished(paths: Iterable[str | os.PathLike]) -> list[tuple[Path, int | None, int | None]]:
    """Run folders under ``paths`` (those with a ``config.json``) that have no final_scores.json yet: each
    with the env steps it has logged and its config's budget (None where unknown)."""
    unfinished = []
    for root in map(Path, paths):
        folders = [root] if (root / CONFIG_FILE).is_file() else sorted(
            file.parent for file in root.rglob(CONFIG_FILE)) if root.is_dir() else []
        for folder in folders:
            if (folder / FINAL_SCORES_FILE).is_file():
                continue
            try:
                budget = json.loads((folder / CONFIG_FILE).read_text()).get("env_steps")
            except (OSError, ValueError, AttributeError):
                budget = None
            records = read_metrics(folder)
            unfinished.append((folder, records[-1].get("env_steps") if records else 0,
                               budget if _is_int(budget) else None))
    return unfinished


