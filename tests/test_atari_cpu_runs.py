"""benchmarks/atari_cpu_runs.py, which writes the Atari table of benchmarks/RESULTS.md: a row names what sets
its run apart from the preset, and says "learns" only where the final mean beats random play by more than
three standard errors."""

import json
from pathlib import Path

import numpy as np

from jedi_core.configlib import to_dict
from jedi_core.presets import make_config

SCRIPT = "benchmarks/atari_cpu_runs.py"


def test_the_variant_is_what_sets_a_run_apart_from_its_preset_and_never_which_run_or_where(load_script):
    runs = load_script(SCRIPT)
    same = make_config("cpu", ["seed=3", "env.game=MsPacman", "device=cpu", "performance.cuda_graphs=true"])
    assert runs.variant(same) == ""
    overrides = ["world_model.reward_end.next_input=real", "training.world_model_updates=40"]
    assert runs.variant(make_config("cpu", overrides)) == " ".join(sorted(overrides))
    row = {"method": "JEDI", "preset": "cpu", "variant": runs.variant(make_config("cpu", overrides))}
    assert runs.label(row) == f"JEDI (cpu, {' '.join(sorted(overrides))})"
    assert runs.label(row, short=True) == "JEDI (cpu, world_model_updates=40 next_input=real)"
    assert runs.label({"method": "JEDI", "preset": "cpu", "variant": ""}, short=True) == "JEDI (cpu)"


def _run_dir(path: Path, returns: list[float], **recorded) -> Path:
    cfg = make_config("cpu", ["env.game=Krull", "seed=1"])
    path.mkdir()
    (path / "config.json").write_text(json.dumps(to_dict(cfg)))
    scores = {"method": "JEDI", "game": "Krull", "seed": 1, "env_steps": cfg.env_steps,
              "episode_returns": returns, **recorded}
    (path / "final_scores.json").write_text(json.dumps(scores))
    records = [{"epoch": 1, "env_steps": 2_000, "epoch_seconds": 1800.0, "eval_return": 1_700.0},
               {"epoch": 2, "env_steps": 2_100, "epoch_seconds": 1800.0}]
    (path / "metrics.jsonl").write_text("\n".join(json.dumps(record) for record in records))
    return path


def test_a_run_learns_only_where_its_mean_beats_random_play_by_more_than_three_standard_errors(tmp_path,
                                                                                                load_script):
    runs = load_script(SCRIPT)
    random_krull = 1598.0  # the published random score
    spread = np.tile([-100.0, 100.0], 50)  # 100 episodes: standard error = std / 10 = 10.05
    error = float(np.std(spread, ddof=1) / 10)
    untrained = {"Krull/cpu/seed1": [1_600.0, 1_700.0]}  # cached: nothing is played
    above = runs.summarise_run(_run_dir(tmp_path / "above", list(random_krull + 3.2 * error + spread)),
                               untrained, 2)
    below = runs.summarise_run(_run_dir(tmp_path / "below", list(random_krull + 2.8 * error + spread)),
                               untrained, 2)
    assert np.isclose(above["standard_error"], error) and np.isclose(above["untrained_mean"], 1_650.0)
    assert above["learns"] and not below["learns"]
    assert above["random"] == random_krull and above["training_hours"] == 1.0
    assert above["curve"] == [{"env_steps": 2_000, "eval_return": 1_700.0}]
    assert np.isclose(above["hns"], (above["mean"] - random_krull) / (above["human"] - random_krull))
    # A run that played its untrained agent itself: its returns are taken, not played again or the cache's.
    recorded = runs.summarise_run(_run_dir(tmp_path / "recorded", list(random_krull + 3.2 * error + spread),
                                           untrained_episode_returns=[1_500.0, 1_540.0]), untrained, 2)
    assert np.isclose(recorded["untrained_mean"], 1_520.0)
    assert untrained["Krull/cpu/seed1"] == [1_500.0, 1_540.0]
