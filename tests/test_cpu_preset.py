"""The ``cpu`` and ``cpu_diamond`` presets (real Atari games learnt on a CPU): they build at their own
sizes, train on a real game, checkpoint, resume after Ctrl-C, and finish with the protocol's evaluation. Only
the schedule is shortened here; the models, batch sizes and code paths are the presets' own. The learning
itself is a recorded benchmark (``benchmarks/atari_cpu_runs.py``, ``benchmarks/RESULTS.md``)."""

import json

import pytest

from jedi_core.presets import make_config
from jedi_core.sweep import PIXEL_PRESETS
from jedi_core.training.loop import Trainer
from jedi_core.training.run_dir import FINAL_SCORES_FILE, METRICS_FILE

#: The presets' schedule, shortened to a few updates; nothing else changes.
SHORT_SCHEDULE = ["env_steps=400", "eval_episodes=2", "env.max_episode_frames=400",
                  "training.initial_random_steps=100", "training.initial_minority_rewards=0",
                  "training.first_epoch_world_model_updates=3", "training.first_epoch_actor_critic_updates=2",
                  "training.world_model_updates=1", "training.actor_critic_updates=1",
                  "training.final_training_epochs=1", "training.eval_every_epochs=2",
                  "training.periodic_eval_episodes=1", "training.checkpoint_every_epochs=1"]


def test_the_cpu_presets_are_the_budget_they_say_and_pair_jedi_with_its_pixel_baseline():
    jedi = make_config("cpu")
    pixel = make_config("cpu_diamond")
    assert PIXEL_PRESETS["cpu"] == "cpu_diamond"
    assert (jedi.method, pixel.method) == ("jedi", "diamond")
    assert jedi.env_steps == pixel.env_steps == 20_000 and jedi.eval_episodes == 100
    assert jedi.env == pixel.env and jedi.env.max_episode_frames == 108_000  # the protocol's episodes
    assert jedi.training == pixel.training  # the same budget and schedule
    for field in ("lr", "batch_size", "segment_steps", "warmup_steps"):
        assert getattr(jedi.world_model, field) == getattr(pixel.world_model, field)
    assert (jedi.actor_critic.horizon, jedi.actor_critic.batch_size) == (pixel.actor_critic.horizon,
                                                                          pixel.actor_critic.batch_size)
    assert jedi.world_model.decoder_probe  # so notebooks can draw what a trained run imagines
    # The pixel U-Net has DIAMOND's four levels: its middle self-attention runs at 8x8, as the latent one's.
    assert len(pixel.world_model.denoiser.channels) == 4


@pytest.mark.parametrize("preset", ["cpu", "cpu_diamond"])
def test_cpu_presets_train_on_a_real_game_resume_after_ctrl_c_and_finish(preset, tmp_path, monkeypatch):
    cfg = make_config(preset, ["env.game=Boxing", *SHORT_SCHEDULE])
    called = []

    def interrupted_in_epoch_3(kind):
        original = getattr(Trainer, f"train_{kind}")

        def update(self):
            called.append(kind)
            if len(called) == 3 * 2 + 1 * 2 + 1:  # epoch 1: 3 diffusion and 3 reward/end updates; epoch 2: 1
                raise KeyboardInterrupt           # of each; then stop at epoch 3's first
            return original(self)
        return update

    for kind in ("diffusion", "reward_end"):
        monkeypatch.setattr(Trainer, f"train_{kind}", interrupted_in_epoch_3(kind))
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, tmp_path, quiet=True).run()
    # Each epoch runs its diffusion updates, then as many reward/end updates.
    assert called == ["diffusion"] * 3 + ["reward_end"] * 3 + ["diffusion", "reward_end", "diffusion"]
    records = [json.loads(line) for line in (tmp_path / METRICS_FILE).read_text().splitlines()]
    assert [record["epoch"] for record in records] == [1, 2]
    assert records[-1]["world_model_updates"] == records[-1]["reward_end_updates"] == 3 + 1
    monkeypatch.undo()

    resumed = Trainer(cfg, tmp_path, quiet=True)
    scores = resumed.run()
    epochs = [json.loads(line) for line in (tmp_path / METRICS_FILE).read_text().splitlines()]
    assert [record["epoch"] for record in epochs] == list(range(1, len(epochs) + 1))
    assert scores["env_steps"] == 400 and scores["preset"] == preset
    assert len(json.loads((tmp_path / FINAL_SCORES_FILE).read_text())["episode_returns"]) == 2
    assert epochs[-1]["final_epochs"] == 1
    assert {"diffusion_loss", "reward_end_loss", "policy_loss"} <= set(epochs[-1])
