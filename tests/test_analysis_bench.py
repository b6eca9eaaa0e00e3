"""jedi_core.analysis.bench: the efficiency benchmark measures both presets with the same settings and reports
honest ratios."""

import json

import pytest

from jedi_core.__main__ import main
from jedi_core.analysis.bench import format_table, metric_names, synthetic_replay


def test_synthetic_replay_has_the_asked_steps_in_finished_episodes():
    replay = synthetic_replay(450, num_actions=4, episode_length=200)
    assert replay.num_steps == 450 and [e.num_steps for e in replay.episodes] == [200, 200, 50]
    assert all(e.finished for e in replay.episodes)


def test_bench_measures_both_presets_and_their_ratios(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--pair", "smoke", "--device", "cpu", "--batch", "4", "--imagination-batches", "4",
                 "8", "--horizon", "3", "--warmup", "1", "--repeats", "2", "--iterations", "1",
                 "--threads", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["jedi"]["method"] == "jedi" and report["pixel"]["method"] == "diamond"
    names = metric_names(report["settings"])
    assert "imagined_transitions_per_s@8" in names
    for name in names:
        assert report["jedi"][name] > 0 and report["pixel"][name] > 0
        assert report["ratios"][name] == pytest.approx(report["jedi"][name] / report["pixel"][name])
    assert report["environment"]["torch"] and report["settings"]["world_model_batch"] == 4
    assert "JEDI/pixel" in printed and "imagined transitions per s, batch 8" in printed
    assert format_table(report).count("\n| ") == len(names)  # one row per measure below the header


def test_projected_hours_follow_the_schedule():
    from jedi_core.analysis.bench import projected_update_hours
    from jedi_core.presets import make_config

    cfg = make_config("atari100k")
    train = cfg.training
    collected = cfg.env_steps - train.initial_random_steps
    epochs = collected // train.env_steps_per_epoch + train.final_training_epochs
    assert epochs == 1000  # 95,000 collected steps in epochs of 100, then 50 training-only epochs
    updates = train.first_epoch_world_model_updates + (epochs - 1) * train.world_model_updates
    assert projected_update_hours(cfg, world_model_rate=1.0, actor_critic_rate=float("inf")) == updates / 3600


def test_bench_rejects_bad_settings(capsys):
    assert main(["bench", "--repeats", "0"]) == 2
    assert "--repeats must be at least 1" in capsys.readouterr().err


def test_run_projection_of_a_complete_run_equals_its_logged_time(tmp_path, load_script):
    from jedi_core.configlib import to_dict
    from jedi_core.presets import make_config

    module = load_script("benchmarks/project_run_hours.py")
    cfg = make_config("toy", ["env_steps=1500"])  # 500 collected steps in epochs of 100: 5 epochs
    (tmp_path / "config.json").write_text(json.dumps(to_dict(cfg)))
    records = [{"epoch": e, "epoch_seconds": 100.0 if e == 1 else 10.0 + (5.0 if e % 2 == 0 else 0.0),
                **({"eval_return": 0.0} if e % 2 == 0 else {})} for e in range(1, 6)]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    projection = module.project(tmp_path)
    assert projection["epochs_total"] == 5
    assert projection["projected_hours"] * 3600 == sum(r["epoch_seconds"] for r in records)


def test_bench_applies_overrides_to_both_presets_and_rejects_bad_ones(tmp_path, capsys):
    """bf16 and the CUDA-graph path (on a CPU: the graphs' buffers run eagerly) applied from outside the
    model: every measure of both presets runs through them."""
    out = tmp_path / "bench.json"
    assert main(["bench", "--pair", "smoke", "--device", "cpu", "--batch", "2", "--imagination-batches", "2",
                 "--horizon", "2", "--warmup", "0", "--repeats", "1", "--iterations", "1", "--threads", "1",
                 "--set", "performance.precision=bf16", "performance.cuda_graphs=true",
                 "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["jedi"]["performance"]["precision"] == report["pixel"]["performance"]["precision"] == "bf16"
    assert all(report[side]["performance"]["cuda_graphs"] is True for side in ("jedi", "pixel"))
    for name in metric_names(report["settings"]):
        assert report["jedi"][name] > 0 and report["pixel"][name] > 0
    assert report["jedi"]["batch_assembly_ms"] > 0 and "precision bf16" in capsys.readouterr().out
    assert main(["bench", "--pair", "smoke", "--set", "performance.precision=fp16"]) == 2
    assert "performance.precision: 'fp16' is not allowed" in capsys.readouterr().err


def test_a_preset_that_fails_keeps_its_traceback_and_the_other_presets_numbers(tmp_path, capsys, monkeypatch):
    """The pixel preset is measured after JEDI's fails; the report on disk holds JEDI's traceback before the
    pixel preset starts, and the pixel numbers after; the command exits with an error naming the failure."""
    import multiprocessing

    from jedi_core.analysis import bench

    # A real child that fails (its settings are empty): its traceback comes back to the parent.
    failed = bench._measure_in_process(multiprocessing.get_context("spawn"), "smoke", {})
    assert failed["traceback"].startswith("Traceback") and "KeyError" in failed["error"]

    out = tmp_path / "bench.json"
    measured = []

    def fake_measure(context, preset, settings):
        measured.append(preset)
        if preset == "smoke":
            return failed
        on_disk = json.loads(out.read_text())  # written as soon as JEDI's attempt ended
        assert list(on_disk["errors"]) == ["smoke"] and "pixel" not in on_disk
        return {"preset": preset, "world_model_updates_per_s": 1.0}

    monkeypatch.setattr(bench, "_measure_in_process", fake_measure)
    assert main(["bench", "--pair", "smoke", "--device", "cpu", "--out", str(out)]) == 2
    assert measured == ["smoke", "smoke_diamond"]
    report = json.loads(out.read_text())
    assert report["pixel"]["world_model_updates_per_s"] == 1.0 and "ratios" not in report
    assert report["errors"]["smoke"]["traceback"] == failed["traceback"]
    captured = capsys.readouterr()
    assert "benchmarking smoke failed" in captured.err and "Traceback" in captured.err
