"""jedi_core.analysis.report on made-up runs."""

import json
from importlib.resources import files

import matplotlib
import numpy as np
import pytest

from jedi_core.analysis.report import FINAL_SCORES_FILE, RunResult, find_runs, write_report
from jedi_core.training import run_dir

# Reference scores read straight from the JSON, so the test does not reuse metrics.hns.
GAMES_JSON = json.loads((files("jedi_core") / "resources" / "atari100k_published.json").read_text())["games"]

# method -> game -> episode returns of seed 0 and seed 1 (made up)
RUNS = {
    "JEDI": {"Alien": ([800.0, 1000.0], [700.0, 900.0]), "Breakout": ([150.0, 160.0], [140.0, 130.0]),
             "Pong": ([10.0, 12.0], [15.0, 17.0])},
    "Tiny": {"Alien": ([300.0], [350.0]), "Breakout": ([5.0, 7.0], [9.0, 3.0]), "Pong": ([-20.0], [-19.0])},
}


def write_run(folder, method, game, seed, returns, **overrides):
    folder.mkdir(parents=True, exist_ok=True)
    data = {"method": method, "game": game, "seed": seed, "episode_returns": returns, "env_steps": 100_000}
    (folder / FINAL_SCORES_FILE).write_text(json.dumps({**data, **overrides}))
    return folder


@pytest.fixture
def runs_dir(tmp_path):
    root = tmp_path / "runs"
    for method, games in RUNS.items():
        for game, seeds in games.items():
            for seed, returns in enumerate(seeds):
                write_run(root / method / f"{game}_s{seed}", method, game, seed, list(returns))
    return root


def expected_hns(game, scores):
    ref = GAMES_JSON[game]
    return (np.mean(scores) - ref["random"]) / (ref["human"] - ref["random"])


def test_write_report(runs_dir, tmp_path):
    backend = matplotlib.get_backend()
    md_path, png_path = write_report([runs_dir], tmp_path / "out", reps=200)
    assert matplotlib.get_backend() == backend  # notebooks keep their backend
    assert md_path.name == "report.md" and png_path.name == "report.png"
    png = png_path.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    md = md_path.read_text()
    for name in ["Alien", "Breakout", "Pong", "JEDI", "Tiny", "DIAMOND", "STORM", "IRIS"]:
        assert name in md
    assert "restricted to the same games" in md
    for games in RUNS.values():
        run_scores = {g: [np.mean(r) for r in seeds] for g, seeds in games.items()}
        per_game = {g: expected_hns(g, s) for g, s in run_scores.items()}
        for value in per_game.values():
            assert f"| {value:.3f} |" in md
        # the aggregate mean HNS over all runs, with its CI after it
        mean_hns = np.mean([expected_hns(g, [s]) for g, ss in run_scores.items() for s in ss])
        assert f"| {mean_hns:.3f} [" in md
        mean_alien = np.mean(run_scores["Alien"])
        assert f"{mean_alien:.1f} ± {np.std(run_scores['Alien']):.1f}" in md
    assert sorted((tmp_path / "out").iterdir()) == sorted([md_path, png_path])  # no temp files left


def test_only_human_optimal_games_gives_na(tmp_path):
    for seed in range(2):
        write_run(tmp_path / "runs" / f"a{seed}", "JEDI", "Alien", seed, [900.0 + seed])
    md_path, _ = write_report([tmp_path / "runs"], tmp_path / "out", baselines=("TWM",), reps=100)
    md = md_path.read_text()
    jedi_row = next(line for line in md.splitlines() if line.startswith("| JEDI |"))
    assert "n/a" in jedi_row
    assert "TWM (published)" in md and "published mean" in md


def test_run_result_load_and_find(runs_dir):
    run = RunResult.load(runs_dir / "JEDI" / "Pong_s1")
    assert (run.method, run.game, run.seed, run.env_steps) == ("JEDI", "Pong", 1, 100_000)
    assert run.score == pytest.approx(16.0)
    assert len(find_runs([runs_dir])) == 12
    # A run folder and its parent together still count each run once.
    assert len(find_runs([runs_dir / "JEDI" / "Pong_s1", runs_dir / "JEDI"])) == 6


