"""Atari100k metrics used by the JEDI paper: HNS, subset means, Sym-HNS, Har-HNS and rliable aggregates.

Reference data (random/human scores, published baseline scores) lives in
``resources/atari100k_published.json``; see its ``_about`` entry for sources.

Human-Optimal / Agent-Optimal partition. The paper splits the 26 games evenly (13/13) into games where
agents stay below humans (Human-Optimal) and games where they beat them (Agent-Optimal), but its exact
list is not public. The split used here is a RECONSTRUCTION: it is the top-13 split of several natural
rankings of baseline HNS, and with DIAMOND's published per-seed scores it reproduces both claims of the
paper's abstract: a "21x" Agent-Optimal / Human-Optimal gap (we get 22.0x) and "DIAMOND worst among
baselines on Human-Optimal" (0.127, below IRIS, TWM, DreamerV3 and STORM; the much older SimPLe is lower).

Sym-HNS. The paper's formula is not public either. An arithmetic mean of the two 13-game halves equals
the plain mean HNS, so it could not reward balance; we define Sym-HNS as the HARMONIC mean of the two
subset means (and offer the geometric mean), which both penalise asymmetry.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib.resources import files

import numpy as np
from numpy.typing import ArrayLike

from jedi_core.envs.games import canonical_game_name

__all__ = [
    "AGENT_OPTIMAL", "HUMAN_OPTIMAL", "AtariReference", "aggregate_iqm", "aggregate_mean",
    "aggregate_median", "aggregate_optimality_gap", "har_hns", "hns", "hns_by_game", "load_reference",
    "probability_of_improvement", "standard_error",
    "score_matrix", "stratified_bootstrap_ci", "subset_means", "summarize", "sym_hns", "sym_hns_geometric",
]


@dataclass(frozen=True)
class AtariReference:
    """Reference scores for the 26 Atari100k games (treat as read-only: the object is cached)."""

    games: tuple[str, ...]
    random: dict[str, float]
    human: dict[str, float]
    subset: dict[str, str]  # 'human_optimal' or 'agent_optimal'
    published: dict[str, dict[str, float]]  # method -> game -> mean score
    per_seed: dict[str, dict[str, list[float]]]  # method -> game -> final score of each seed


@functools.cache
def load_reference() -> AtariReference:
    """Parse the packaged reference JSON once (importlib.resources finds it in an installed package too)."""
    path = files("jedi_core") / "resources" / "atari100k_published.json"
    games = json.loads(path.read_text(encoding="utf-8"))["games"]
    published: dict[str, dict[str, float]] = {}
    per_seed: dict[str, dict[str, list[float]]] = {}
    for game, entry in games.items():
        for method, score in entry["published"].items():
            published.setdefault(method, {})[game] = float(score)
        for method, scores in entry.get("per_seed", {}).items():
            per_seed.setdefault(method, {})[game] = [float(s) for s in scores]
    return AtariReference(
        games=tuple(games),
        random={g: float(e["random"]) for g, e in games.items()},
        human={g: float(e["human"]) for g, e in games.items()},
        subset={g: e["subset"] for g, e in games.items()},
        published=published,
        per_seed=per_seed,
    )


HUMAN_OPTIMAL: tuple[str, ...] = tuple(g for g in load_reference().games
                                       if load_reference().subset[g] == "human_optimal")
AGENT_OPTIMAL: tuple[str, ...] = tuple(g for g in load_reference().games
                                       if load_reference().subset[g] == "agent_optimal")


def _check_game(game: str) -> str:
    """The canonical name of an Atari100k game, or a helpful error listing the valid names."""
    return canonical_game_name(game)


# --- Human-normalised scores -------------------------------------------------------------------------


def hns(score: float | ArrayLike, game: str) -> float | np.ndarray:
    """Human-normalised score (score - random) / (human - random): 0 = random agent, 1 = human."""
    game = _check_game(game)
    ref = load_reference()
    value = (np.asarray(score, dtype=float) - ref.random[game]) / (ref.human[game] - ref.random[game])
    return float(value) if value.ndim == 0 else value


def hns_by_game(scores: Mapping[str, float | Sequence[float]]) -> dict[str, float]:
    """HNS of each game's mean score over runs (HNS is affine, so this is also the mean of run HNS)."""
    result = {}
    for game, runs in scores.items():
        runs = np.atleast_1d(np.asarray(runs, dtype=float))
        if runs.size == 0:
            raise ValueError(f"Game {game!r} has no scores")
        result[_check_game(game)] = float(hns(runs.mean(), game))
    return result


