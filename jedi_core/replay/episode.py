"""Episodes as they are collected, and the windows cut from them: segments, batches, and frames on the device.

An episode of ``T`` steps holds ``T + 1`` frames: ``obs[t]`` is the frame seen before ``actions[t]``, and
``obs[t + 1]`` the frame it led to. Frames stay ``uint8`` ``(H, W, 3)`` until :meth:`Batch.to_torch` moves
them to the device, where :func:`frames_to_float` makes them ``(3, H, W)`` floats in ``[-1, 1]``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


class Episode:
    """One episode, growing step by step while it is collected (amortised doubling, trimmed when done)."""

    def __init__(self, first_obs: np.ndarray, capacity: int = 256):
        first_obs = np.asarray(first_obs)
        if first_obs.dtype != np.uint8 or first_obs.ndim != 3:
            raise ValueError(f"frames must be uint8 (H, W, C) arrays, "
                             f"got {first_obs.dtype} {first_obs.shape}")
        capacity = max(1, capacity)
        self._obs = np.empty((capacity + 1, *first_obs.shape), np.uint8)
        self._obs[0] = first_obs
        self._actions = np.zeros(capacity, np.int64)
        self._rewards = np.zeros(capacity, np.float32)
        self._terminated = np.zeros(capacity, bool)
        self._life_loss = np.zeros(capacity, bool)
        self.num_steps = 0
        self.truncated = False
        self.finished = False

    @classmethod
    def from_arrays(cls, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, terminated: np.ndarray,
                    life_loss: np.ndarray, truncated: bool = False, finished: bool = True) -> Episode:
        """An episode from whole arrays (``obs`` has one more entry than the others)."""
        num_steps = len(actions)
        if len(obs) != num_steps + 1 or not (len(rewards) == len(terminated) == len(life_loss) == num_steps):
            raise ValueError(f"inconsistent episode arrays: {len(obs)} frames for {num_steps} actions, "
                             f"{len(rewards)} rewards, {len(terminated)} terminated, "
                             f"{len(life_loss)} life_loss "
                             "(need frames = steps + 1)")
        episode = cls(obs[0], capacity=0)
        episode._obs = np.ascontiguousarray(obs, dtype=np.uint8)
        episode._actions = np.asarray(actions, np.int64)
        episode._rewards = np.asarray(rewards, np.float32)
        episode._terminated = np.asarray(terminated, bool)
        episode._life_loss = np.asarray(life_loss, bool)
        episode.num_steps, episode.truncated, episode.finished = num_steps, bool(truncated), bool(finished)
        return episode

    def append(self, action: int, reward: float, next_obs: np.ndarray, terminated: bool = False,
               truncated: bool = False, life_loss: bool = False) -> None:
        """Record one transition; ``terminated`` or ``truncated`` finishes the episode."""
        if self.finished:
            raise RuntimeError("this episode is finished; start a new one for the next reset")
        if self.num_steps == len(self._actions):
            self._grow()
        t = self.num_steps
        self._obs[t + 1] = next_obs
        self._actions[t], self._rewards[t] = action, reward
        self._terminated[t], self._life_loss[t] = terminated, life_loss
        self.num_steps = t + 1
        if terminated or truncated:
            self.truncated, self.finished = bool(truncated and not terminated), True
            self._trim()

    def finish_at_life_loss(self) -> None:
        """End the episode at the life its last step lost (DIAMOND's training episodes are single lives)."""
        if not (self.num_steps and self.life_loss[-1]):
            raise ValueError("finish_at_life_loss: the episode's last step did not lose a life")
        if not self.finished:
            self.finished = True
            self._trim()

    def finish_truncated(self) -> None:
        """End a growing episode where it stands (e.g. its emulator is gone after a restart)."""
        if not self.finished:
            self.truncated, self.finished = True, True
            self._trim()

    def _grow(self) -> None:
        capacity = max(2 * len(self._actions), 1)
        self._obs = _resized(self._obs, capacity + 1)
        for name in ("_actions", "_rewards", "_terminated", "_life_loss"):
            setattr(self, name, _resized(getattr(self, name), capacity))

    def _trim(self) -> None:
        # Free the doubling slack once the episode can no longer grow.
        self._obs = self._obs[: self.num_steps + 1].copy()
        for name in ("_actions", "_rewards", "_terminated", "_life_loss"):
            setattr(self, name, getattr(self, name)[: self.num_steps].copy())

    obs = property(lambda self: self._obs[: self.num_steps + 1], doc="(T+1, H, W, C) uint8 frames")
    actions = property(lambda self: self._actions[: self.num_steps], doc="(T,) int64")
    rewards = property(lambda self: self._rewards[: self.num_steps], doc="(T,) float32, unclipped")
    terminated = property(lambda self: self._terminated[: self.num_steps], doc="(T,) bool: game over")
    life_loss = property(lambda self: self._life_loss[: self.num_steps], doc="(T,) bool: a life was lost")

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self._obs, self._actions, self._rewards, self._terminated,
                                      self._life_loss))

    @property
    def ends_in_a_loss(self) -> bool:
        """Whether the last step was a game over or a lost life (its frame is where the episode ends)."""
        return self.num_steps > 0 and bool(self.terminated[-1] or self.life_loss[-1])

    @property
    def total_reward(self) -> float:
        return float(self.rewards.sum())

    def segment(self, start: int, num_steps: int, pad_after: bool = False) -> Segment:
        """Transitions ``start .. start + num_steps - 1`` with their ``num_steps + 1`` frames.

        ``start`` may be negative: steps before the episode start are zero frames, action 0, reward 0,
        with ``mask_padding`` False. Steps past the end are padded the same way only if ``pad_after``.
        """
        if num_steps < 1:
            raise ValueError(f"a segment needs at least one step, got num_steps={num_steps}")
        stop = start + num_steps
        if stop < 0 or start > self.num_steps:
            raise ValueError(f"segment [{start}, {stop}) holds no frame of this {self.num_steps}-step "
                             "episode")
        if stop > self.num_steps and not pad_after:
            raise ValueError(f"segment [{start}, {stop}) runs past the episode's {self.num_steps} steps; "
                             "pass pad_after=True to pad it")
        frames = np.zeros((num_steps + 1, *self._obs.shape[1:]), np.uint8)
        mask = np.zeros(num_steps + 1, bool)
        lo, hi = max(start, 0), min(stop + 1, self.num_steps + 1)  # frame range inside the episode
        frames[lo - start: hi - start] = self._obs[lo:hi]
        mask[lo - start: hi - start] = True
        step_hi = min(stop, self.num_steps)
        steps = {}
        for name, dtype in (("actions", np.int64), ("rewards", np.float32), ("terminated", bool),
                            ("life_loss", bool)):
            values = np.zeros(num_steps, dtype)
            values[lo - start: step_hi - start] = getattr(self, name)[lo:step_hi]
            steps[name] = values
        return Segment(obs=frames, mask_padding=mask, **steps)