def test_folder_without_runs(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="has no final_scores.json"):
        find_runs([tmp_path / "empty"])
    with pytest.raises(ValueError, match="has no final_scores.json"):
        write_report([tmp_path / "empty"], tmp_path / "out")
    with pytest.raises(ValueError, match="does not exist"):
        find_runs([tmp_path / "nope"])


def test_malformed_final_scores(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / FINAL_SCORES_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON") as err:
        find_runs([bad])
    assert str(bad) in str(err.value)
    (bad / FINAL_SCORES_FILE).write_text(json.dumps({"method": "JEDI", "game": "Pong", "seed": 0}))
    with pytest.raises(ValueError, match="missing episode_returns, env_steps"):
        RunResult.load(bad)
    write_run(bad, "JEDI", "Pong", 0, [])
    with pytest.raises(ValueError, match="invalid episode_returns"):
        RunResult.load(bad)
    write_run(bad, "JEDI", "Pong", "zero", [1.0])
    with pytest.raises(ValueError, match="invalid seed"):
        RunResult.load(bad)
    write_run(bad, "JEDI", "Pong", 0, [1.0], hours=1.0, cpu_hours=-0.5)
    with pytest.raises(ValueError, match="invalid cpu_hours"):
        RunResult.load(bad)


def test_unknown_game_and_baseline(runs_dir, tmp_path):
    write_run(tmp_path / "odd", "JEDI", "Breakuot", 0, [1.0])
    with pytest.raises(ValueError, match="did you mean 'Breakout'"):
        find_runs([tmp_path / "odd"])
    write_run(tmp_path / "lower", "JEDI", "breakout", 0, [1.0])
    assert find_runs([tmp_path / "lower"])[0].game == "Breakout"
    with pytest.raises(ValueError, match="available: .*DIAMOND"):
        write_report([runs_dir], tmp_path / "out", baselines=("Diamond",))


def test_a_partial_sweep_is_reported_with_its_unfinished_runs_and_odd_games_marked(runs_dir, tmp_path):
    """JEDI has a third seed on Pong only and one run still training: the report lists the unfinished run,
    marks Pong for JEDI (not for Tiny) and leaves it out of JEDI's aggregates, which are those of the other
    two games."""
    write_run(runs_dir / "JEDI" / "Pong_s2", "JEDI", "Pong", 2, [3.0])
    training = runs_dir / "JEDI" / "Alien_s2"
    training.mkdir()
    (training / "config.json").write_text(json.dumps({"env_steps": 100_000}))
    (training / "metrics.jsonl").write_text(json.dumps({"epoch": 3, "env_steps": 4_100}) + "\n")
    md = write_report([runs_dir], tmp_path / "out", reps=50)[0].read_text()
    assert "**1 run(s) have not finished** and are in no table:" in md
    assert f"- {training}: 4,100 of 100,000 env steps" in md
    assert "- JEDI: Pong" in md and "- Tiny" not in md
    pong_row = next(line for line in md.splitlines() if line.startswith("| Pong |"))
    assert pong_row.count(" ‡") == 1
    two_games = {g: [np.mean(r) for r in RUNS["JEDI"][g]] for g in ("Alien", "Breakout")}
    mean_hns = np.mean([expected_hns(g, [s]) for g, ss in two_games.items() for s in ss])
    jedi_row = next(line for line in md.splitlines() if line.startswith("| JEDI | 2 | 2 |"))
    assert f"| {mean_hns:.3f} [" in jedi_row


def test_duplicate_runs_are_refused(runs_dir, tmp_path):
    write_run(runs_dir / "JEDI" / "Pong_s2", "JEDI", "Pong", 2, [3.0])
    write_run(tmp_path / "copy", "JEDI", "Pong", 2, [3.0])
    with pytest.raises(ValueError, match="Two runs of JEDI on Pong with seed 2"):
        find_runs([runs_dir, tmp_path / "copy"])


def test_a_search_skips_toy_game_runs_but_not_only_toy_runs(runs_dir, tmp_path):
    write_run(runs_dir / "toy_run", "JEDI", "toy", 0, [1.0, 1.0])  # what `train --preset toy` writes
    assert len(find_runs([runs_dir])) == 12 and all(run.game != "toy" for run in find_runs([runs_dir]))
    write_run(tmp_path / "only_toy" / "a", "JEDI", "toy", 0, [1.0])
    with pytest.raises(ValueError, match="only toy-game runs"):
        find_runs([tmp_path / "only_toy"])
    with pytest.raises(ValueError, match="toy"):  # named directly, it is not silently dropped
        find_runs([runs_dir / "toy_run"])


def test_the_report_reads_the_score_file_the_trainer_writes():
    assert FINAL_SCORES_FILE == run_dir.FINAL_SCORES_FILE == "final_scores.json"


def test_runs_short_of_the_budget_are_marked_and_damaged_runs_can_be_skipped(runs_dir, tmp_path):
    short = write_run(runs_dir / "JEDI" / "Pong_s0", "JEDI", "Pong", 0, [10.0, 12.0], env_steps=300,
                      preset="smoke")
    md = write_report([runs_dir], tmp_path / "out", reps=50)[0].read_text()
    assert "**1 run(s) did not have the full Atari100k budget of 100,000 agent steps**" in md
    assert f"- {short}: preset smoke, 300 env steps" in md
    pong_row = next(line for line in md.splitlines() if line.startswith("| Pong |"))
    assert pong_row.count(" †") == 1  # JEDI's Pong cell, not Tiny's
    breakout_row = next(line for line in md.splitlines() if line.startswith("| Breakout |"))
    assert "†" not in breakout_row

    damaged = runs_dir / "Tiny" / "Alien_s2"
    damaged.mkdir()
    (damaged / FINAL_SCORES_FILE).write_text("{not json")  # a third seed, cut short while written
    with pytest.raises(ValueError, match="is not valid JSON.*report --skip-bad leaves such runs out"):
        write_report([runs_dir], tmp_path / "out", reps=50)
    md = write_report([runs_dir], tmp_path / "out", reps=50, skip_bad=True)[0].read_text()
    assert "1 damaged run(s) were left out (`--skip-bad`):" in md and "Alien_s2" in md


def test_each_run_is_shown_with_its_untrained_agent_verdict_and_hours_and_methods_are_compared(tmp_path):
    """Per run: final mean ± s.e., the untrained agent's, learns or not (random + 3 s.e.); per method: the
    games most seeds learn, the median hours and their ratio; the probability that one method beats the
    other."""
    random_score = GAMES_JSON["Krull"]["random"]
    # JEDI beats random by far on both seeds; the pixel runs sit on the random score (do not learn).
    for seed in range(2):
        write_run(tmp_path / "runs" / f"jedi{seed}", "JEDI", "Krull", seed,
                  [random_score + 1000, random_score + 1100],
                  untrained_episode_returns=[random_score, random_score + 20], hours=0.5 + seed, threads=1,
                  cpu_hours=0.25 + seed)
        write_run(tmp_path / "runs" / f"pixel{seed}", "Pixel", "Krull", seed,
                  [random_score - 50, random_score + 50], hours=2.0 + seed, threads=1,
                  **({"cpu_hours": 1.75} if seed == 0 else {}))  # the other ran on older code
    md, png = write_report([tmp_path / "runs"], tmp_path / "out", baselines=(), reps=100)
    text = md.read_text()
    assert (f"| Krull | JEDI | 0 | {random_score + 1050:.1f} ± 50.0 (2) | {random_score + 10:.1f} ± 10.0 | "
            f"{random_score:.1f} | yes | 0.50 (1) | 0.25 |") in text
    assert (f"| Krull | Pixel | 1 | {random_score:.1f} ± 50.0 (2) | – | {random_score:.1f} | no | "
            "3.00 (1) | – |") in text
    assert "| JEDI | 1 of 1 (Krull) | 2 of 2 | 1.00 | 0.75 |" in text
    assert "| Pixel | 0 of 1 | 0 of 2 | 2.50 | 1.75 |" in text
    assert "Median hours per run, JEDI over Pixel: 0.40x." in text
    assert "Median CPU-hours per run, JEDI over Pixel: 0.43x." in text
    assert "- P(JEDI > Pixel) = 1.00 [1.00, 1.00] over 1 game(s)" in text
    assert png.read_bytes().startswith(b"\x89PNG")


def test_the_hns_axis_is_ticked_in_quarters_where_it_is_linear_and_1_2_5_beyond():
    from jedi_core.analysis.report import hns_ticks

    assert hns_ticks(-0.1, 1.6) == [0.0, 0.25, 0.5, 0.75, 1]
    assert hns_ticks(-0.3, 25) == [-0.25, 0.0, 0.25, 0.5, 0.75, 1, 2, 5, 10, 20]
    assert hns_ticks(-12, -0.6) == [-10, -5, -2, -1, -0.75]


def test_human_level_is_labelled_on_the_hns_axis_when_every_run_is_below_it(tmp_path, monkeypatch):
    from jedi_core.analysis import report

    drawn = []

    class RecordedFigure(report.Figure):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            drawn.append(self)

    monkeypatch.setattr(report, "Figure", RecordedFigure)
    krull = GAMES_JSON["Krull"]
    below_human = krull["random"] + 0.6 * (krull["human"] - krull["random"])  # HNS 0.6
    write_run(tmp_path / "runs" / "jedi0", "JEDI", "Krull", 0, [below_human, below_human])
    write_report([tmp_path / "runs"], tmp_path / "out", baselines=(), reps=10)
    hns_axis = drawn[0].axes[0]
    assert 1.0 in hns_axis.get_yticks() and hns_axis.get_ylim()[1] >= 1.0


def test_a_run_that_departs_from_its_preset_is_named_and_marked(tmp_path):
    from jedi_core.analysis.run_results import preset_departures
    from jedi_core.configlib import to_dict
    from jedi_core.presets import make_config

    runs = tmp_path / "runs"
    random_score = GAMES_JSON["Pong"]["random"]
    for seed, overrides in ((0, ["device=cpu"]), (1, ["world_model.lr=0.003"])):
        folder = write_run(runs / f"r{seed}", "JEDI", "Pong", seed, [random_score, random_score + 1])
        cfg = make_config("smoke", ["env.game=Pong", f"seed={seed}", *overrides])
        (folder / run_dir.CONFIG_FILE).write_text(json.dumps(to_dict(cfg)))
    assert preset_departures(runs / "r0") == ()  # the device is where it ran, not what it trained
    preset_lr = json.dumps(make_config("smoke").world_model.lr)
    assert preset_departures(tmp_path / "runs" / "r1") == (f"world_model.lr: 0.003 (preset: {preset_lr})",)
    text = write_report([tmp_path / "runs"], tmp_path / "out", baselines=(), reps=10)[0].read_text()
    assert "**1 run(s) depart from their preset**" in text and "r1: world_model.lr: 0.003" in text
    assert "| Pong | JEDI | 1 § |" in text and "| Pong | JEDI | 0 |" in text

    (tmp_path / "runs" / "r1" / run_dir.CONFIG_FILE).unlink()
    assert preset_departures(tmp_path / "runs" / "r1") is None  # no config.json: nothing to compare
    text = write_report([tmp_path / "runs"], tmp_path / "out", baselines=(), reps=10)[0].read_text()
    assert "1 of the 2 runs have a config.json, and each trained its preset" in text and "§" not in text

    (tmp_path / "runs" / "r0" / run_dir.CONFIG_FILE).write_text("{damaged")
    assert "cannot be compared with a preset (JSONDecodeError" in preset_departures(runs / "r0")[0]
