"""A run's folder: its name and the files in it (no torch here, so readers such as ``report`` stay light).

A run lives in one folder::

    RUN_DIR/config.json         the resolved config
    RUN_DIR/environment.json    where the run last started: device, GPU, torch, CUDA, precision, commit
    RUN_DIR/checkpoint.pt       models, optimisers, schedules, counters, RNG states (atomic)
    RUN_DIR/checkpoint.prev.pt  the one before, read if the newest is damaged
    RUN_DIR/replay/             every real transition (atomic, incremental)
    RUN_DIR/metrics.jsonl       one line per epoch, up to the checkpoint's epoch once a run resumes
    RUN_DIR/tensorboard/        the same lines as TensorBoard scalars, with ``logging.tensorboard=true``
    RUN_DIR/final_scores.json   the final evaluation, read by ``python -m jedi_core report``; its
                                ``environment`` is environment.json's of the process that wrote it
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from jedi_core.config import Config

if TYPE_CHECKING:
    import torch

CHECKPOINT_FILE = "checkpoint.pt"
#: The checkpoint before the last one, kept so that a damaged newest checkpoint does not end the run.
PREVIOUS_CHECKPOINT_FILE = "checkpoint.prev.pt"
CONFIG_FILE = "config.json"
#: Where the run trains (a sibling of config.json, which holds settings only and is read back as a config).
ENVIRONMENT_FILE = "environment.json"
METRICS_FILE = "metrics.jsonl"
#: metrics.jsonl as TensorBoard scalars, with ``logging.tensorboard=true`` (``tensorboard --logdir runs/``).
TENSORBOARD_DIR = "tensorboard"
REPLAY_DIR = "replay"
#: Held (an OS file lock) by the process training in the folder; released when it stops, however it stops.
LOCK_FILE = ".lock"
FINAL_SCORES_FILE = "final_scores.json"
#: The agent before any update, on the final evaluation's episodes: what training added is the difference.
UNTRAINED_SCORES_FILE = "untrained_scores.json"
#: A decoder probe fitted for ``evaluate --video`` (JEDI runs trained without one), reused while it fits.
PROBE_FILE = "decoder_probe.pt"


def default_run_dir(cfg: Config) -> Path:
    """``runs/<method>_<preset>_<game>_seed<seed>``."""
    return Path("runs") / f"{cfg.method}_{cfg.preset}_{cfg.env.game_name}_seed{cfg.seed}"


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The epoch records of ``RUN_DIR/metrics.jsonl`` (none if it does not exist yet).

    A line that is not whole JSON (the last line of a run killed, or out of disk space, while writing it) is
    left out; training rewrites the file without it when the run resumes (:func:`truncate_metrics`).
    """
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def append_metrics(run_dir: str | Path, record: dict) -> None:
    """Append one epoch's record as one line, in one write, flushed to disk: a kill leaves either the whole
    line or a torn last line, which :func:`read_metrics` leaves out."""
    line = (json.dumps(record) + "\n").encode()
    descriptor = os.open(Path(run_dir) / METRICS_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, line)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def truncate_metrics(run_dir: str | Path, last_epoch: int) -> int:
    """Keep the records of epochs up to ``last_epoch`` (the checkpoint's), whole lines only; rewrite the file
    atomically. Returns how many records were dropped: epochs logged after the checkpoint that a resumed run
    trains again, and logs again, and any torn line."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return 0
    lines = path.read_text().splitlines()
    kept = [record for record in read_metrics(run_dir) if record.get("epoch", 0) <= last_epoch]
    if len(kept) == len(lines):
        return 0
    temporary = path.with_suffix(".jsonl.tmp")
    temporary.write_text("".join(json.dumps(record) + "\n" for record in kept))
    os.replace(temporary, path)
    return len(lines) - len(kept)


def has_checkpoint(run_dir: str | Path) -> bool:
    """Whether the run has saved a checkpoint (the newest, or the previous one if a crash came between)."""
    return any((Path(run_dir) / name).is_file() for name in (CHECKPOINT_FILE, PREVIOUS_CHECKPOINT_FILE))


class RunDirInUse(RuntimeError):
    """Another process is training in this run folder."""


@contextlib.contextmanager
def lock_run_dir(run_dir: str | Path) -> Iterator[None]:
    """Hold the run folder for one training process: a second one is refused, with the first one's pid.

    An OS lock (``fcntl.flock``), so the kernel releases it when the process ends, even by SIGKILL: a stale
    lock file never blocks a resume. Where ``fcntl`` does not exist (Windows), the folder is not locked.
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    path = Path(run_dir) / LOCK_FILE
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "unknown"
            raise RunDirInUse(f"{run_dir} is in use by another training process (pid {owner}); wait for it "
                              "to finish or stop it, or train into another --run-dir") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_environment(device: torch.device, precision: str) -> dict[str, str | None]:
    """Where this process trains: scores and speed depend on the device, the GPU and the library versions,
    which config.json (settings only) does not hold."""
    import torch  # here: reading and naming run folders needs no torch

    import jedi_core

    return {"device": str(device),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "precision": precision,
            "python": platform.python_version(),
            "jedi_core": jedi_core.__version__,
            "commit": source_commit()}


def source_commit() -> str | None:
    """The git commit jedi_core runs from, with ``+changes`` where tracked files differ from it; None outside
    a git checkout (an installed wheel) or without git."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        head = _git(root, "rev-parse", "HEAD")
        changed = _git(root, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+changes" if changed else "")


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True,
                          timeout=20).stdout.strip()
