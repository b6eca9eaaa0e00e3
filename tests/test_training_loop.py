"""jedi_core.training.loop: runs train end to end, resume after a kill or Ctrl-C, finish once, and stop on a
diverged update with the last good checkpoint kept."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from jedi_core.analysis.report import RunResult
from jedi_core.presets import make_config
from jedi_core.replay import ReplayBuffer
from jedi_core.training import harness, loop
from jedi_core.training.harness import LOG_CHUNK
from jedi_core.training.loop import Trainer
from jedi_core.training.run_dir import CHECKPOINT_FILE, FINAL_SCORES_FILE, METRICS_FILE, REPLAY_DIR
from jedi_core.world_model import WorldModel


def _metrics(run_dir):
    return [json.loads(line) for line in (run_dir / METRICS_FILE).read_text().splitlines()]


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("preset", ["smoke", "smoke_diamond"])
def test_smoke_presets_train_checkpoint_and_evaluate_on_a_real_atari_game(preset, tmp_path):
    cfg = make_config(preset, ["env.game=Pong", "env_steps=200", "training.world_model_updates=2",
                               "training.actor_critic_updates=2",
                               "training.first_epoch_world_model_updates=4",
                               "training.first_epoch_actor_critic_updates=2", "training.eval_every_epochs=3"])
    scores = Trainer(cfg, tmp_path, quiet=True).run()
    run = RunResult.load(tmp_path)  # the report can read it
    assert run.game == "Pong" and len(scores["episode_returns"]) == cfg.eval_episodes
    assert (tmp_path / CHECKPOINT_FILE).is_file()
    metrics = _metrics(tmp_path)
    assert metrics[-1]["env_steps"] == 200
    assert metrics[-1]["final_epochs"] == cfg.training.final_training_epochs
    # Algorithm 1's separate loops: as many reward/end updates as diffusion updates, one optimiser per module
    # (the pixel model's identity encoder has none).
    assert metrics[-1]["reward_end_updates"] == metrics[-1]["world_model_updates"] > 0
    modules = {"denoiser", "reward_end"} | ({"encoder"} if preset == "smoke" else set())
    assert set(torch.load(tmp_path / CHECKPOINT_FILE, weights_only=False)["wm_optimizers"]) == modules
    assert {"diffusion_loss", "reward_end_loss", "policy_loss", "entropy"} <= set(metrics[-1])
    # The encoder's gradient norm in each of the two updates that train it, each under its own name.
    encoder_norms = {"grad_norm_encoder", "grad_norm_encoder_reward_end"}
    assert encoder_norms & set(metrics[-1]) == (encoder_norms if preset == "smoke" else set())
    assert ReplayBuffer.load(tmp_path / REPLAY_DIR).num_steps == 200


def _collection_stop(rewards_in_order, initial, step, cap, threshold):
    """DIAMOND's initial-collection rule written out: the first of initial, initial + step, ... (capped) at
    which the rewards so far hold ``threshold`` signs other than the commonest."""
    stop = min(initial, cap)
    while stop < cap:
        counts = np.unique(np.sign(rewards_in_order[:stop]), return_counts=True)[1]
        if counts.sum() - counts.max() >= threshold:
            break
        stop = min(stop + step, cap)
    return stop


@pytest.mark.parametrize("threshold, cap", [(6, 400), (10_000, 90)])
def test_initial_collection_goes_on_until_it_has_seen_enough_minority_rewards(threshold, cap, tmp_path):
    cfg = make_config("smoke", ["env.kind=toy", "training.initial_random_steps=20",
                                "training.env_steps_per_epoch=7",
                                f"training.initial_minority_rewards={threshold}",
                                f"training.initial_random_steps_max={cap}"])
    trainer = Trainer(cfg, tmp_path, quiet=True)
    trainer._initial_collection()
    rewards = np.concatenate([episode.rewards for episode in trainer.replay.episodes])
    steps = trainer.counters["env_steps"]
    assert steps == trainer.replay.num_steps == len(rewards)
    assert steps == _collection_stop(rewards, initial=20, step=7, cap=cap, threshold=threshold)
    if threshold == 6:
        assert 20 < steps < cap  # Catch pays -1 or +1 about every 7 steps: a few rounds past 20 suffice
    else:
        assert steps == cap


def test_a_killed_run_resumes_with_the_same_command(tmp_path):
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "jedi_core", "train", "--env", "toy", "--preset", "smoke", "--quiet",
               "--run-dir", str(run_dir), "env_steps=600", "training.initial_random_steps=50"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline:  # wait for a few checkpointed epochs, then kill without warning
        if ((run_dir / METRICS_FILE).is_file() and len(_metrics(run_dir)) >= 3
                and (run_dir / CHECKPOINT_FILE).is_file()):
            break
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    before = json.loads((run_dir / REPLAY_DIR / "replay.json").read_text())["episodes"]
    kept = ReplayBuffer.load(run_dir / REPLAY_DIR)
    checkpointed = torch.load(run_dir / CHECKPOINT_FILE, weights_only=False)["counters"]
    assert checkpointed["epoch"] >= 2
    with open(run_dir / METRICS_FILE, "a") as handle:  # as if the kill had torn a line in the middle
        handle.write('{"epoch": 99, "env_st')

    finished = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr
    # The log agrees with the checkpoint: lines past it are dropped, the torn one too, and every epoch is
    # logged exactly once, in order.
    epochs = [m["epoch"] for m in _metrics(run_dir)]
    assert epochs == list(range(1, len(epochs) + 1)) and len(epochs) > checkpointed["epoch"]
    final = ReplayBuffer.load(run_dir / REPLAY_DIR)
    assert final.num_steps == 600  # exactly the budget: nothing counted twice
    for index, entry in enumerate(before):  # every episode on disk at the kill is kept, unchanged
        np.testing.assert_array_equal(final.episodes[index].obs, kept.episodes[index].obs)
        assert final.episodes[index].num_steps == entry["num_steps"]


def test_a_finished_run_is_not_trained_again(finished_toy_run):
    cfg, run_dir, _ = finished_toy_run
    first = json.loads((run_dir / FINAL_SCORES_FILE).read_text())
    lines, checkpoint = len(_metrics(run_dir)), _digest(run_dir / CHECKPOINT_FILE)
    assert Trainer(cfg, run_dir, quiet=True).run() == first
    assert len(_metrics(run_dir)) == lines and _digest(run_dir / CHECKPOINT_FILE) == checkpoint


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch,
                                                                              toy_run_overrides):
    """Updates do not check their loss (nothing waits for the device): the trainer reads their logs every
    LOG_CHUNK updates, and a non-finite one stops the run before anything of the diverged epoch is saved."""
    cfg = make_config("smoke", toy_run_overrides)
    train = cfg.training
    good_updates = train.first_epoch_world_model_updates + train.world_model_updates  # epochs 1 and 2
    diffusion_loss, calls = WorldModel.diffusion_loss, {"n": 0}

    def diverging(self, batch):  # epoch 3's first diffusion update diverges: NaN weights follow
        calls["n"] += 1
        loss, logs = diffusion_loss(self, batch)
        if calls["n"] == good_updates + 1:
            return loss * float("nan"), {**logs, "diffusion_loss": logs["diffusion_loss"] * float("nan")}
        return loss, logs

    saved, save = [], Trainer.save_checkpoint

    def recording_save(self):
        path = save(self)
        saved.append((self.counters["epoch"], _digest(path)))
        return path

    monkeypatch.setattr(WorldModel, "diffusion_loss", diverging)
    monkeypatch.setattr(Trainer, "save_checkpoint", recording_save)
    monkeypatch.setattr(Trainer, "announce_projection", lambda self: None)  # its copy's losses would count
    with pytest.raises(FloatingPointError, match=r"epoch 3: non-finite [^(]*\bdiffusion_loss\b") as error:
        Trainer(cfg, tmp_path, quiet=True).run()
    assert "the last good checkpoint" in str(error.value)
    # It stopped at the log read after the epoch's diffusion updates, before any reward/end update.
    assert calls["n"] == good_updates + train.world_model_updates

    assert [epoch for epoch, _ in saved] == [1, 2]  # nothing was saved after the divergence
    assert _digest(tmp_path / CHECKPOINT_FILE) == saved[-1][1]  # the file on disk is epoch 2's
    state = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=False)
    assert state["counters"]["epoch"] == 2
    assert state["counters"]["world_model_updates"] == state["counters"]["reward_end_updates"] == good_updates
    assert state["counters"]["actor_critic_updates"] == (train.first_epoch_actor_critic_updates
                                                         + train.actor_critic_updates)
    assert all(torch.isfinite(value).all() for value in state["agent"].values() if value.is_floating_point())
    assert [record["epoch"] for record in _metrics(tmp_path)] == [1, 2]  # the diverged epoch is not logged
    assert not (tmp_path / FINAL_SCORES_FILE).exists()

    monkeypatch.undo()
    resumed = Trainer(cfg, tmp_path, quiet=True)
    resumed.load_checkpoint()
    assert resumed.counters["epoch"] == 2
    assert all(torch.isfinite(p).all() for p in resumed.agent.parameters())


def test_the_trainer_reads_logs_per_chunk_and_stops_within_the_chunk_that_diverged(tmp_path, monkeypatch,
                                                                                    toy_run_overrides):
    trainer = Trainer(make_config("smoke", toy_run_overrides), tmp_path, quiet=True)
    trainer.counters["epoch"] = 1
    reads, mean_logs = [], harness.mean_logs
    monkeypatch.setattr(harness, "mean_logs",
                        lambda entries: reads.append(len(entries)) or mean_logs(entries))
    calls = []

    def update():
        calls.append(1)
        return {"diffusion_loss": torch.tensor(float(len(calls)))}

    assert LOG_CHUNK == 200
    assert trainer._updates(update, 450) == pytest.approx({"diffusion_loss": np.mean(np.arange(1, 451))})
    assert reads == [200, 200, 50]  # one transfer per chunk of updates
    calls.clear()

    def diverging():
        calls.append(1)
        return {"diffusion_loss": torch.tensor(float("nan") if len(calls) == 5 else 1.0)}

    with pytest.raises(FloatingPointError, match="epoch 1: non-finite diffusion_loss"):
        trainer._updates(diverging, 10_000)
    assert len(calls) == LOG_CHUNK  # not the epoch's 10,000


def _on_world_model_update(monkeypatch, call_number, action):
    """Run ``action()`` before the ``call_number``-th world-model update (diffusion or reward/end, counted
    together); returns the kinds of the updates called, in order."""
    called = []

    def patched(kind):
        original = getattr(Trainer, f"train_{kind}")

        def update(self):
            called.append(kind)
            if len(called) == call_number:
                action()
            return original(self)
        return update

    for kind in ("diffusion", "reward_end"):
        monkeypatch.setattr(Trainer, f"train_{kind}", patched(kind))
    return called


def _raise(error):
    raise error


def test_ctrl_c_saves_before_exiting_and_the_run_resumes(tmp_path, monkeypatch, toy_run_overrides):
    cfg = make_config("smoke", toy_run_overrides)
    first_epoch = cfg.training.first_epoch_world_model_updates
    # Algorithm 1's order: the epoch's diffusion updates, then as many reward/end updates.
    updates_per_epoch_1 = 2 * first_epoch
    called = _on_world_model_update(monkeypatch, updates_per_epoch_1 + 1,
                                    lambda: _raise(KeyboardInterrupt()))  # the first update of epoch 2
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, tmp_path, quiet=True).run()
    assert called == ["diffusion"] * first_epoch + ["reward_end"] * first_epoch + ["diffusion"]
    interrupted = Trainer(cfg, tmp_path, quiet=True)
    interrupted.load_checkpoint()
    # Epoch 2 was cut short: it is saved as not begun, with its env steps and its update kept.
    assert interrupted.counters["epoch"] == 1 and [m["epoch"] for m in _metrics(tmp_path)] == [1]
    assert interrupted.counters["env_steps"] == 50 + cfg.training.env_steps_per_epoch * 2
    counters = interrupted.counters
    assert counters["world_model_updates"] == counters["reward_end_updates"] == first_epoch
    monkeypatch.undo()
    scores = Trainer(cfg, tmp_path, quiet=True).run()
    assert scores["env_steps"] == 200
    epochs = [m["epoch"] for m in _metrics(tmp_path)]
    assert epochs == list(range(1, len(epochs) + 1))  # epoch 2 logged once, when it completed


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGUSR2"])
def test_a_stop_signal_saves_as_ctrl_c_does_and_exits_with_128_plus_its_number(signal_name, tmp_path,
                                                                               monkeypatch, capsys,
                                                                               toy_run_overrides):
    from jedi_core.__main__ import main

    command = ["train", "--preset", "smoke", "--quiet", "--run-dir", str(tmp_path), *toy_run_overrides]
    signum = getattr(signal, signal_name)
    cfg = make_config("smoke", toy_run_overrides)
    first_of_epoch_2 = 2 * cfg.training.first_epoch_world_model_updates + 1  # diffusion, then reward/end
    # A scheduler's SIGTERM arrives in the middle of epoch 2.
    called = _on_world_model_update(monkeypatch, first_of_epoch_2, lambda: os.kill(os.getpid(), signum))
    handler_before = signal.getsignal(signum)
    status = main(command)
    assert status == 128 + signum  # 143 for SIGTERM: the shell's code for a process stopped by it
    assert f"stopped by {signal_name}: saved" in capsys.readouterr().err
    assert signal.getsignal(signum) == handler_before  # the run's handler is gone once it stops
    stopped = Trainer(cfg, tmp_path, quiet=True)
    stopped.load_checkpoint()
    assert stopped.counters["epoch"] == 1 and stopped.counters["env_steps"] > 0  # epoch 2 runs again
    assert len(called) >= first_of_epoch_2 and called[first_of_epoch_2 - 1] == "diffusion"
    monkeypatch.undo()
    assert main(command) == 0  # the same command resumes and finishes
    assert json.loads((tmp_path / FINAL_SCORES_FILE).read_text())["env_steps"] == 200


def test_the_final_evaluation_of_each_run_seed_plays_its_own_episodes(tmp_path, monkeypatch,
                                                                     toy_run_overrides):
    """Run seed s's final evaluation plays episode i from reset seed ``final_evaluation_seed(s) + i``: two run
    seeds (below 100) share no episode, even at the most episodes a config allows (1,000), and none is a
    periodic evaluation's start."""
    from jedi_core.configlib import ConfigError

    played = []
    monkeypatch.setattr(loop, "evaluate", lambda agent, cfg, episodes, seed, **kwargs: played.append(
        (seed, episodes)) or [float(seed % 7)] * episodes)
    for run_seed in (0, 3):
        cfg = make_config("smoke", [*toy_run_overrides, f"seed={run_seed}", "eval_episodes=5"])
        (tmp_path / str(run_seed)).mkdir()
        scores = Trainer(cfg, tmp_path / str(run_seed), quiet=True).final_evaluation()
        assert played[-1] == (loop.final_evaluation_seed(run_seed), 5)
        assert scores["episode_returns"] == [float(played[-1][0] % 7)] * 5 and scores["seed"] == run_seed
    most = 1_000
    assert make_config("smoke", [f"eval_episodes={most}"]).eval_episodes == most
    with pytest.raises(ConfigError, match="eval_episodes"):
        make_config("smoke", [f"eval_episodes={most + 1}"])
    episodes = [set(range(loop.final_evaluation_seed(s), loop.final_evaluation_seed(s) + most))
                for s in range(100)]
    assert sum(map(len, episodes)) == len(set().union(*episodes))  # pairwise disjoint
    everything = set().union(*episodes)
    periodic = range(loop.PERIODIC_EVAL_SEED, loop.PERIODIC_EVAL_SEED + 10_000 + 1_000)
    assert not everything & set(periodic) and min(everything) > max(periodic)


