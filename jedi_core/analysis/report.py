"""Turn finished runs into a Markdown + PNG report next to the published Atari100k baselines.

Contract: a finished run is a folder holding ``final_scores.json``, written after its final evaluation::

    {"method": "JEDI", "game": "Breakout", "seed": 0, "episode_returns": [12.0, 30.0, ...],
     "env_steps": 100000}

``method`` is a non-empty string (runs are grouped by it), ``game`` one of the 26 Atari100k names,
``seed`` and ``env_steps`` integers, ``episode_returns`` a non-empty list of numbers; extra keys are ignored.
The score of a run is the mean of its episode returns. ``python -m jedi_core report RUN_DIRS...`` calls
:func:`write_report`.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from jedi_core.analysis import metrics
from jedi_core.envs.games import canonical_game_name
from jedi_core.runtime import atomic_write_bytes
from jedi_core.training.run_dir import FINAL_SCORES_FILE

__all__ = ["FINAL_SCORES_FILE", "RunResult", "find_runs", "write_report"]

AGGREGATES = ("mean", "median", "iqm", "optimality_gap")
#: The Atari100k budget in agent steps: runs with fewer are marked in a report, not compared silently.
ATARI100K_ENV_STEPS = 100_000


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

    @property
    def score(self) -> float:
        return float(np.mean(self.episode_returns))

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
                   preset=preset)


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


def _fmt(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"


def _fmt_ci(summary: dict, name: str) -> str:
    lo, hi = summary[f"{name}_ci"]
    return f"{_fmt(summary[name])} [{_fmt(lo)}, {_fmt(hi)}]"


def _markdown(user: dict[str, dict[str, list[float]]], summaries: dict[str, dict], games: list[str],
              baselines: Sequence[str], means_only: set[str], short: list[RunResult],
              skipped: Sequence[str]) -> str:
    ref = metrics.load_reference()
    lines = ["# Atari100k report", ""]
    if short:
        lines += [f"**{len(short)} run(s) did not have the full Atari100k budget of {ATARI100K_ENV_STEPS:,} "
                  "agent steps** (marked † below). Their scores are not comparable with the published "
                  "baselines:", ""]
        lines += [f"- {run.path.parent}: preset {run.preset or 'unknown'}, {run.env_steps:,} env steps"
                  for run in short]
        lines.append("")
    if skipped:
        lines += [f"{len(skipped)} damaged run(s) were left out (`--skip-bad`):", ""]
        lines += [f"- {error}" for error in skipped]
        lines.append("")
    short_cells = {(run.method, run.game) for run in short}
    if len(games) < len(ref.games):
        lines += [f"The runs cover {len(games)} of {len(ref.games)} games, so the published baselines are "
                  "restricted to the same games.", ""]
    head = ["Game", "Subset", "Random", "Human"]
    for method in user:
        head += [f"{method} score (mean ± std over seeds)", f"{method} HNS"]
    head += [f"{b} (published)" for b in baselines]
    lines += ["## Per-game scores", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for game in games:
        row = [game, "HO" if ref.subset[game] == "human_optimal" else "AO",
               f"{ref.random[game]:.1f}", f"{ref.human[game]:.1f}"]
        for method, per_game in user.items():
            scores = per_game.get(game)
            mark = " †" if (method, game) in short_cells else ""
            row += ["–", "–"] if scores is None else [
                f"{np.mean(scores):.1f} ± {np.std(scores):.1f}{mark}",
                _fmt(summaries[method]["hns_by_game"][game])]
        row += [f"{ref.published[b][game]:.1f}" for b in baselines]
        lines.append("| " + " | ".join(row) + " |")
    head = ["Method", "#games", "#runs per game", "Mean HNS", "Median HNS", "IQM", "Optimality gap",
            "HO mean", "AO mean", "AO/HO", "Sym-HNS (harmonic)", "Sym-HNS (geometric)", "Har-HNS"]
    lines += ["", "## Aggregates (HNS, 95% stratified-bootstrap CIs)", "",
              "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, s in summaries.items():
        runs = "1 (published mean)" if label in means_only else str(s["runs_per_game"])
        row = [label, str(s["games"]), runs, *(_fmt_ci(s, name) for name in AGGREGATES),
               *(_fmt(s[k]) for k in ("human_optimal", "agent_optimal", "ratio", "sym_hns",
                                     "sym_hns_geometric", "har_hns"))]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "## Notes", "",
              "- HNS = (score - random) / (human - random). IQM and optimality gap pool all runs (rliable, "
              "Agarwal et al. 2021); CIs resample runs within each game.",
              "- The 13/13 Human-Optimal (HO) / Agent-Optimal (AO) split is our reconstruction: the paper's "
              "exact list is not public. It reproduces the paper's ~21x AO/HO gap for DIAMOND.",
              "- Sym-HNS is our definition (the paper's formula is not public): the harmonic mean of the HO "
              "and AO means, so an imbalance between the halves lowers it; a half <= 0 gives 0. "
              "\"n/a\" marks a metric whose half has no game.",
              "- Har-HNS = 1 / mean(1 / (HNS + 0.1)) over per-game mean HNS.",
              "- Baselines with published means only are summarised as one run per game (zero-width CIs).",
              ""]
    return "\n".join(lines)


def _figure(summaries: dict[str, dict], games: list[str]) -> bytes:
    # Figure + FigureCanvasAgg instead of pyplot: the global matplotlib backend (e.g. a notebook's) stays.
    fig = Figure(figsize=(max(10.0, 0.5 * len(games) + 6), 5), layout="constrained")
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2, width_ratios=[max(len(games), 4), 5])
    labels = list(summaries)
    width = 0.8 / len(labels)
    for i, label in enumerate(labels):
        per_game = summaries[label]["hns_by_game"]
        left.bar(np.arange(len(games)) + (i - (len(labels) - 1) / 2) * width,
                 [per_game.get(g, np.nan) for g in games], width, label=label)
        points = np.array([summaries[label][name] for name in AGGREGATES])
        cis = np.array([summaries[label][f"{name}_ci"] for name in AGGREGATES])
        errors = np.clip([points - cis[:, 0], cis[:, 1] - points], 0, None)
        right.bar(np.arange(len(AGGREGATES)) + (i - (len(labels) - 1) / 2) * width, points, width,
                  yerr=errors, capsize=2, label=label)
    left.set_yscale("symlog", linthresh=1.0)  # HNS spans ~0 to >10: linear near 0, log beyond human level
    left.axhline(1.0, color="grey", linestyle="--", linewidth=0.8)
    left.set_xticks(np.arange(len(games)), games, rotation=60, ha="right")
    left.set_ylabel("HNS of per-game mean score (symlog)")
    left.set_title("Per-game human-normalised score")
    left.legend(fontsize="small")
    right.set_xticks(np.arange(len(AGGREGATES)), ["Mean", "Median", "IQM", "Opt. gap"], rotation=30)
    right.set_ylabel("HNS")
    right.set_title("Aggregates (95% CI)")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def write_report(paths: Iterable[str | os.PathLike], out_dir: str | os.PathLike,
                 baselines: Sequence[str] = ("DIAMOND", "STORM", "IRIS"), reps: int = 2000,
                 seed: int = 0, skip_bad: bool = False) -> tuple[Path, Path]:
    """Write ``out_dir/report.md`` and ``out_dir/report.png`` for the runs under ``paths``.

    Runs are grouped by method; baselines (published scores) are restricted to the games the runs cover.
    Every method needs the same number of seeds on each of its games (rliable's score matrix). Runs short
    of the 100k-step budget are listed at the top and marked; ``skip_bad`` leaves damaged runs out (listed).
    """
    ref = metrics.load_reference()
    unknown = [b for b in baselines if b not in ref.published]
    if unknown:
        raise ValueError(f"Unknown baseline(s) {', '.join(unknown)}; available: {', '.join(ref.published)}")
    user: dict[str, dict[str, list[float]]] = {}
    skipped: list[str] = []
    found = find_runs(paths, skip_bad, skipped)  # sorted by method, game, seed
    for run in found:
        user.setdefault(run.method, {}).setdefault(run.game, []).append(run.score)
    games = [g for g in ref.games if any(g in per_game for per_game in user.values())]

    summaries: dict[str, dict] = {}
    for method, per_game in user.items():
        try:
            summaries[method] = metrics.summarize(per_game, reps=reps, seed=seed)
        except ValueError as err:
            raise ValueError(f"Method {method!r}: {err}") from err
    means_only: set[str] = set()
    for name in baselines:
        label = f"{name} (published)"
        # Per-seed scores where released; otherwise the published mean stands in as a single run.
        seeds = ref.per_seed.get(name, {})
        if all(g in seeds for g in games):
            runs = {g: seeds[g] for g in games}
        else:
            runs = {g: [ref.published[name][g]] for g in games}
            means_only.add(label)
        summaries[label] = metrics.summarize(runs, reps=reps, seed=seed)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md_path, png_path = out / "report.md", out / "report.png"
    short = [run for run in found if not run.full_protocol]
    markdown = _markdown(user, summaries, games, baselines, means_only, short, skipped)
    atomic_write_bytes(md_path, markdown.encode("utf-8"))
    atomic_write_bytes(png_path, _figure(summaries, games))
    return md_path, png_path
