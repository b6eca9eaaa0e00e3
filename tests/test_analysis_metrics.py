"""jedi_core.analysis.metrics: the paper's published numbers, recomputed from the packaged JSON."""

import math

import numpy as np
import pytest

from jedi_core.analysis import metrics
from jedi_core.analysis.metrics import (
    AGENT_OPTIMAL,
    HUMAN_OPTIMAL,
    aggregate_iqm,
    aggregate_mean,
    aggregate_median,
    aggregate_optimality_gap,
    har_hns,
    hns,
    hns_by_game,
    load_reference,
    stratified_bootstrap_ci,
    subset_means,
    summarize,
    sym_hns,
    sym_hns_geometric,
)

REF = load_reference()


def diamond_runs() -> dict[str, list[float]]:
    return REF.per_seed["DIAMOND"]


def diamond_hns_matrix() -> np.ndarray:
    return np.array([hns(np.array(diamond_runs()[g]), g) for g in REF.games]).T  # (5 seeds, 26 games)


def published_hns(method: str) -> dict[str, float]:
    return hns_by_game(REF.published[method])


# --- reference data ------------------------------------------------------------------------------------


def test_reference_shape_and_partition():
    assert len(REF.games) == 26
    assert len(HUMAN_OPTIMAL) == len(AGENT_OPTIMAL) == 13
    assert set(HUMAN_OPTIMAL) | set(AGENT_OPTIMAL) == set(REF.games)
    assert "Breakout" in AGENT_OPTIMAL and "Alien" in HUMAN_OPTIMAL
    assert set(REF.published) == {"SimPLe", "TWM", "IRIS", "DreamerV3", "STORM", "DIAMOND"}
    assert set(REF.per_seed) == {"DIAMOND", "IRIS", "SimPLe", "STORM"}
    assert load_reference() is REF  # cached
    assert "reconstruction" in metrics.__doc__.lower()


# --- published checks (3 decimals) -------------------------------------------------------------------


def test_diamond_run_level_aggregates():
    x = diamond_hns_matrix()
    assert x.shape == (5, 26)
    assert round(aggregate_mean(x), 3) == 1.459
    assert round(aggregate_median(x), 3) == 0.373
    assert round(aggregate_iqm(x), 3) == 0.641
    assert round(aggregate_optimality_gap(x), 3) == 0.480


def test_diamond_per_game_metrics():
    per_game = hns_by_game(diamond_runs())
    assert round(har_hns(per_game), 3) == 0.319
    means = subset_means(per_game)
    assert round(means["human_optimal"], 3) == 0.127
    assert round(means["agent_optimal"], 3) == 2.791
    assert round(means["ratio"], 1) == 22.0  # the paper's abstract says "21x"


@pytest.mark.parametrize("method, expected", [("SimPLe", 0.332), ("IRIS", 1.046), ("TWM", 0.956)])
def test_published_mean_hns(method, expected):
    assert round(float(np.mean(list(published_hns(method).values()))), 3) == expected


def test_diamond_worst_on_human_optimal():
    # "the SOTA agent scored the worst among baselines on Human-Optimal tasks": the modern world-model
    # baselines; SimPLe (2019) is lower still and is not part of that comparison.
    human = {m: subset_means(published_hns(m))["human_optimal"] for m in REF.published}
    assert human["DIAMOND"] < min(human[m] for m in ("IRIS", "TWM", "DreamerV3", "STORM"))
    assert max(human, key=lambda m: float(np.mean(list(published_hns(m).values())))) == "DIAMOND"


def test_summarize_diamond():
    s = summarize(diamond_runs(), reps=500)
    assert s["games"] == 26 and s["runs_per_game"] == 5
    assert round(s["mean"], 3) == 1.459 and round(s["iqm"], 3) == 0.641
    assert round(s["har_hns"], 3) == 0.319 and s["num_superhuman"] == 11
    for name in ("mean", "median", "iqm", "optimality_gap"):
        lo, hi = s[f"{name}_ci"]
        assert lo <= s[name] <= hi
    assert s["sym_hns"] <= s["sym_hns_geometric"] <= (s["human_optimal"] + s["agent_optimal"]) / 2