def test_time_left_counts_the_updates_still_to_run():
    from jedi_core.training.harness import hours_text
    from jedi_core.training.schedule import hours_left, schedule_epochs, total_updates

    cfg = make_config("atari100k")
    epochs = schedule_epochs(cfg)
    assert epochs == (100_000 - 5_000) // 100 + 50  # 950 collecting epochs, then 50 training-only ones
    world_model, actor_critic = total_updates(cfg)
    assert (world_model, actor_critic) == (10_000 + (epochs - 1) * 400, 5_000 + (epochs - 1) * 400)
    start = {"world_model_updates": 0, "actor_critic_updates": 0}
    assert hours_left(cfg, start, 10.0, None) == pytest.approx(world_model / 10 / 3600)  # a lower bound
    assert hours_left(cfg, start, 10.0, 2.0) == pytest.approx((world_model / 10 + actor_critic / 2) / 3600)
    done = {"world_model_updates": world_model, "actor_critic_updates": actor_critic}
    assert hours_left(cfg, done, 10.0, 2.0) == 0.0
    assert [hours_text(h) for h in (0.001, 0.5, 2.0, 72.0)] == ["<1 min", "30 min", "2.0 h", "3.0 days"]


def test_a_stop_in_mid_collection_saves_the_reset_count_the_replay_has_seen(tmp_path, monkeypatch,
                                                                             toy_run_overrides):
    from jedi_core.training import collect

    cfg = make_config("smoke", toy_run_overrides)
    step, calls = collect.step_and_record, {"n": 0}

    def stopped(*args):  # Ctrl-C in the middle of the initial random collection, several games in
        calls["n"] += 1
        if calls["n"] == 30:
            raise KeyboardInterrupt
        return step(*args)

    monkeypatch.setattr(collect, "step_and_record", stopped)
    trainer = Trainer(cfg, tmp_path, quiet=True)
    with pytest.raises(KeyboardInterrupt):
        trainer.run()
    saved = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=False)["counters"]
    games_started = len(ReplayBuffer.load(tmp_path / REPLAY_DIR).episodes)
    assert games_started > 1 and saved["collector_resets"] == games_started  # no reset seed used twice


