"""Turn finished runs into a Markdown + PNG report next to the published Atari100k baselines.

``python -m jedi_core report RUN_DIRS...`` calls :func:`write_report`; what a finished run holds, and what
counts as learning, is :mod:`jedi_core.analysis.run_results`'s contract. A search that meets a run folder
without final_scores.json lists it as unfinished.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from jedi_core.analysis import metrics
from jedi_core.analysis.run_results import (
    ATARI100K_ENV_STEPS,
    FINAL_SCORES_FILE,
    JEDI_LABEL,
    LEARNS_STANDARD_ERRORS,
    RunResult,
    find_runs,
    find_unfinished,
)
from jedi_core.runtime import atomic_write_bytes

__all__ = ["FINAL_SCORES_FILE", "RunResult", "find_runs", "find_unfinished", "write_report"]

AGGREGATES = ("mean", "median", "iqm", "optimality_gap")

def _fmt(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"


def _fmt_ci(summary: dict, name: str) -> str:
    lo, hi = summary[f"{name}_ci"]
    return f"{_fmt(summary[name])} [{_fmt(lo)}, {_fmt(hi)}]"


def _count(number: int | None) -> str:
    """A step count with thousands separators, or ``?`` where the run has not said."""
    return f"{number:,}" if number is not None else "?"


def _markdown(user: dict[str, dict[str, list[float]]], summaries: dict[str, dict], games: list[str],
              baselines: Sequence[str], means_only: set[str], short: list[RunResult],
              skipped: Sequence[str], found: Sequence[RunResult], partial: dict[str, list[str]],
              unfinished: Sequence[tuple[Path, int | None, int | None]], reps: int, seed: int) -> str:
    ref = metrics.load_reference()
    lines = ["# Atari100k report", ""]
    if unfinished:
        lines += [f"**{len(unfinished)} run(s) have not finished** and are in no table:", ""]
        lines += [f"- {folder}: {_count(steps)} of {_count(budget)} env steps"
                  for folder, steps, budget in unfinished]
        lines.append("")
    if any(partial.values()):
        lines += ["Games with another number of seeds than the method's others (a partial sweep) are marked "
                  "‡ and left out of that method's aggregates:", ""]
        lines += [f"- {method}: {', '.join(games_left_out)}" for method, games_left_out in partial.items()
                  if games_left_out]
        lines.append("")
    if short:
        lines += [f"**{len(short)} run(s) did not have the full Atari100k budget of {ATARI100K_ENV_STEPS:,} "
                  "agent steps** (marked † below). Their scores are not comparable with the published "
                  "baselines:", ""]
        lines += [f"- {run.path.parent}: preset {run.preset or 'unknown'}, {run.env_steps:,} env steps"
                  for run in short]
        lines.append("")
    lines += _preset_lines(found)
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
            mark = (" †" if (method, game) in short_cells else "") + (
                " ‡" if game in partial.get(method, ()) else "")
            row += ["–", "–"] if scores is None else [
                f"{np.mean(scores):.1f} ± {np.std(scores):.1f}{mark}", _fmt(float(metrics.hns(
                    float(np.mean(scores)), game)))]
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
    lines += _runs_section(found) + _learning_section(found, user) + _improvement_section(user, partial, reps,
                                                                                         seed)
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


def _preset_lines(found: Sequence[RunResult]) -> list[str]:
    """Which runs trained their preset as this code builds it (with their game and seed), from config.json."""
    compared = [run for run in found if run.departures is not None]
    departing = [run for run in compared if run.departures]
    if departing:
        return [f"**{len(departing)} run(s) depart from their preset** as this code builds it with their "
                "game and seed (marked § in the runs table):", "",
                *(f"- {run.path.parent}: {'; '.join(run.departures)}" for run in departing), ""]
    if compared:
        return [f"{len(compared)} of the {len(found)} runs have a config.json, and each trained its preset "
                "as this code builds it, with only its game and seed set.", ""]
    return []


def _runs_section(found: Sequence[RunResult]) -> list[str]:
    """Every run: its score with the standard error, the untrained agent's, random play's, the verdict."""
    if not found:
        return []
    ref = metrics.load_reference()
    lines = ["", "## Runs", "",
             "| Game | Method | Seed | Final mean ± s.e. (episodes) | Untrained agent ± s.e. | Random "
             "(published) | Learns | Hours (threads) | CPU-hours |", "|---|---|---|---|---|---|---|---|---|"]
    for run in sorted(found, key=lambda r: (r.game, r.method, r.seed)):
        untrained = "–" if run.untrained_returns is None else (
            f"{np.mean(run.untrained_returns):.1f} ± {metrics.standard_error(run.untrained_returns):.1f}")
        hours = "–" if run.hours is None else f"{run.hours:.2f} ({run.threads or '?'})"
        cpu_hours = "–" if run.cpu_hours is None else f"{run.cpu_hours:.2f}"
        seed = f"{run.seed} §" if run.departures else str(run.seed)
        lines.append(f"| {run.game} | {run.method} | {seed} | {run.score:.1f} ± {run.standard_error:.1f} "
                     f"({len(run.episode_returns)}) | {untrained} | {ref.random[run.game]:.1f} | "
                     f"{'yes' if run.learns else 'no'} | {hours} | {cpu_hours} |")
    lines += ["", "A run learns where its final mean beats the published random score by more than "
              f"{LEARNS_STANDARD_ERRORS:g} standard errors of that mean. The untrained agent is the run's "
              "own initial weights on the same episodes. Hours: the run's wall time (epochs and final "
              "evaluation) on that many threads; CPU-hours: its process's CPU time over the same parts, "
              "which neither a paused run nor other work on the cores inflates (– where older code ran a "
              "part)."]
    return lines


def _learning_section(found: Sequence[RunResult], user: dict[str, dict[str, list[float]]]) -> list[str]:
    """Per method: on how many games most seeds learn, and the median hours and CPU-hours of a run (with
    their ratios)."""
    if not found:
        return []
    lines = ["", "## Learning and cost per method", "",
             "| Method | Games learnt (most seeds) | Runs that learn | Median hours per run | Median "
             "CPU-hours per run |", "|---|---|---|---|---|"]
    medians: dict[str, dict[str, float | None]] = {"hours": {}, "CPU-hours": {}}
    for method, per_game in user.items():
        runs = [run for run in found if run.method == method]
        verdicts = {game: [run.learns for run in runs if run.game == game] for game in per_game}
        learnt = [game for game, learns in verdicts.items() if sum(learns) > len(learns) / 2]
        for unit, values in (("hours", [run.hours for run in runs]),
                             ("CPU-hours", [run.cpu_hours for run in runs])):
            timed = [value for value in values if value is not None]
            medians[unit][method] = float(np.median(timed)) if timed else None
        shown = ["–" if medians[unit][method] is None else f"{medians[unit][method]:.2f}" for unit in medians]
        lines.append(f"| {method} | {len(learnt)} of {len(per_game)}"
                     f"{' (' + ', '.join(learnt) + ')' if learnt else ''} | "
                     f"{sum(run.learns for run in runs)} of {len(runs)} | {' | '.join(shown)} |")
    for unit, by_method in medians.items():
        timed_methods = [method for method, median in by_method.items() if median]
        for first, second in zip(timed_methods, timed_methods[1:], strict=False):
            lines.append(f"\nMedian {unit} per run, {first} over {second}: "
                         f"{by_method[first] / by_method[second]:.2f}x.")
    return lines


def _improvement_section(user: dict[str, dict[str, list[float]]], partial: dict[str, list[str]], reps: int,
                         seed: int) -> list[str]:
    """rliable's probability of improvement for each pair of methods, on the games both ran fully."""
    methods = list(user)
    lines = []
    for index, first in enumerate(methods):
        for second in methods[index + 1:]:
            games = [game for game in user[first] if game in user[second]
                     and game not in partial.get(first, ()) and game not in partial.get(second, ())]
            if not games:
                continue
            value, (low, high) = metrics.probability_of_improvement(
                {game: user[first][game] for game in games}, {game: user[second][game] for game in games},
                reps=reps, seed=seed)
            lines.append(f"- P({first} > {second}) = {value:.2f} [{low:.2f}, {high:.2f}] over {len(games)} "
                         "game(s)")
    if not lines:
        return []
    return ["", "## Probability of improvement (95% stratified-bootstrap CI)", "",
            "The chance that a run of the first method scores above a run of the second on a game drawn at "
            "random (0.5: a toss-up).", "", *lines]


