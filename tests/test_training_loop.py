"""Training runs end to end, checkpoints atomically, resumes after a kill, and refuses what it cannot resume."""

import json
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import torch

from jedi_core.__main__ import main
from jedi_core.config import make_config
from jedi_core.data import ReplayBuffer
from jedi_core.report import RunResult
from jedi_core.trainer import (
    CHECKPOINT_FILE,
    METRICS_FILE,
    REPLAY_DIR,
    IncompatibleCheckpoint,
    Trainer,
    load_agent,
    load_run,
)
from jedi_core.world_model import WorldModel

TOY = ["env.kind=toy", "env_steps=200", "training.initial_random_steps=50"]


def _metrics(run_dir):
    return [json.loads(line) for line in (run_dir / METRICS_FILE).read_text().splitlines()]


@pytest.mark.parametrize("preset", ["smoke", "smoke_diamond"])
def test_smoke_presets_train_checkpoint_and_evaluate_on_a_real_atari_game(preset, tmp_path):
    cfg = make_config(preset, ["env.game=Pong", "env_steps=200", "training.world_model_updates=2",
                               "training.actor_critic_updates=2", "training.first_epoch_world_model_updates=4",
                               "training.first_epoch_actor_critic_updates=2", "training.eval_every_epochs=3"])
    scores = Trainer(cfg, tmp_path, quiet=True).run()
    run = RunResult.load(tmp_path)  # the report can read it
    assert run.game == "Pong" and len(scores["episode_returns"]) == cfg.eval_episodes
    assert (tmp_path / CHECKPOINT_FILE).is_file()
    metrics = _metrics(tmp_path)
    assert metrics[-1]["env_steps"] == 200 and metrics[-1]["final_epochs"] == cfg.training.final_training_epochs
    assert {"diffusion_loss", "reward_end_loss", "policy_loss", "entropy"} <= set(metrics[-1])
    assert ReplayBuffer.load(tmp_path / REPLAY_DIR).num_steps == 200


def test_a_killed_run_resumes_with_the_same_command(tmp_path):
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "jedi_core", "train", "--env", "toy", "--preset", "smoke", "--quiet",
               "--run-dir", str(run_dir), "env_steps=600", "training.initial_random_steps=50"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline:  # wait for a few checkpointed epochs, then kill without warning
        if (run_dir / METRICS_FILE).is_file() and len(_metrics(run_dir)) >= 3 and (run_dir / CHECKPOINT_FILE).is_file():
            break
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    before = json.loads((run_dir / REPLAY_DIR / "replay.json").read_text())["episodes"]
    kept = ReplayBuffer.load(run_dir / REPLAY_DIR)
    checkpointed = torch.load(run_dir / CHECKPOINT_FILE, weights_only=False)["counters"]
    lines_before = len(_metrics(run_dir))
    assert checkpointed["epoch"] >= 2

    finished = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr
    resumed_epochs = [m["epoch"] for m in _metrics(run_dir)[lines_before:]]
    assert resumed_epochs[0] == checkpointed["epoch"] + 1  # counters go on from the checkpoint
    assert resumed_epochs == list(range(resumed_epochs[0], resumed_epochs[0] + len(resumed_epochs)))
    final = ReplayBuffer.load(run_dir / REPLAY_DIR)
    assert final.num_steps == 600  # exactly the budget: nothing counted twice
    for index, entry in enumerate(before):  # every episode on disk at the kill is kept, unchanged
        np.testing.assert_array_equal(final.episodes[index].obs, kept.episodes[index].obs)
        assert final.episodes[index].num_steps == entry["num_steps"]


def test_a_checkpoint_from_another_config_is_refused(tmp_path):
    Trainer(make_config("smoke", TOY), tmp_path, quiet=True).run()
    (tmp_path / "final_scores.json").unlink()  # make it resumable again
    with pytest.raises(IncompatibleCheckpoint, match=r"preset 'smoke'.*world_model\.lr"):
        Trainer(make_config("smoke", [*TOY, "world_model.lr=0.5"]), tmp_path, quiet=True).run()
    with pytest.raises(IncompatibleCheckpoint, match="method"):
        Trainer(make_config("smoke_diamond", TOY), tmp_path, quiet=True).run()


