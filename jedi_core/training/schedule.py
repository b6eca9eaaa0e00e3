"""The schedule of a whole run in numbers: its epochs and updates, and how long what is left will take.

Used by the trainer's progress display (the time left counts updates, not env steps: at paper scale the
updates are nearly all of it) and by the benchmarks' projections.
"""

from __future__ import annotations

from jedi_core.config import Config


def schedule_epochs(cfg: Config) -> int:
    """Epochs in a full run of ``cfg``: collecting epochs after the random steps, then training-only ones.

    The random steps are counted at ``initial_random_steps``; a sparse-reward game that needs more of them
    (``initial_minority_rewards``) has as many fewer collecting epochs."""
    train = cfg.training
    collecting = -(-max(cfg.env_steps - train.initial_random_steps, 0) // train.env_steps_per_epoch)
    return collecting + train.final_training_epochs


def total_updates(cfg: Config) -> tuple[int, int]:
    """World-model and actor-critic updates in a full run (with separate world-model updates, each diffusion
    update is followed by a reward/end update: those count once here)."""
    train = cfg.training
    epochs = schedule_epochs(cfg)
    world_model = train.first_epoch_world_model_updates + (epochs - 1) * train.world_model_updates
    actor_critic = train.first_epoch_actor_critic_updates + (epochs - 1) * train.actor_critic_updates
    return world_model, actor_critic


def hours_left(cfg: Config, counters: dict[str, int], world_model_rate: float,
               actor_critic_rate: float | None) -> float:
    """Hours the updates still to run take at these rates (updates per second; a world-model update is a
    diffusion and a reward/end update when they are separate). Without an actor-critic rate yet, the
    world-model updates alone: a lower bound."""
    world_model, actor_critic = total_updates(cfg)
    seconds = max(world_model - counters["world_model_updates"], 0) / world_model_rate
    if actor_critic_rate:
        seconds += max(actor_critic - counters["actor_critic_updates"], 0) / actor_critic_rate
    return seconds / 3600