def test_the_untrained_agent_and_the_projection_come_first_and_the_run_trains_as_without_them(
        tmp_path, monkeypatch, capsys, toy_run_overrides):
    """Before any update the run's agent (its seed's initial weights) plays the final evaluation's episodes;
    final_scores.json carries those returns beside the trained agent's, with the hours the run took. Then a
    projected run time is printed, even by a quiet run. The untrained games and the projection's timed
    updates draw from copies of the generators and train a copy of the agent: the run's weights and scores
    are those of a run without them."""
    from jedi_core.agent import Agent
    from jedi_core.envs import env_num_actions
    from jedi_core.runtime import seed_everything
    from jedi_core.training.collect import evaluate
    from jedi_core.training.run_dir import UNTRAINED_SCORES_FILE

    cfg = make_config("smoke", [*toy_run_overrides, "eval_episodes=6"])
    with_untrained = Trainer(cfg, tmp_path / "with", quiet=True)
    scores = with_untrained.run()
    untrained = json.loads((tmp_path / "with" / UNTRAINED_SCORES_FILE).read_text())
    seed_everything(cfg.seed)
    initial = Agent(cfg, env_num_actions(cfg.env))
    expected = evaluate(initial, cfg, 6, seed=loop.final_evaluation_seed(cfg.seed))
    assert untrained["episode_returns"] == expected == scores["untrained_episode_returns"]
    assert untrained["seconds"] > 0
    epochs = sum(record["epoch_seconds"] for record in _metrics(tmp_path / "with"))
    assert (epochs + untrained["seconds"]) / 3600 < scores["hours"] < (epochs + 600) / 3600
    # CPU time over the same parts: positive in every part, and a single thread cannot use more than the wall.
    epochs_cpu = sum(record["epoch_cpu_seconds"] for record in _metrics(tmp_path / "with"))
    assert untrained["cpu_seconds"] > 0 and epochs_cpu > 0
    assert (epochs_cpu + untrained["cpu_seconds"]) / 3600 < scores["cpu_hours"]
    if torch.get_num_threads() == 1:
        assert scores["cpu_hours"] < scores["hours"] * 1.05
    assert scores["threads"] >= 1
    projected = [line for line in capsys.readouterr().err.splitlines() if line.startswith("projected: ")]
    assert len(projected) == 1 and " for this run on cpu (" in projected[0]

    monkeypatch.setattr(Trainer, "evaluate_untrained", lambda self: None)
    monkeypatch.setattr(Trainer, "announce_projection", lambda self: None)
    without = Trainer(cfg, tmp_path / "without", quiet=True)
    assert without.run()["episode_returns"] == scores["episode_returns"]
    assert not (tmp_path / "without" / UNTRAINED_SCORES_FILE).exists()
    for name, value in without.agent.state_dict().items():
        torch.testing.assert_close(with_untrained.agent.state_dict()[name], value, rtol=0, atol=0, msg=name)