def subset_means(hns_by_game: Mapping[str, float]) -> dict[str, float]:
    """Mean HNS on the Human-Optimal and Agent-Optimal halves and their ratio (agent / human).

    A half without games gives nan; the ratio is nan unless the Human-Optimal mean is > 0 (a ratio to a
    worse-than-random mean has no meaning).
    """
    hns_by_game = {_check_game(game): value for game, value in hns_by_game.items()}

    def mean_of(subset: tuple[str, ...]) -> float:
        values = [hns_by_game[g] for g in subset if g in hns_by_game]
        return float(np.mean(values)) if values else math.nan

    human, agent = mean_of(HUMAN_OPTIMAL), mean_of(AGENT_OPTIMAL)
    ratio = agent / human if human > 0 else math.nan  # nan > 0 is False, so a missing half gives nan
    return {"human_optimal": human, "agent_optimal": agent, "ratio": ratio}


def _halves(hns_by_game: Mapping[str, float]) -> tuple[float, float]:
    """Both subset means, clipped at 0: a half at or below random level earns no credit."""
    means = subset_means(hns_by_game)
    return max(means["human_optimal"], 0.0), max(means["agent_optimal"], 0.0)


def sym_hns(hns_by_game: Mapping[str, float]) -> float:
    """Sym-HNS (our definition): harmonic mean of the Human-Optimal and Agent-Optimal mean HNS.

    Like an F1 score it is dominated by the weaker half. A half <= 0 (clipped to 0) gives 0.0, the limit of
    the harmonic mean; a half without games gives nan.
    """
    human, agent = _halves(hns_by_game)
    if math.isnan(human) or math.isnan(agent):
        return math.nan
    return 0.0 if human == 0 or agent == 0 else 2 * human * agent / (human + agent)


def sym_hns_geometric(hns_by_game: Mapping[str, float]) -> float:
    """Geometric-mean variant of Sym-HNS: sqrt(HO * AO), with the same clipping at 0 (so <= 0 gives 0.0)."""
    human, agent = _halves(hns_by_game)
    return math.sqrt(human * agent)  # nan propagates for a missing half


def har_hns(hns_values: Mapping[str, float] | ArrayLike, offset: float = 0.1) -> float:
    """Har-HNS (JEDI paper, Eq. 10): 1 / mean(1 / (HNS_i + offset)), a per-game harmonic mean.

    The offset keeps near-zero games finite and, as in the paper, is not subtracted afterwards (equal HNS h
    gives h + offset). The mean is undefined (nan) if any HNS_i <= -offset.
    """
    if isinstance(hns_values, Mapping):
        hns_values = list(hns_values.values())
    shifted = np.asarray(hns_values, dtype=float) + offset
    if shifted.size == 0 or np.any(shifted <= 0):
        return math.nan
    return float(1.0 / np.mean(1.0 / shifted))


# --- Run-level aggregates (rliable, Agarwal et al. 2021) ---------------------------------------------
# Each takes a score matrix (num_runs, num_games), or a stack (..., num_runs, num_games) so that the
# bootstrap can evaluate all resamples in one vectorised call.


def _result(value: np.ndarray) -> float | np.ndarray:
    return float(value) if np.ndim(value) == 0 else value


def standard_error(returns: ArrayLike) -> float:
    """Standard error of the mean of one run's episode returns: sample std / sqrt(n) (nan for one episode)."""
    values = np.asarray(returns, dtype=float)
    return float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")


def aggregate_mean(x: ArrayLike) -> float | np.ndarray:
    """Mean HNS over all runs and games."""
    return _result(np.mean(np.asarray(x, dtype=float), axis=(-2, -1)))


def aggregate_median(x: ArrayLike) -> float | np.ndarray:
    """Median over games of each game's mean over runs."""
    return _result(np.median(np.mean(np.asarray(x, dtype=float), axis=-2), axis=-1))


def aggregate_iqm(x: ArrayLike) -> float | np.ndarray:
    """Interquartile mean of all scores pooled (= scipy.stats.trim_mean(x, 0.25, axis=None))."""
    x = np.asarray(x, dtype=float)
    pooled = np.sort(x.reshape(*x.shape[:-2], -1), axis=-1)
    cut = int(0.25 * pooled.shape[-1])  # the same count is cut from each end, as in scipy
    return _result(np.mean(pooled[..., cut:pooled.shape[-1] - cut], axis=-1))


def aggregate_optimality_gap(x: ArrayLike, threshold: float = 1.0) -> float | np.ndarray:
    """Optimality gap: threshold - mean(min(x, threshold)); how far runs fall short of human level."""
    return _result(threshold - np.mean(np.minimum(np.asarray(x, dtype=float), threshold), axis=(-2, -1)))


