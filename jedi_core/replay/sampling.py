"""Every rule by which the method draws from the replay.

* :func:`recency_weights`: which episode, DIAMOND's recency weighting (the newest quarter 70% by default);
* :func:`sample_training_batch`: the world model's training windows;
* :func:`sample_contexts`: the real contexts imagination starts from.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from jedi_core.config import ReplayConfig

if TYPE_CHECKING:
    from jedi_core.config import WorldModelConfig
    from jedi_core.replay.buffer import ReplayBuffer
    from jedi_core.replay.episode import Batch

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


def sample_training_batch(replay: ReplayBuffer, cfg: WorldModelConfig, rng: np.random.Generator,
                          group_weights: Sequence[float] = RECENCY_GROUP_WEIGHTS, part: str = "all") -> Batch:
    """A batch of ``batch_size`` windows for a world-model update of ``part`` (``WorldModel.forward``).

    A reward/end or joint update reads windows of ``segment_steps`` transitions, padded on both sides:
    they may run past an episode's end (as DIAMOND's reward/end windows do), so a terminal transition can
    sit at any position of the window, as it does along an imagined rollout. With windows that end inside
    the episode it could only be the last one, and the reward/end LSTM learns that position instead of
    looking at the frames. Diffusion targets that land on such padding are masked out of the loss.

    A diffusion update reads DIAMOND's denoiser windows: just its ``context_length + num_targets`` frames,
    ending inside the episode (padded only before its start), so every target is a real frame.
    """
    if part == "diffusion":
        steps = cfg.denoiser.context_length + cfg.num_targets - 1
        return replay.sample(cfg.batch_size, steps, rng, group_weights, pad_after=False)
    return replay.sample(cfg.batch_size, cfg.segment_steps, rng, group_weights, pad_after=True)


def sample_contexts(replay: ReplayBuffer, batch_size: int, context_length: int, rng: np.random.Generator,
                    group_weights: Sequence[float], device: torch.device | str) -> tuple[Tensor, Tensor]:
    """Imagination's starting points: (B, L, 3, H, W) float frames and the (B, L - 1) actions between them.

    A context never ends on a terminal frame: the world model has never seen what follows one.
    """
    batch = replay.sample(batch_size, context_length - 1, rng, group_weights, avoid_terminal_end=True)
    on_device = batch.to_torch(device)
    return on_device.obs, on_device.actions