def test_the_projection_times_a_copy_and_scales_its_rates_to_the_schedule(tmp_path, monkeypatch):
    """The timed updates train a copy: the run's weights, counters and generators are untouched. The
    projection is the schedule's updates at the measured rates plus every evaluation episode (periodic,
    final and the untrained agent's) at the given pace."""
    from jedi_core.training import projection
    from jedi_core.training.schedule import schedule_epochs, total_updates

    cfg = make_config("smoke", ["training.eval_every_epochs=2"])
    trainer = Trainer(cfg, tmp_path, quiet=True)
    trainer.collect(cfg.training.initial_random_steps, 1.0, random_policy=True)
    weights = {name: value.clone() for name, value in trainer.agent.state_dict().items()}
    counters, rng_state = dict(trainer.counters), trainer.rng.bit_generator.state
    torch_state = torch.random.get_rng_state()
    world_model_rate, actor_critic_rate = projection.time_updates(trainer)
    assert world_model_rate > 0 and actor_critic_rate > 0
    assert trainer.counters == counters and trainer.rng.bit_generator.state == rng_state
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    for name, value in trainer.agent.state_dict().items():
        torch.testing.assert_close(value, weights[name], rtol=0, atol=0, msg=name)

    monkeypatch.setattr(projection, "time_updates", lambda trainer: (4.0, 2.0))
    projected = projection.project(trainer, episode_seconds=0.5)
    world_model, actor_critic = total_updates(cfg)
    episodes = schedule_epochs(cfg) // 2 * cfg.training.periodic_eval_episodes + 2 * cfg.eval_episodes
    assert projected.update_hours == pytest.approx((world_model / 4 + actor_critic / 2) / 3600)
    assert projected.evaluation_hours == pytest.approx(episodes * 0.5 / 3600)
    assert projected.hours == pytest.approx(projected.update_hours + projected.evaluation_hours)