def score_matrix(per_game_runs: Mapping[str, Sequence[float]]) -> np.ndarray:
    """Stack per-game runs into a (num_runs, num_games) matrix; every game needs the same number of runs."""
    counts = {game: len(runs) for game, runs in per_game_runs.items()}
    if not counts or len(set(counts.values())) != 1 or 0 in counts.values():
        raise ValueError("rliable aggregates need the same (non-zero) number of runs for every game, got "
                         f"{counts}; finish the missing runs or leave the extra ones out")
    return np.array([list(runs) for runs in per_game_runs.values()], dtype=float).T


def stratified_bootstrap_ci(
    per_game_runs: Mapping[str, Sequence[float]],
    aggregate_fn: Callable[[np.ndarray], float | np.ndarray],
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile confidence interval from rliable's stratified bootstrap.

    Runs are resampled with replacement independently within each game (the strata), so every resample
    keeps all games. Games must have equal run counts (see score_matrix). ``aggregate_fn`` receives a
    (reps, runs, games) stack and should return shape (reps,); one that returns a scalar is applied to
    each resample in turn instead (slower).
    """
    matrix = score_matrix(per_game_runs)
    num_runs, num_games = matrix.shape
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, num_runs, size=(reps, num_runs, num_games))
    samples = matrix[rows, np.arange(num_games)]  # column g only draws from game g's runs
    stats = np.asarray(aggregate_fn(samples), dtype=float)
    if stats.shape != (reps,):
        stats = np.array([aggregate_fn(sample) for sample in samples], dtype=float)
    tail = 100 * (1 - confidence) / 2
    lo, hi = np.percentile(stats, [tail, 100 - tail])
    return float(lo), float(hi)


def probability_of_improvement(x_runs: Mapping[str, Sequence[float]], y_runs: Mapping[str, Sequence[float]],
                               reps: int = 2000, seed: int = 0) -> tuple[float, tuple[float, float]]:
    """rliable's probability of improvement: P(a run of X beats a run of Y on a random game), with its 95%
    stratified-bootstrap CI.

    Per game, the Mann-Whitney statistic over every pair of runs (a tie counts one half); then the mean over
    the games both methods played. Unlike overlapping intervals, it says how often X beats Y: 0.5 is a
    toss-up. Scores need no normalisation (the comparison is within a game). Each method needs the same number
    of runs on every game (see score_matrix); X and Y may have different numbers.
    """
    games = sorted(set(x_runs) & set(y_runs))
    if not games:
        raise ValueError("the two methods share no game")
    x = score_matrix({game: x_runs[game] for game in games})  # (runs, games)
    y = score_matrix({game: y_runs[game] for game in games})

    def statistic(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """xs (..., m, games), ys (..., n, games) -> (...,)."""
        diff = xs[..., :, None, :] - ys[..., None, :, :]
        wins = (diff > 0).mean(axis=(-3, -2)) + 0.5 * (diff == 0).mean(axis=(-3, -2))
        return wins.mean(axis=-1)

    rng = np.random.default_rng(seed)
    columns = np.arange(len(games))
    x_boot = x[rng.integers(0, x.shape[0], size=(reps, *x.shape)), columns]
    y_boot = y[rng.integers(0, y.shape[0], size=(reps, *y.shape)), columns]
    low, high = np.percentile(statistic(x_boot, y_boot), [2.5, 97.5])
    return float(statistic(x, y)), (float(low), float(high))


def summarize(per_game_runs: Mapping[str, Sequence[float]], reps: int = 2000, seed: int = 0) -> dict:
    """All paper metrics for one method from raw per-game run SCORES (equal run counts per game).

    Run-level aggregates (mean, median, iqm, optimality_gap) come with a 95% stratified-bootstrap CI under
    the key ``<name>_ci``; subset means, Sym-HNS, Har-HNS and #superhuman use per-game mean HNS.
    """
    runs_hns = {game: np.atleast_1d(hns(np.asarray(runs, dtype=float), game))
                for game, runs in per_game_runs.items()}
    matrix = score_matrix(runs_hns)
    per_game = {game: float(np.mean(values)) for game, values in runs_hns.items()}
    result: dict = {"games": len(per_game), "runs_per_game": matrix.shape[0], "hns_by_game": per_game}
    aggregates = {"mean": aggregate_mean, "median": aggregate_median, "iqm": aggregate_iqm,
                  "optimality_gap": aggregate_optimality_gap}
    for name, fn in aggregates.items():
        result[name] = fn(matrix)
        result[f"{name}_ci"] = stratified_bootstrap_ci(runs_hns, fn, reps=reps, seed=seed)
    result.update(subset_means(per_game))
    result["sym_hns"] = sym_hns(per_game)
    result["sym_hns_geometric"] = sym_hns_geometric(per_game)
    result["har_hns"] = har_hns(per_game)
    result["num_superhuman"] = sum(value >= 1.0 for value in per_game.values())
    return result
