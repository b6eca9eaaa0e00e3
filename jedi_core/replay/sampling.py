"""Every rule by which the method draws from the replay.

* :func:`recency_weights`: which episode, DIAMOND's recency weighting (the newest quarter 70% by default);
* :func:`sample_windows`: where a window sits in its episode (DIAMOND's rule), for the world model's
  training batches (:func:`sample_diffusion_batch`, :func:`sample_reward_end_batch`) and the real contexts
  imagination starts from (:func:`sample_contexts`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from jedi_core.config import ReplayConfig
from jedi_core.replay.episode import Batch

if TYPE_CHECKING:
    from jedi_core.config import WorldModelConfig
    from jedi_core.replay.buffer import ReplayBuffer

#: DIAMOND's sampling weight of each quarter of the episodes, oldest first (the config's default).
RECENCY_GROUP_WEIGHTS = ReplayConfig().sample_weights


def recency_weights(episode_lengths: Sequence[int], group_weights: Sequence[float] = RECENCY_GROUP_WEIGHTS
                    ) -> np.ndarray:
    """Probability of sampling each episode (DIAMOND's recency weighting).

    Episodes, oldest first, are split into ``len(group_weights)`` contiguous groups of ``N // groups``
    episodes, the ``N % groups`` left over going to the newest group (as DIAMOND does); each group's weight
    is shared equally by its episodes, so the newest quarter gets 70% of the samples by default. With
    fewer episodes than groups every *step* is equally likely instead. Empty episodes get 0.
    """
    lengths = np.asarray(episode_lengths, dtype=np.float64)
    probs = np.zeros(len(lengths))
    usable = np.flatnonzero(lengths > 0)
    if len(usable) == 0:
        raise ValueError("the replay holds no transition yet: collect some steps before sampling")
    if len(usable) < len(group_weights):
        probs[usable] = lengths[usable]
    else:
        size = len(usable) // len(group_weights)
        starts = [group * size for group in range(len(group_weights))]
        ends = [*starts[1:], len(usable)]  # the newest group also takes the leftovers
        for start, end, weight in zip(starts, ends, group_weights, strict=True):
            probs[usable[start:end]] = weight / (end - start)
    if probs.sum() <= 0:
        raise ValueError(f"group weights {tuple(group_weights)} give every episode probability 0")
    return probs / probs.sum()


def sample_windows(replay: ReplayBuffer, batch_size: int, num_steps: int, rng: np.random.Generator,
                   group_weights: Sequence[float] = RECENCY_GROUP_WEIGHTS, past_end: bool = False,
                   context: bool = False) -> Batch:
    """``batch_size`` windows of ``num_steps`` transitions, placed as DIAMOND's batch sampler places them.

    An episode is drawn by :func:`recency_weights`, then a step of it uniformly, then a window holding it:

    * ``past_end`` (reward/end windows): the step is a transition, at a uniform position of the window, which
      may run past either end of the episode (padded);
    * otherwise (diffusion windows, contexts): the step is a frame, and the window's last frame lies a
      uniform 0..num_steps frames after it but inside the episode, so windows lean towards its end and are
      padded only before its start. With ``context`` the window is a context imagination goes on from, so it
      never ends on the last frame of an episode that ended in a game over or a lost life.
    """
    lengths = [episode.num_steps for episode in replay.episodes]
    chosen = rng.choice(len(lengths), size=batch_size, p=recency_weights(lengths, group_weights))
    segments = []
    for index in chosen:
        episode = replay.episodes[index]
        if past_end:
            start = int(rng.integers(episode.num_steps)) - int(rng.integers(num_steps))
        else:
            frames = episode.num_steps + 1 - int(context and episode.ends_in_a_loss)
            last = min(frames - 1, int(rng.integers(frames)) + int(rng.integers(num_steps + 1)))
            start = last - num_steps
        segments.append(episode.segment(start, num_steps, pad_after=past_end))
    return Batch.stack(segments)


def sample_diffusion_batch(replay: ReplayBuffer, cfg: WorldModelConfig, rng: np.random.Generator,
                           group_weights: Sequence[float] = RECENCY_GROUP_WEIGHTS) -> Batch:
    """A diffusion update's batch (``WorldModel.diffusion_loss``): ``batch_size`` windows of
    ``context_length + num_targets`` frames inside their episodes, so every target is a real frame."""
    steps = cfg.denoiser.context_length + cfg.num_targets - 1
    return sample_windows(replay, cfg.batch_size, steps, rng, group_weights)


def sample_reward_end_batch(replay: ReplayBuffer, cfg: WorldModelConfig, rng: np.random.Generator,
                            group_weights: Sequence[float] = RECENCY_GROUP_WEIGHTS) -> Batch:
    """A reward/end update's batch (``WorldModel.reward_end_loss``): ``batch_size`` windows of
    ``segment_steps`` transitions that may run past the episode's end, so a terminal transition can sit at
    any position of the window, as it does along an imagined rollout."""
    return sample_windows(replay, cfg.batch_size, cfg.segment_steps, rng, group_weights, past_end=True)


def sample_contexts(replay: ReplayBuffer, batch_size: int, context_length: int, rng: np.random.Generator,
                    group_weights: Sequence[float], device: torch.device | str) -> tuple[Tensor, Tensor]:
    """Imagination's starting points: (B, L, 3, H, W) float frames and the (B, L - 1) actions between them.

    A context never ends on the frame a game over or a lost life left: imagination cannot go on from it.
    """
    batch = sample_windows(replay, batch_size, context_length - 1, rng, group_weights, context=True)
    on_device = batch.to_torch(device)
    return on_device.obs, on_device.actions