def test_a_finished_run_is_not_trained_again(tmp_path):
    first = Trainer(make_config("smoke", TOY), tmp_path, quiet=True).run()
    lines = len(_metrics(tmp_path))
    assert Trainer(make_config("smoke", TOY), tmp_path, quiet=True).run() == first
    assert len(_metrics(tmp_path)) == lines


def test_evaluate_command_scores_a_run_and_writes_its_videos(tmp_path, capsys):
    Trainer(make_config("smoke", TOY), tmp_path, quiet=True).run()
    assert main(["evaluate", str(tmp_path), "--episodes", "3", "--video", "--probe-updates", "3"]) == 0
    printed = capsys.readouterr().out
    assert "over 3 episodes" in printed and "agent_vs_imagination.mp4" in printed
    for name, width in (("agent.mp4", 64), ("agent_vs_imagination.mp4", 2 * 64 + 4)):
        capture = cv2.VideoCapture(str(tmp_path / "videos" / name))
        assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 8  # one Catch episode: 7 steps, 8 frames
        assert int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)) == 4 * width


def test_export_writes_an_agent_file_that_loads_and_acts_the_same(tmp_path, capsys):
    cfg = make_config("smoke", TOY)
    Trainer(cfg, tmp_path / "run", quiet=True).run()
    assert main(["export", str(tmp_path / "run"), str(tmp_path / "agent.pt")]) == 0
    assert "wrote" in capsys.readouterr().out
    loaded_cfg, agent, info = load_agent(tmp_path / "agent.pt")
    _, original, _ = load_run(tmp_path / "run")
    assert loaded_cfg == cfg and info["counters"]["env_steps"] == 200
    assert info["final_scores"]["episode_returns"] == json.loads((tmp_path / "run/final_scores.json").read_text())[
        "episode_returns"]
    for (name, value), (_, reference) in zip(agent.state_dict().items(), original.state_dict().items(), strict=True):
        assert torch.equal(value, reference), name
    assert (tmp_path / "agent.pt").stat().st_size < (tmp_path / "run" / CHECKPOINT_FILE).stat().st_size / 2
    with pytest.raises(IncompatibleCheckpoint, match="not an exported agent file"):
        load_agent(tmp_path / "run" / CHECKPOINT_FILE)
    with pytest.raises(FileNotFoundError, match="jedi_core export"):
        load_agent(tmp_path / "missing.pt")


def test_evaluate_command_explains_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "is it a run folder made by `train`" in capsys.readouterr().err


def _fail_on_call(monkeypatch, call_number, error):
    original, calls = WorldModel.training_step, {"n": 0}

    def failing(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == call_number:
            raise error
        return original(self, *args, **kwargs)

    monkeypatch.setattr(WorldModel, "training_step", failing)


def test_a_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    cfg = make_config("smoke", TOY)
    # Epoch 1 makes first_epoch_world_model_updates calls, epoch 2 world_model_updates: fail in epoch 3.
    first_epoch = cfg.training.first_epoch_world_model_updates
    _fail_on_call(monkeypatch, first_epoch + cfg.training.world_model_updates + 1,
                  FloatingPointError("world-model loss is nan"))
    with pytest.raises(FloatingPointError):
        Trainer(cfg, tmp_path, quiet=True).run()
    resumed = Trainer(cfg, tmp_path, quiet=True)
    resumed.load_checkpoint()
    assert resumed.counters["epoch"] == 3 - 1  # the failing epoch was never saved


def test_ctrl_c_saves_before_exiting_and_the_run_resumes(tmp_path, monkeypatch):
    cfg = make_config("smoke", TOY)
    _fail_on_call(monkeypatch, cfg.training.first_epoch_world_model_updates + 1, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, tmp_path, quiet=True).run()
    interrupted = Trainer(cfg, tmp_path, quiet=True)
    interrupted.load_checkpoint()
    assert interrupted.counters["epoch"] == 2 and interrupted.counters["env_steps"] > 0
    monkeypatch.undo()
    scores = Trainer(cfg, tmp_path, quiet=True).run()
    assert scores["env_steps"] == 200