def _resized(array: np.ndarray, length: int) -> np.ndarray:
    out = np.zeros((length, *array.shape[1:]), array.dtype)
    out[: len(array)] = array
    return out


# ----------------------------------------------------------------------------------------------
# Segments and batches


@dataclass
class Segment:
    """A window of ``L`` transitions: ``obs`` has ``L + 1`` frames; ``mask_padding`` is False on padding."""

    obs: np.ndarray  # (L+1, H, W, C) uint8
    actions: np.ndarray  # (L,) int64
    rewards: np.ndarray  # (L,) float32
    terminated: np.ndarray  # (L,) bool
    life_loss: np.ndarray  # (L,) bool
    mask_padding: np.ndarray  # (L+1,) bool, per frame


@dataclass
class Batch:
    """Segments stacked on a leading batch axis (numpy, uint8 frames)."""

    obs: np.ndarray  # (B, L+1, H, W, C) uint8
    actions: np.ndarray  # (B, L)
    rewards: np.ndarray  # (B, L)
    terminated: np.ndarray  # (B, L)
    life_loss: np.ndarray  # (B, L)
    mask_padding: np.ndarray  # (B, L+1)

    @classmethod
    def stack(cls, segments: Sequence[Segment]) -> Batch:
        names = [f.name for f in dataclasses.fields(cls)]
        return cls(**{name: np.stack([getattr(s, name) for s in segments]) for name in names})

    @property
    def ends(self) -> np.ndarray:
        """The training termination target: game over or a lost life."""
        return self.terminated | self.life_loss

    def to_torch(self, device: torch.device | str = "cpu") -> TorchBatch:
        """Move to ``device`` as uint8 (4x less traffic) and convert frames to float there.

        To a GPU the copy goes through pinned memory, so it is truly asynchronous: the host goes on to
        assemble the next batch while this one is copied and trained on.
        """
        pin = torch.device(device).type == "cuda"

        def move(array: np.ndarray) -> torch.Tensor:
            tensor = torch.from_numpy(np.ascontiguousarray(array))
            return (tensor.pin_memory() if pin else tensor).to(device, non_blocking=True)

        mask_padding = move(self.mask_padding)
        # Padding frames become 0.0, mid-grey, as DIAMOND pads in float space (uint8 0 would be black, -1).
        obs = frames_to_float(move(self.obs)).masked_fill(~mask_padding[..., None, None, None], 0.0)
        return TorchBatch(obs=obs, actions=move(self.actions), rewards=move(self.rewards),
                          ends=move(self.ends), mask_padding=mask_padding)


@dataclass
class TorchBatch:
    """A batch ready for the models: ``obs`` is float (B, L+1, C, H, W) in [-1, 1]."""

    obs: Tensor  # (B, L+1, C, H, W) float
    actions: Tensor  # (B, L) int64
    rewards: Tensor  # (B, L) float32
    ends: Tensor  # (B, L) bool: game over or a lost life
    mask_padding: Tensor  # (B, L+1) bool, per frame

    def tensors(self) -> list[Tensor]:
        """The fields in order, a CUDA graph's inputs: ``TorchBatch(*batch.tensors())`` rebuilds it."""
        return [self.obs, self.actions, self.rewards, self.ends, self.mask_padding]

    @property
    def transition_mask(self) -> Tensor:
        """(B, L): True where both frames of a transition are real (its action was really taken)."""
        return self.mask_padding[:, :-1] & self.mask_padding[:, 1:]


def frames_to_float(frames: torch.Tensor) -> torch.Tensor:
    """uint8 ``(..., H, W, C)`` frames -> float ``(..., C, H, W)`` in ``[-1, 1]`` (DIAMOND's convention)."""
    return frames.movedim(-1, -3).float().div(127.5).sub(1.0)


