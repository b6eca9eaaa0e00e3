"""How long a run will take, said before its first update.

A few updates of each kind are timed on a copy of the agent (fresh optimisers, a copy of the batch
generator, the random state restored after: the run trains as it would without them), and the untrained
agent's evaluation gives the cost of an episode; both are scaled to the preset's schedule
(``training.schedule``).
"""

from __future__ import annotations

import copy
import dataclasses
import time
from typing import TYPE_CHECKING

import torch

from jedi_core.training.schedule import schedule_epochs, total_updates
from jedi_core.training.updates import draw_inputs, make_updates

if TYPE_CHECKING:
    from jedi_core.training.loop import Trainer


@dataclasses.dataclass(frozen=True)
class Projection:
    """A whole run's projected wall time, in parts."""

    world_model_rate: float  # world-model updates (a diffusion and a reward/end update) per second
    actor_critic_rate: float  # actor-critic updates per second
    episode_seconds: float  # one evaluation episode
    update_hours: float
    evaluation_hours: float

    @property
    def hours(self) -> float:
        return self.update_hours + self.evaluation_hours


def time_updates(trainer: Trainer, calls: int = 2) -> tuple[float, float]:
    """World-model and actor-critic updates per second on ``trainer``'s device and replay: one warm-up and
    ``calls`` timed updates of each kind on a copy of its agent, eagerly (``cuda_graphs`` goes faster)."""
    cfg, device = trainer.cfg, trainer.device
    agent, rng = copy.deepcopy(trainer.agent), copy.deepcopy(trainer.rng)
    updates = make_updates(agent, agent.world_model.make_optimizers(), agent.make_actor_critic_optimizer(),
                           dataclasses.replace(cfg.performance, cuda_graphs=False))
    cuda = device.type == "cuda"
    seconds = {}
    with torch.random.fork_rng(devices=[device] if cuda else []):
        for kind in ("diffusion", "reward_end", "actor_critic"):
            for timed in (False, True):
                if cuda:
                    torch.cuda.synchronize(device)
                started = time.perf_counter()
                for _ in range(calls if timed else 1):
                    getattr(updates, kind)(*draw_inputs(kind, cfg, trainer.replay, rng, device),
                                           check_finite=False)
                if cuda:
                    torch.cuda.synchronize(device)
            seconds[kind] = (time.perf_counter() - started) / calls
    return 1 / (seconds["diffusion"] + seconds["reward_end"]), 1 / seconds["actor_critic"]


def project(trainer: Trainer, episode_seconds: float) -> Projection:
    """The whole run of ``trainer``, from its start, at its measured update rates and ``episode_seconds``."""
    cfg, train = trainer.cfg, trainer.cfg.training
    world_model_rate, actor_critic_rate = time_updates(trainer)
    world_model, actor_critic = total_updates(cfg)
    evaluations = schedule_epochs(cfg) // train.eval_every_epochs if train.eval_every_epochs else 0
    # The periodic evaluations, the final one and the untrained agent's (on the final one's episodes).
    episodes = evaluations * train.periodic_eval_episodes + 2 * cfg.eval_episodes
    return Projection(world_model_rate, actor_critic_rate, episode_seconds,
                      (world_model / world_model_rate + actor_critic / actor_critic_rate) / 3600,
                      episodes * episode_seconds / 3600)
