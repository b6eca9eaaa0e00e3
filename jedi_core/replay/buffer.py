"""The replay buffer: every episode of a run, in collection order, in memory and on disk.

On disk a replay is a folder: one ``.npz`` per episode and a ``replay.json`` index with each file's size
and CRC-32. Files are written to a temporary name and renamed, the index last, so a crash at any moment
leaves the previous complete replay; a damaged file is refused with a clear error. Only the episodes that
changed since the last save are rewritten.
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path

import numpy as np

from jedi_core.replay.episode import Episode
from jedi_core.runtime import atomic_write_bytes

REPLAY_INDEX = "replay.json"
REPLAY_FORMAT = "jedi-replay"
REPLAY_VERSION = 1
_ARRAYS = ("obs", "actions", "rewards", "terminated", "life_loss")


class ReplayFileError(ValueError):
    """A replay folder or file that cannot be loaded as it is; the message says which and why."""


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

    def reward_sign_counts(self) -> dict[int, int]:
        """How many transitions have reward sign -1, 0 and +1 (the classes the reward model learns)."""
        counts = dict.fromkeys((-1, 0, 1), 0)
        for episode in self.episodes:
            signs, occurrences = np.unique(np.sign(episode.rewards), return_counts=True)
            for sign, count in zip(signs, occurrences, strict=True):
                counts[int(sign)] += int(count)
        return counts

    def minority_reward_count(self) -> int:
        """Transitions whose reward sign is not the commonest one: all but the largest of the three counts
        (DIAMOND's rule for when random play has shown the reward model enough)."""
        return sum(sorted(self.reward_sign_counts().values())[:-1])

    # -- disk ---------------------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        """Write the replay to ``directory`` atomically; only the episodes changed since the last save are
        rewritten."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self._saved_dir != directory.resolve():
            self._saved = {}
        entries = []
        written = []
        try:
            for index, episode in enumerate(self.episodes):
                entry = self._saved.get(index)
                unchanged = entry is not None and entry["num_steps"] == episode.num_steps \
                    and entry["finished"] == episode.finished
                if not unchanged:
                    entry = _write_episode(directory, index, episode)
                    written.append(entry["file"])
                entries.append(entry)
            index_data = {"format": REPLAY_FORMAT, "version": REPLAY_VERSION, "episodes": entries}
            atomic_write_bytes(directory / REPLAY_INDEX, json.dumps(index_data, indent=1).encode())
        except BaseException:
            # The old index still stands: remove what this save wrote for the new one (a full disk stays
            # full otherwise), keeping every file the old index names.
            referenced = {entry["file"] for entry in self._saved.values()}
            for name in written:
                if name not in referenced:
                    (directory / name).unlink(missing_ok=True)
            for path in directory.glob("*.tmp"):
                path.unlink(missing_ok=True)
            raise
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
            raise ReplayFileError(f"{index_path} is damaged ({error}); "
                                  "the replay cannot be trusted") from error
        if index.get("format") != REPLAY_FORMAT or index.get("version") != REPLAY_VERSION:
            raise ReplayFileError(f"{index_path} is format {index.get('format')!r} version "
                                  f"{index.get('version')!r}; this jedi_core reads {REPLAY_FORMAT!r} version "
                                  f"{REPLAY_VERSION}")
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
        raise ReplayFileError(f"{path} is truncated or damaged: {size} bytes on disk, "
                              f"{entry['bytes']} expected")
    if _crc32(path) != entry["crc32"]:
        raise ReplayFileError(f"{path} is damaged: its checksum does not match {REPLAY_INDEX}")
    with np.load(path) as arrays:
        missing = [name for name in _ARRAYS if name not in arrays]
        if missing:
            raise ReplayFileError(f"{path} lacks arrays {missing}")
        episode = Episode.from_arrays(*(arrays[name] for name in _ARRAYS), truncated=entry["truncated"],
                                      finished=entry["finished"])
    if episode.num_steps != entry["num_steps"]:
        raise ReplayFileError(f"{path} holds {episode.num_steps} steps, "
                              f"{REPLAY_INDEX} says {entry['num_steps']}")
    return episode


def _crc32(path: Path, chunk: int = 1 << 24) -> int:
    crc = 0
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            crc = zlib.crc32(block, crc)
    return crc
