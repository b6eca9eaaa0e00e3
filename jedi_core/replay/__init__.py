"""The replay: uint8 episodes in memory and on disk, padded segment windows, and every sampling rule.

Conventions (one place, used everywhere):

* An episode of ``T`` steps holds ``T + 1`` frames: ``obs[t]`` is the frame seen before ``actions[t]``,
  and ``obs[t + 1]`` the frame it led to, so every transition, the last one included, is kept.
* Frames are stored as ``uint8`` ``(H, W, 3)``: 100k Atari frames take 1.23 GB. They become floats in
  ``[-1, 1]`` only on the device, in :meth:`Batch.to_torch`.
* ``terminated`` is the real game over; ``life_loss`` marks a lost life. Either ends a *training*
  segment (``Batch.ends``), while evaluation plays on through lost lives.
* Every way the method draws from the replay lives in :mod:`~jedi_core.replay.sampling`: recency-weighted
  episodes, the world model's training windows and the imagination's starting contexts.
* On disk a replay is a folder of checksummed ``.npz`` files and an index, written atomically
  (:mod:`jedi_core.replay.buffer`).

The modules: :mod:`~jedi_core.replay.episode` (episodes, segments, batches), :mod:`~jedi_core.replay.sampling`
(the sampling rules) and :mod:`~jedi_core.replay.buffer` (the buffer and its disk format).
"""

from jedi_core.replay.buffer import REPLAY_INDEX, ReplayBuffer, ReplayFileError
from jedi_core.replay.episode import Batch, Episode, Segment, TorchBatch, frames_to_float
from jedi_core.replay.sampling import (
    RECENCY_GROUP_WEIGHTS,
    recency_weights,
    sample_contexts,
    sample_diffusion_batch,
    sample_reward_end_batch,
    sample_windows,
)

__all__ = ["RECENCY_GROUP_WEIGHTS", "REPLAY_INDEX", "Batch", "Episode", "ReplayBuffer", "ReplayFileError",
           "Segment", "TorchBatch", "frames_to_float", "recency_weights", "sample_contexts",
           "sample_diffusion_batch", "sample_reward_end_batch", "sample_windows"]
