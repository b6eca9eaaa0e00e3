"""Replay storage: uint8 episodes in memory and on disk, segment windows with padding masks, recency weights.

Conventions (one place, used everywhere):

* An episode of ``T`` steps holds ``T + 1`` frames: ``obs[t]`` is the frame seen before ``actions[t]``,
  and ``obs[t + 1]`` the frame it led to, so every transition, the last one included, is kept.
* Frames are stored as ``uint8`` ``(H, W, 3)``: 100k Atari frames take 1.23 GB. They become floats in
  ``[-1, 1]`` only on the device, in :meth:`Batch.to_torch`.
* ``terminated`` is the real game over; ``life_loss`` marks a lost life. Either ends a *training*
  segment (``Batch.ends``), while evaluation plays on through lost lives (DESIGN §3).
* On disk a replay is a folder: one ``.npz`` per episode and a ``replay.json`` index with each file's
  size and CRC-32. Files are written to a temporary name and renamed, the index last, so a crash at any
  moment leaves the previous complete replay; a damaged file is refused with a clear error.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from jedi_core.io import atomic_write_bytes

RECENCY_GROUP_WEIGHTS = (0.1, 0.1, 0.1, 0.7)  # DIAMOND's sampling weight of each quarter of the episodes, oldest first

REPLAY_INDEX = "replay.json"
REPLAY_FORMAT = "jedi-replay"
REPLAY_VERSION = 1
_ARRAYS = ("obs", "actions", "rewards", "terminated", "life_loss")


class ReplayFileError(ValueError):
    """A replay folder or file that cannot be loaded as it is; the message says which and why."""


# ----------------------------------------------------------------------------------------------
# Episodes


class Episode:
    """One episode, growing step by step while it is collected (amortised doubling, trimmed when done)."""

    def __init__(self, first_obs: np.ndarray, capacity: int = 256):
        first_obs = np.asarray(first_obs)
        if first_obs.dtype != np.uint8 or first_obs.ndim != 3:
            raise ValueError(f"frames must be uint8 (H, W, C) arrays, got {first_obs.dtype} {first_obs.shape}")
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
                             f"{len(rewards)} rewards, {len(terminated)} terminated, {len(life_loss)} life_loss "
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
        return sum(a.nbytes for a in (self._obs, self._actions, self._rewards, self._terminated, self._life_loss))

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
        if stop < 1 or start >= self.num_steps:
            raise ValueError(f"segment [{start}, {stop}) holds no step of this {self.num_steps}-step episode")
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
        return cls(**{f.name: np.stack([getattr(s, f.name) for s in segments]) for f in dataclasses.fields(cls)})

    @property
    def ends(self) -> np.ndarray:
        """The training termination target: game over or a lost life."""
        return self.terminated | self.life_loss

    @property
    def transition_mask(self) -> np.ndarray:
        """(B, L): True where both frames of a transition are real (its action was really taken)."""
        return self.mask_padding[:, :-1] & self.mask_padding[:, 1:]

    def to_torch(self, device: torch.device | str = "cpu") -> TorchBatch:
        """Move to ``device`` as uint8 (4x less traffic) and convert frames to float there.

        To a GPU the copy goes through pinned memory, so it is truly asynchronous: the host goes on to
        assemble the next batch while this one is copied and trained on.
        """
        pin = torch.device(device).type == "cuda"

        def move(array: np.ndarray) -> torch.Tensor:
            tensor = torch.from_numpy(np.ascontiguousarray(array))
            return (tensor.pin_memory() if pin else tensor).to(device, non_blocking=True)

        return TorchBatch(
            obs=frames_to_float(move(self.obs)), actions=move(self.actions), rewards=move(self.rewards),
            ends=move(self.ends), mask_padding=move(self.mask_padding))


@dataclass
class TorchBatch:
    """A batch ready for the models: ``obs`` is float (B, L+1, C, H, W) in [-1, 1]."""

    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    ends: torch.Tensor
    mask_padding: torch.Tensor


def frames_to_float(frames: torch.Tensor) -> torch.Tensor:
    """uint8 ``(..., H, W, C)`` frames -> float ``(..., C, H, W)`` in ``[-1, 1]`` (DIAMOND's convention)."""
    return frames.movedim(-1, -3).float().div(127.5).sub(1.0)


# ----------------------------------------------------------------------------------------------
# Sampling


def recency_weights(episode_lengths: Sequence[int], group_weights: Sequence[float] = RECENCY_GROUP_WEIGHTS
                    ) -> np.ndarray:
    """Probability of sampling each episode (DIAMOND's recency weighting).

    Episodes, oldest first, are split into ``len(group_weights)`` contiguous groups; each group's weight
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
        for group, weight in zip(np.array_split(usable, len(group_weights)), group_weights, strict=True):
            probs[group] = weight / len(group)
    if probs.sum() <= 0:
        raise ValueError(f"group weights {tuple(group_weights)} give every episode probability 0")
    return probs / probs.sum()


# ----------------------------------------------------------------------------------------------
# The replay buffer


class ReplayBuffer:
    """All episodes of a run, in collection order; the last ones may still be growing."""

    def __init__(self) -> None:
        self.episodes: list[Episode] = []
        self._saved: dict[int, dict] = {}  # episode index -> its index entry at the last save
        self._saved_dir: Path | None = None

    def new_episode(self, first_obs: np.ndarray) -> Episode:
        """Start an episode with its first frame; append steps to the returned object as they come."""
        episode = Episode(first_obs)
        self.episodes.append(episode)
        return episode

    def add_episode(self, episode: Episode) -> None:
        self.episodes.append(episode)

    def __len__(self) -> int:
        return len(self.episodes)

    @property
    def num_steps(self) -> int:
        return sum(e.num_steps for e in self.episodes)

    @property
    def nbytes(self) -> int:
        return sum(e.nbytes for e in self.episodes)

    def sample(self, batch_size: int, num_steps: int, rng: np.random.Generator,
               group_weights: Sequence[float] = RECENCY_GROUP_WEIGHTS, pad_after: bool = False,
               avoid_terminal_end: bool = False) -> Batch:
        """``batch_size`` windows of ``num_steps`` transitions from recency-weighted episodes.

        Without ``pad_after`` a window ends at a uniformly drawn step of its episode and is padded only
        before the start; with it, windows may also run past the end. ``avoid_terminal_end`` keeps windows
        from ending on a terminated episode's last frame (imagination cannot go on from a terminal state).
        """
        lengths = [e.num_steps for e in self.episodes]
        chosen = rng.choice(len(self.episodes), size=batch_size, p=recency_weights(lengths, group_weights))
        segments = []
        for index in chosen:
            length = lengths[index]
            if pad_after:
                start = int(rng.integers(1 - num_steps, length))
            else:
                last = length - 1 if avoid_terminal_end and length > 1 and self.episodes[index].terminated[-1] \
                    else length
                start = int(rng.integers(1, last + 1)) - num_steps
            segments.append(self.episodes[index].segment(start, num_steps, pad_after=pad_after))
        return Batch.stack(segments)

    # -- disk ---------------------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        """Write the replay to ``directory`` atomically; only episodes changed since the last save are rewritten."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self._saved_dir != directory.resolve():
            self._saved = {}
        entries = []
        for index, episode in enumerate(self.episodes):
            entry = self._saved.get(index)
            if entry is None or entry["num_steps"] != episode.num_steps or entry["finished"] != episode.finished:
                entry = _write_episode(directory, index, episode)
            entries.append(entry)
        index_data = {"format": REPLAY_FORMAT, "version": REPLAY_VERSION, "episodes": entries}
        atomic_write_bytes(directory / REPLAY_INDEX, json.dumps(index_data, indent=1).encode())
        # Only now, with the new index in place, are files of older saves unreferenced.
        keep = {entry["file"] for entry in entries}
        for path in list(directory.glob("episode_*.npz")) + list(directory.glob("*.tmp")):
            if path.name not in keep:
                path.unlink(missing_ok=True)
        self._saved, self._saved_dir = dict(enumerate(entries)), directory.resolve()
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> ReplayBuffer:
        """Load a replay folder written by :meth:`save`, checking every file's size and checksum."""
        directory = Path(directory)
        index_path = directory / REPLAY_INDEX
        if not index_path.is_file():
            raise FileNotFoundError(f"no replay in {directory}: {REPLAY_INDEX} is missing")
        try:
            index = json.loads(index_path.read_text())
            entries = index["episodes"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as error:
            raise ReplayFileError(f"{index_path} is damaged ({error}); the replay cannot be trusted") from error
        if index.get("format") != REPLAY_FORMAT or index.get("version") != REPLAY_VERSION:
            raise ReplayFileError(f"{index_path} is format {index.get('format')!r} version {index.get('version')!r};"
                                  f" this jedi_core reads {REPLAY_FORMAT!r} version {REPLAY_VERSION}")
        buffer = cls()
        for entry in entries:
            buffer.episodes.append(_read_episode(directory, entry))
        buffer._saved, buffer._saved_dir = dict(enumerate(entries)), directory.resolve()
        return buffer


def _write_episode(directory: Path, index: int, episode: Episode) -> dict:
    name = f"episode_{index:06d}_{episode.num_steps:06d}{'' if episode.finished else '_open'}.npz"
    path = directory / name
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        np.savez(handle, obs=episode.obs, actions=episode.actions, rewards=episode.rewards,
                 terminated=episode.terminated, life_loss=episode.life_loss)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return {"file": name, "num_steps": episode.num_steps, "finished": episode.finished,
            "truncated": episode.truncated, "bytes": path.stat().st_size, "crc32": _crc32(path)}


def _read_episode(directory: Path, entry: dict) -> Episode:
    path = directory / entry["file"]
    if not path.is_file():
        raise ReplayFileError(f"{path} is listed in {REPLAY_INDEX} but missing")
    size = path.stat().st_size
    if size != entry["bytes"]:
        raise ReplayFileError(f"{path} is truncated or damaged: {size} bytes on disk, {entry['bytes']} expected")
    if _crc32(path) != entry["crc32"]:
        raise ReplayFileError(f"{path} is damaged: its checksum does not match {REPLAY_INDEX}")
    with np.load(path) as arrays:
        missing = [name for name in _ARRAYS if name not in arrays]
        if missing:
            raise ReplayFileError(f"{path} lacks arrays {missing}")
        episode = Episode.from_arrays(*(arrays[name] for name in _ARRAYS), truncated=entry["truncated"],
                                      finished=entry["finished"])
    if episode.num_steps != entry["num_steps"]:
        raise ReplayFileError(f"{path} holds {episode.num_steps} steps, {REPLAY_INDEX} says {entry['num_steps']}")
    return episode


def _crc32(path: Path, chunk: int = 1 << 24) -> int:
    crc = 0
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            crc = zlib.crc32(block, crc)
    return crc