# --- behaviour -----------------------------------------------------------------------------------------


def test_hns_anchors_and_arrays():
    for game in REF.games:
        assert hns(REF.random[game], game) == pytest.approx(0.0)
        assert hns(REF.human[game], game) == pytest.approx(1.0)
    values = hns(np.array([REF.random["Pong"], REF.human["Pong"]]), "Pong")
    assert isinstance(values, np.ndarray) and values == pytest.approx([0.0, 1.0])
    assert isinstance(hns(3.0, "Pong"), float)


def test_unknown_game_names_closest():
    with pytest.raises(ValueError, match="did you mean 'Breakout'") as err:
        hns(10.0, "Breakuot")
    assert "Atari100k games are" in str(err.value) and "Pong" in str(err.value)
    # Spelling variants resolve to the canonical name, so results are keyed consistently.
    assert hns_by_game({"mspacman": [307.3]}) == {"MsPacman": 0.0}


def test_hns_by_game_means_runs_first():
    runs = {"Pong": [REF.random["Pong"], REF.human["Pong"]], "Boxing": REF.human["Boxing"]}
    assert hns_by_game(runs) == pytest.approx({"Pong": 0.5, "Boxing": 1.0})


def test_subset_means_missing_half_is_nan():
    means = subset_means({"Alien": 0.5, "Amidar": 0.3})  # both Human-Optimal
    assert means["human_optimal"] == pytest.approx(0.4)
    assert math.isnan(means["agent_optimal"]) and math.isnan(means["ratio"])
    assert math.isnan(sym_hns({"Alien": 0.5})) and math.isnan(sym_hns_geometric({"Alien": 0.5}))


def half_scores(human: float, agent: float) -> dict[str, float]:
    return {**{g: human for g in HUMAN_OPTIMAL}, **{g: agent for g in AGENT_OPTIMAL}}


@pytest.mark.parametrize("human, agent", [(0.2, 3.0), (1.0, 0.5), (0.05, 8.0)])
def test_sym_hns_mean_ordering(human, agent):
    scores = half_scores(human, agent)
    arithmetic = (human + agent) / 2
    assert arithmetic == pytest.approx(np.mean(list(scores.values())))  # why Sym-HNS cannot be arithmetic
    assert sym_hns(scores) < sym_hns_geometric(scores) < arithmetic


def test_sym_hns_equal_halves_and_nonpositive_half():
    assert sym_hns(half_scores(0.7, 0.7)) == pytest.approx(0.7)
    assert sym_hns_geometric(half_scores(0.7, 0.7)) == pytest.approx(0.7)
    assert sym_hns(half_scores(-0.1, 2.0)) == 0.0
    assert sym_hns_geometric(half_scores(0.0, 2.0)) == 0.0


def test_har_hns_mapping_array_and_undefined():
    # As in the paper's Eq. 10 the offset is not subtracted again: equal HNS h gives h + offset.
    assert har_hns({"Pong": 0.9, "Alien": 0.9}) == pytest.approx(1.0)
    assert har_hns(np.array([0.0, 1.0]), offset=0.1) == pytest.approx(1 / np.mean([10.0, 1 / 1.1]))
    assert har_hns([0.0, 1.0]) < np.mean([0.1, 1.1])  # dominated by the weak game
    assert math.isnan(har_hns([0.5, -0.2]))


def test_iqm_matches_naive_trimmed_mean():
    rng = np.random.default_rng(1)
    for shape in [(5, 26), (3, 7), (1, 4), (2, 3)]:
        x = rng.normal(size=shape) * 3
        pooled = sorted(x.ravel().tolist())
        cut = int(0.25 * len(pooled))
        assert aggregate_iqm(x) == pytest.approx(sum(pooled[cut:len(pooled) - cut]) / (len(pooled) - 2 * cut))


