"""Logs where researchers look: the TensorBoard copy of metrics.jsonl (``logging.tensorboard=true``) holds the
same values at the same epochs, once each even across a resume, and every run records where it trained."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from jedi_core.__main__ import main
from jedi_core.analysis.report import RunResult
from jedi_core.configlib import apply_overrides
from jedi_core.presets import make_config
from jedi_core.training.checkpoint import load_run
from jedi_core.training.loop import Trainer
from jedi_core.training.run_dir import (
    CHECKPOINT_FILE,
    ENVIRONMENT_FILE,
    FINAL_SCORES_FILE,
    PREVIOUS_CHECKPOINT_FILE,
    TENSORBOARD_DIR,
    read_metrics,
)


def _tensorboard_points(run_dir):
    """``{tag: [(step, value), ...]}`` as TensorBoard shows them (points of a stopped process purged)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run_dir / TENSORBOARD_DIR), size_guidance={"scalars": 0})
    accumulator.Reload()
    return {tag: [(event.step, event.value) for event in accumulator.Scalars(tag)]
            for tag in accumulator.Tags()["scalars"]}


def _metrics_points(run_dir):
    """``{key: [(epoch, value), ...]}`` of every number in metrics.jsonl."""
    points = {}
    for record in read_metrics(run_dir):
        for key, value in record.items():
            if key != "epoch" and isinstance(value, (int, float)):
                points.setdefault(key, []).append((record["epoch"], value))
    return points


def _assert_mirrored(run_dir):
    shown, logged = _tensorboard_points(run_dir), _metrics_points(run_dir)
    assert set(shown) == set(logged) and {"diffusion_loss", "env_steps", "epoch_seconds"} <= set(shown)
    for key, points in logged.items():
        assert [step for step, _ in shown[key]] == [epoch for epoch, _ in points], key  # each epoch once
        assert [value for _, value in shown[key]] == pytest.approx([value for _, value in points], rel=1e-6)


def _stopped_one_epoch_early(run_dir):
    """As if the run had been killed after logging its last epoch, before checkpointing it."""
    shutil.copyfile(run_dir / PREVIOUS_CHECKPOINT_FILE, run_dir / CHECKPOINT_FILE)
    (run_dir / FINAL_SCORES_FILE).unlink()
    return run_dir


def test_a_toy_run_mirrors_its_metrics_in_tensorboard_and_a_resume_adds_no_point_twice(tmp_path,
                                                                                       toy_run_overrides):
    cfg = make_config("smoke", [*toy_run_overrides, "logging.tensorboard=true"])
    run_dir = tmp_path / "run"
    Trainer(cfg, run_dir, quiet=True).run()
    assert list((run_dir / TENSORBOARD_DIR).glob("events.out.tfevents.*"))
    _assert_mirrored(run_dir)
    last = read_metrics(run_dir)[-1]

    Trainer(cfg, _stopped_one_epoch_early(run_dir), quiet=True).run()  # logs the last epoch again
    again = read_metrics(run_dir)[-1]
    assert again["epoch"] == last["epoch"] and again["epoch_seconds"] != last["epoch_seconds"]
    _assert_mirrored(run_dir)  # the stopped process's point is gone, the new one is shown once


def test_tensorboard_turned_on_when_a_run_resumes_gets_the_earlier_epochs_too(finished_toy_run):
    cfg, run_dir, _ = finished_toy_run
    assert not (run_dir / TENSORBOARD_DIR).exists()
    Trainer(apply_overrides(cfg, ["logging.tensorboard=true"]), _stopped_one_epoch_early(run_dir),
            quiet=True).run()
    _assert_mirrored(run_dir)


def test_tensorboard_asked_for_but_missing_stops_train_before_it_starts(tmp_path, monkeypatch, capsys,
                                                                      toy_run_overrides):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    run_dir = tmp_path / "run"
    command = ["train", "--preset", "smoke", "--quiet", "--run-dir", str(run_dir), *toy_run_overrides,
               "logging.tensorboard=true"]
    assert main(command) == 2
    error = capsys.readouterr().err
    assert "jedi-core[tensorboard]" in error and "Traceback" not in error and len(error.splitlines()) == 1
    assert not run_dir.exists()


def test_a_run_records_where_it_trained_beside_its_config_and_in_its_scores(finished_toy_run, tmp_path):
    _, run_dir, _ = finished_toy_run
    environment = json.loads((run_dir / ENVIRONMENT_FILE).read_text())
    assert environment == {"device": "cpu", "gpu": None, "torch": torch.__version__,
                           "cuda": torch.version.cuda, "precision": "fp32",
                           "python": environment["python"], "jedi_core": environment["jedi_core"],
                           "commit": environment["commit"]}
    # The commit the code ran from, as git names it (this test runs in a checkout of the repository).
    root = Path(__file__).resolve().parents[1]
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    assert environment["commit"] in (head, head + "+changes")
    scores = json.loads((run_dir / FINAL_SCORES_FILE).read_text())
    assert scores["environment"] == environment
    load_run(run_dir, replay=False)  # config.json is still a config, and nothing else
    atari = tmp_path / "atari_run"  # the report reads an Atari run's scores with the extra key as before
    atari.mkdir()
    (atari / FINAL_SCORES_FILE).write_text(json.dumps({**scores, "game": "Pong"}))
    assert RunResult.load(atari).game == "Pong"
