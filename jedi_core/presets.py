"""The named presets (``smoke``, ``smoke_diamond``, ``toy``, ``cpu``, ``cpu_diamond``, ``colab``,
``atari100k``, ``diamond``) and :func:`make_config`, which builds one with overrides.

A preset is a function returning a :class:`~jedi_core.config.Config`. Presets change numbers, never code
paths: ``atari100k`` is the paper's defaults, the others change sizes, schedules and learning rates, and the
CPU presets set the one documented ablation, ``world_model.reward_end.next_input``::

    cfg = make_config("atari100k", ["env.game=Pong", "seed=3"])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from jedi_core.config import (
    ActorCriticConfig,
    Config,
    DenoiserConfig,
    EncoderConfig,
    EnvConfig,
    RewardEndConfig,
    TrainingConfig,
    WorldModelConfig,
)
from jedi_core.configlib import ConfigError, apply_overrides, did_you_mean, validate

# ----------------------------------------------------------------------------------------------
# Presets


def atari100k() -> Config:
    """Paper scale: the Atari100k protocol and budget."""
    return Config(preset="atari100k")


def diamond() -> Config:
    """The pixel-diffusion baseline (DIAMOND) on the same protocol, for side-by-side comparison.

    DIAMOND's 4-level U-Net on 64x64 frames, its CNN reward/end model, and its autoregressive step: the
    second target always conditions on the (detached, 8-bit) first prediction.
    """
    cfg = atari100k()
    world_model = dataclasses.replace(
        cfg.world_model, switch_prob=1.0, switch_grad=False,
        denoiser=dataclasses.replace(cfg.world_model.denoiser, channels=(64, 64, 64, 64), depths=(2, 2, 2, 2),
                                     attention=(0, 0, 0, 0)),
        reward_end=RewardEndConfig(channels=(32, 32, 32, 32), depths=(2, 2, 2, 2), attention=(0, 0, 0, 0)))
    actor_critic = dataclasses.replace(cfg.actor_critic, channels=(32, 32, 64, 64), downsample=(1, 1, 1, 1))
    return dataclasses.replace(cfg, preset="diamond", method="diamond", world_model=world_model,
                               actor_critic=actor_critic)


def colab() -> Config:
    """One Colab GPU in a few hours: the full protocol on a reduced step budget."""
    return dataclasses.replace(atari100k(), preset="colab", env_steps=25_000, eval_episodes=20)


def smoke() -> Config:
    """A real Atari game end to end in about a minute on a CPU: every code path, tiny numbers."""
    world_model = WorldModelConfig(
        encoder=EncoderConfig(channels=(8, 8, 8, 4)),
        denoiser=DenoiserConfig(channels=(64,), depths=(2,), cond_channels=64),
        reward_end=RewardEndConfig(channels=(16,), depths=(1,), cond_channels=16, lstm_dim=32),
        segment_steps=7, probe_channels=(16, 16, 8), batch_size=8)
    actor_critic = ActorCriticConfig(channels=(8, 16), lstm_dim=32, horizon=5, batch_size=8)
    # A fixed 100 random steps: the 300-step schedule has no room for the minority-reward rule.
    training = TrainingConfig(initial_random_steps=100, initial_minority_rewards=0, env_steps_per_epoch=50,
                              world_model_updates=5, actor_critic_updates=5,
                              first_epoch_world_model_updates=10, first_epoch_actor_critic_updates=5,
                              final_training_epochs=1, eval_every_epochs=2,
                              periodic_eval_episodes=1, checkpoint_every_epochs=1)
    return dataclasses.replace(atari100k(), preset="smoke", env_steps=300, eval_episodes=1,
                               env=dataclasses.replace(EnvConfig(), max_episode_frames=2_000),
                               world_model=world_model, actor_critic=actor_critic, training=training)


def smoke_diamond() -> Config:
    """The pixel baseline at smoke size (tests and CI)."""
    cfg = diamond()
    world_model = dataclasses.replace(
        smoke().world_model, switch_prob=1.0, switch_grad=False,
        denoiser=DenoiserConfig(channels=(16, 16), depths=(1, 1), attention=(0, 0), cond_channels=32),
        reward_end=RewardEndConfig(channels=(8, 8, 8, 8), depths=(1, 1, 1, 1), attention=(0, 0, 0, 0),
                                   cond_channels=16, lstm_dim=32))
    actor_critic = dataclasses.replace(smoke().actor_critic, channels=(8, 8, 16, 16), downsample=(1, 1, 1, 1))
    return dataclasses.replace(smoke(), preset="smoke_diamond", method=cfg.method, world_model=world_model,
                               actor_critic=actor_critic)


def toy() -> Config:
    """The toy Catch game, learnt on a 2-core CPU in minutes (the learning test and the notebooks).

    Smoke-sized models with a smaller denoiser and reward/end tower, learning rates 10-20x the paper's (short
    runs), a first epoch long enough for the reward model to learn what a catch looks like from random play
    (an actor-critic trained on a reward model that has not yet learnt catches settles on a poor policy), and
    a 10x entropy bonus that keeps the policy exploring while it recovers from such a start.
    """
    cfg = smoke()
    world_model = dataclasses.replace(
        cfg.world_model, lr=1e-3, warmup_steps=10, segment_steps=5, batch_size=16,
        denoiser=dataclasses.replace(cfg.world_model.denoiser, channels=(32,), depths=(1,), cond_channels=32),
        # 256 LSTM inputs, not 1,024: at lr 1e-3 a wider input keeps the reward model on the class prior.
        reward_end=dataclasses.replace(cfg.world_model.reward_end, channels=(4,)))
    actor_critic = dataclasses.replace(cfg.actor_critic, horizon=7, batch_size=16, lr=2e-3, warmup_steps=10,
                                       entropy_weight=1e-2)
    training = dataclasses.replace(cfg.training, initial_random_steps=1_000, env_steps_per_epoch=100,
                                   world_model_updates=20, actor_critic_updates=20,
                                   first_epoch_world_model_updates=500, first_epoch_actor_critic_updates=50,
                                   final_training_epochs=0, eval_every_epochs=2, periodic_eval_episodes=20,
                                   checkpoint_every_epochs=5)
    return dataclasses.replace(cfg, preset="toy", env_steps=6_000, eval_episodes=100,
                               env=dataclasses.replace(cfg.env, kind="toy"), world_model=world_model,
                               actor_critic=actor_critic, training=training)


def cpu() -> Config:
    """Real Atari games learnt on a CPU: about an hour a run on one thread (two side by side on 2 cores).

    A fifth of the Atari100k budget in env steps (20,000) and 2,890 world-model and 2,090 actor-critic
    updates (``atari100k``: about 410,000 of each), with near smoke-sized models at the toy game's learning
    rates: a 16-channel latent, a one-block denoiser, world-model batches of 16 (at 8 the reward/end model
    stayed on the class prior) and actor-critic batches of 8.
    """
    cfg = smoke()
    # The one ablation: the reward/end model trains on the denoiser's samples of x_t+1, what imagination feeds
    # it, so that it finds in imagined frames the small rewards it learnt on real ones.
    reward_end = dataclasses.replace(cfg.world_model.reward_end, next_input="sampled")
    denoiser = dataclasses.replace(cfg.world_model.denoiser, channels=(48,), depths=(1,))
    world_model = dataclasses.replace(
        cfg.world_model, lr=1e-3, warmup_steps=50, segment_steps=8, batch_size=16, reward_end=reward_end,
        encoder=EncoderConfig(channels=(8, 16, 16, 16)), denoiser=denoiser,
        # The probe lets notebooks draw what a run imagines (it trains on detached latents).
        decoder_probe=True)
    actor_critic = dataclasses.replace(cfg.actor_critic, horizon=10, batch_size=8, lr=1e-3, warmup_steps=50,
                                       entropy_weight=3e-3)
    # DIAMOND's minority-reward rule scaled to the budget: sparse games start with some rewards to learn from.
    training = dataclasses.replace(
        cfg.training, initial_random_steps=2_000, initial_minority_rewards=20, initial_random_steps_max=4_000,
        env_steps_per_epoch=100, world_model_updates=10, actor_critic_updates=10,
        first_epoch_world_model_updates=1_000, first_epoch_actor_critic_updates=200, final_training_epochs=10,
        eval_every_epochs=40, periodic_eval_episodes=8, checkpoint_every_epochs=5)
    return dataclasses.replace(cfg, preset="cpu", env_steps=20_000, eval_episodes=100,
                               env=dataclasses.replace(cfg.env, max_episode_frames=108_000),
                               world_model=world_model, actor_critic=actor_critic, training=training)


def cpu_diamond() -> Config:
    """The pixel baseline on :func:`cpu`'s budget and schedule, for the side-by-side comparison."""
    cfg = cpu()
    pixel = smoke_diamond()
    # DIAMOND's four U-Net levels, so its middle self-attention sees 8x8 positions, not smoke's 32x32.
    denoiser = dataclasses.replace(pixel.world_model.denoiser, channels=(16, 16, 16, 16), depths=(1, 1, 1, 1),
                                   attention=(0, 0, 0, 0))
    # The same reward/end training inputs as JEDI's, so that the two differ only in where they diffuse.
    reward_end = dataclasses.replace(pixel.world_model.reward_end,
                                     next_input=cfg.world_model.reward_end.next_input)
    world_model = dataclasses.replace(
        pixel.world_model, denoiser=denoiser, reward_end=reward_end, lr=cfg.world_model.lr,
        warmup_steps=cfg.world_model.warmup_steps, segment_steps=cfg.world_model.segment_steps,
        batch_size=cfg.world_model.batch_size)
    actor_critic = dataclasses.replace(cfg.actor_critic, channels=pixel.actor_critic.channels,
                                       downsample=pixel.actor_critic.downsample)
    return dataclasses.replace(cfg, preset="cpu_diamond", method=pixel.method, world_model=world_model,
                               actor_critic=actor_critic)


PRESETS: dict[str, Callable[[], Config]] = {
    "smoke": smoke,
    "smoke_diamond": smoke_diamond,
    "toy": toy,
    "cpu": cpu,
    "cpu_diamond": cpu_diamond,
    "colab": colab,
    "atari100k": atari100k,
    "diamond": diamond,
}


# ----------------------------------------------------------------------------------------------
# Building


def make_config(preset: str = "atari100k", overrides: Sequence[str] = ()) -> Config:
    """Build a preset, apply ``key=value`` overrides, validate every field, return the config."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}"
                          + did_you_mean(preset, PRESETS))
    cfg = apply_overrides(PRESETS[preset](), overrides)
    validate(cfg)
    if cfg.env.kind == "atari":  # "breakout" and "Breakout" are one game, one run folder, one resumable run
        from jedi_core.envs.games import canonical_game_name

        env = dataclasses.replace(cfg.env, game=canonical_game_name(cfg.env.game))
        cfg = dataclasses.replace(cfg, env=env)
    return cfg