def test_aggregates_accept_stacks():
    x = np.random.default_rng(2).normal(size=(4, 5, 6))
    for fn in (aggregate_mean, aggregate_median, aggregate_iqm, aggregate_optimality_gap):
        assert fn(x) == pytest.approx([fn(sample) for sample in x])


def test_optimality_gap_threshold():
    assert aggregate_optimality_gap(np.array([[2.0, 0.5]])) == pytest.approx(0.25)
    assert aggregate_optimality_gap(np.array([[2.0, 0.5]]), threshold=2.0) == pytest.approx(0.75)


def synthetic_runs(num_runs: int, seed: int = 0) -> dict[str, list[float]]:
    rng = np.random.default_rng(seed)
    return {g: (rng.normal(1.0, 0.5, size=num_runs) + i * 0.05).tolist() for i, g in enumerate(REF.games)}


def test_bootstrap_ci_contains_point_reproducible_and_narrows():
    few, many = synthetic_runs(3), synthetic_runs(30)
    for fn in (aggregate_mean, aggregate_iqm, aggregate_median, aggregate_optimality_gap):
        lo, hi = stratified_bootstrap_ci(few, fn, reps=1000, seed=3)
        assert lo <= fn(np.array(list(few.values())).T) <= hi
        assert stratified_bootstrap_ci(few, fn, reps=1000, seed=3) == (lo, hi)
        lo_many, hi_many = stratified_bootstrap_ci(many, fn, reps=1000, seed=3)
        assert hi_many - lo_many < hi - lo


def test_bootstrap_is_stratified():
    # One run per game: every resample is the data itself, so the interval collapses to a point.
    one = {g: [float(i)] for i, g in enumerate(REF.games)}
    lo, hi = stratified_bootstrap_ci(one, aggregate_mean, reps=200)
    assert lo == pytest.approx(hi) == pytest.approx(np.mean(range(26)))


def test_bootstrap_scalar_aggregate_fallback_and_unequal_runs():
    runs = synthetic_runs(4)
    def scalar_mean(x):
        return float(np.asarray(x).mean())  # not vectorised: always returns a scalar
    assert stratified_bootstrap_ci(runs, scalar_mean, reps=300) == pytest.approx(
        stratified_bootstrap_ci(runs, aggregate_mean, reps=300))
    with pytest.raises(ValueError, match="same"):
        stratified_bootstrap_ci({"Pong": [1.0, 2.0], "Alien": [1.0]}, aggregate_mean)


def test_probability_of_improvement_counts_wins_and_half_ties_per_game_then_averages():
    x = {"Pong": [3.0, 1.0], "Boxing": [5.0, 5.0]}
    y = {"Pong": [2.0, 2.0, 0.0], "Boxing": [5.0, 6.0, 4.0], "Krull": [1.0, 1.0, 1.0]}  # Krull: y only
    # Pong: 3 beats all three, 1 beats one of three -> 4/6. Boxing: each 5 beats 4, ties 5, loses to 6 -> 1/2.
    value, (low, high) = metrics.probability_of_improvement(x, y, reps=500)
    assert value == pytest.approx((4 / 6 + 0.5) / 2)
    assert 0 <= low <= high <= 1
    same, _ = metrics.probability_of_improvement(x, x, reps=10)
    assert same == pytest.approx(0.5)  # against itself: a toss-up
    better, interval = metrics.probability_of_improvement({"Pong": [9.0, 9.5]}, {"Pong": [1.0, 2.0]}, reps=50)
    assert better == 1.0 and interval == (1.0, 1.0)
    with pytest.raises(ValueError, match="share no game"):
        metrics.probability_of_improvement({"Pong": [1.0]}, {"Krull": [1.0]})


def test_standard_error_is_the_sample_std_over_root_n_and_undefined_for_one_episode():
    from jedi_core.analysis.metrics import standard_error

    returns = [1.0, 3.0, 5.0, 7.0]  # sample variance 20/3
    assert np.isclose(standard_error(returns), np.sqrt(20 / 3) / 2)
    assert np.isnan(standard_error([4.0]))