def hns_ticks(low: float, high: float) -> list[float]:
    """Ticks for an HNS axis in symlog (linear within +-1) from ``low`` to ``high``: quarters in the linear
    part, where CPU-budget runs sit (matplotlib's own symlog ticks there are only 0 and 1), 1-2-5 beyond."""
    beyond = [sign * base * 10 ** power for power in range(4) for base in (1, 2, 5) for sign in (1, -1)]
    candidates = sorted({*beyond, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75})
    return [tick for tick in candidates if low <= tick <= high]


def _figure(summaries: dict[str, dict], games: list[str], found: Sequence[RunResult]) -> bytes:
    """Per game: each method's HNS (bars: the mean over seeds; dots: the seeds; black ticks: its untrained
    agent; 0 is random play, 1 human play); beside it, the aggregates with their intervals."""
    # Figure + FigureCanvasAgg instead of pyplot: the global matplotlib backend (e.g. a notebook's) stays.
    fig = Figure(figsize=(max(10.0, 0.5 * len(games) + 6), 5), layout="constrained")
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2, width_ratios=[max(len(games), 4), 5])
    labels = list(summaries)
    width = 0.8 / len(labels)
    for i, label in enumerate(labels):
        centres = np.arange(len(games)) + (i - (len(labels) - 1) / 2) * width
        runs = [run for run in found if run.method == label]
        bars = {g: float(np.mean([metrics.hns(run.score, g) for run in runs if run.game == g]))
                for g in games if any(run.game == g for run in runs)} or summaries[label]["hns_by_game"]
        left.bar(centres, [bars.get(g, np.nan) for g in games], width, label=label)
        for centre, game in zip(centres, games, strict=True):
            seeds = [metrics.hns(run.score, game) for run in runs if run.game == game]
            left.plot([centre] * len(seeds), seeds, "o", color="black", markersize=3, alpha=0.7)
            untrained = [metrics.hns(float(np.mean(run.untrained_returns)), game) for run in runs
                         if run.game == game and run.untrained_returns is not None]
            if untrained:
                left.hlines(np.mean(untrained), centre - width / 2, centre + width / 2, color="black",
                            linewidth=2)
        points = np.array([summaries[label][name] for name in AGGREGATES])
        cis = np.array([summaries[label][f"{name}_ci"] for name in AGGREGATES])
        errors = np.clip([points - cis[:, 0], cis[:, 1] - points], 0, None)
        right.bar(np.arange(len(AGGREGATES)) + (i - (len(labels) - 1) / 2) * width, points, width,
                  yerr=errors, capsize=2, label=label)
    left.set_yscale("symlog", linthresh=1.0)  # HNS spans ~0 to >10: linear near 0, log beyond human level
    left.axhline(1.0, color="grey", linestyle="--", linewidth=0.8)  # human
    left.axhline(0.0, color="grey", linestyle=":", linewidth=0.8)  # random
    ticks = hns_ticks(*left.get_ylim())  # after the lines, which stretch the axis to human level
    left.set_yticks(ticks, [f"{tick:g}" for tick in ticks])
    if found:
        left.plot([], [], "o", color="black", markersize=3, label="a seed")
        left.plot([], [], "-", color="black", linewidth=2, label="untrained agent")
    left.set_xticks(np.arange(len(games)), games, rotation=60, ha="right")
    left.set_ylabel("HNS (symlog; 0 random, 1 human)")
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
    rliable's aggregates need the same number of seeds on every game: a method's games with another number
    than its commonest (a partial sweep) are shown, marked, and left out of its aggregates; unfinished run
    folders are listed. Runs short of the 100k-step budget are listed at the top and marked; ``skip_bad``
    leaves damaged runs out (listed).
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
    user = dict(sorted(user.items(), key=lambda item: item[0] != JEDI_LABEL))  # JEDI first, then by name
    games = [g for g in ref.games if any(g in per_game for per_game in user.values())]

    summaries: dict[str, dict] = {}
    partial: dict[str, list[str]] = {}
    for method, per_game in user.items():
        counts = [len(scores) for scores in per_game.values()]
        full = max(set(counts), key=lambda count: (counts.count(count), count))  # the commonest, then most
        partial[method] = [game for game, scores in per_game.items() if len(scores) != full]
        summaries[method] = metrics.summarize({game: scores for game, scores in per_game.items()
                                               if len(scores) == full}, reps=reps, seed=seed)
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
    unfinished = find_unfinished(paths)
    markdown = _markdown(user, summaries, games, baselines, means_only, short, skipped, found, partial,
                         unfinished, reps, seed)
    atomic_write_bytes(md_path, markdown.encode("utf-8"))
    atomic_write_bytes(png_path, _figure(summaries, games, found))
    return md_path, png_path
