"""Checkpoints of a run (in its folder, see :mod:`jedi_core.training.run_dir`) and exported agent files.

The replay is written before the checkpoint (each atomically), so a crash between the two leaves a replay
that may hold steps the checkpoint has not counted, never the reverse. An exported agent file holds the
config and the agent's weights only: for sharing a trained agent and for the notebooks' shipped one. It holds
tensors and plain data (the config as a dict), so it is read with ``torch.load(weights_only=True)``, which
runs no code from the file.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import sys
import warnings
from pathlib import Path

import torch

import jedi_core
from jedi_core.agent import Agent, build_agent
from jedi_core.config import Config
from jedi_core.configlib import apply_overrides, config_differences, from_dict, to_dict
from jedi_core.envs import env_num_actions
from jedi_core.replay import ReplayBuffer
from jedi_core.runtime import atomic_write_bytes, resolve_device, write_durably
from jedi_core.training.run_dir import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    FINAL_SCORES_FILE,
    PREVIOUS_CHECKPOINT_FILE,
    REPLAY_DIR,
    has_checkpoint,
    read_metrics,
)

#: 3: one optimiser per world-model module (``wm_optimizers`` by module name), the imagined rollouts carried
#: between actor-critic updates (``imagination``), and the paper's code path in every preset.
CHECKPOINT_VERSION = 3
#: Settings a resumed run may change: where and how fast it runs, and where it logs; never what it computes.
RESUMABLE_CHANGES = {"device", "performance.precision", "performance.compile", "performance.cuda_graphs",
                     "performance.tf32", "performance.cudnn_benchmark", "logging.tensorboard"}
#: The ``kind`` of an exported agent file (weights only), as opposed to a resumable checkpoint.
AGENT_FILE_KIND = "jedi-agent"


class IncompatibleCheckpoint(RuntimeError):
    """A checkpoint written by another config or another checkpoint version."""


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written (a full disk, a lost mount); the last one is left as it was."""


class DamagedCheckpoint(RuntimeError):
    """A checkpoint file that cannot be read (empty, cut short, overwritten); ``reason`` names it and why."""

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason or message


def write_checkpoint(run_dir: Path, replay: ReplayBuffer, state: dict, keep_previous: bool = True) -> Path:
    """Save the replay (its own atomic index), then ``state`` in one atomically written file; the checkpoint
    it replaces is kept as ``checkpoint.prev.pt`` (:func:`read_run_checkpoint` falls back to it), unless
    ``keep_previous`` is off (the one it replaces is damaged: the previous one is then the one to keep)."""
    newest = run_dir / CHECKPOINT_FILE
    try:
        replay.save(run_dir / REPLAY_DIR)
        # The new checkpoint is written whole beside the old one before either is renamed.
        tmp = newest.with_name(newest.name + ".tmp")
        write_durably(tmp, _state_bytes(state))
    except OSError as error:
        saved = [name for name in (CHECKPOINT_FILE, PREVIOUS_CHECKPOINT_FILE) if (run_dir / name).is_file()]
        intact = f"the last checkpoint ({saved[0]}) is intact" if saved else "no checkpoint was saved before"
        raise CheckpointWriteError(f"could not save a checkpoint in {run_dir} ({error}); what this save had "
                                   f"written is removed and {intact}; free some space (or fix the folder) "
                                   "and run the same command to resume") from error
    if keep_previous and newest.is_file():
        os.replace(newest, run_dir / PREVIOUS_CHECKPOINT_FILE)
    os.replace(tmp, newest)
    return newest


def read_run_checkpoint(run_dir: Path, device: torch.device) -> tuple[dict, Path, str | None]:
    """A run's newest readable checkpoint: ``(state, path, why)``, where ``why`` says why the newest was
    passed over for the previous one (``None`` when the newest was read).

    Its replay needs no such care: it is always at least as new as either checkpoint, and a resumed run
    counts its steps from the replay.
    """
    newest, previous = run_dir / CHECKPOINT_FILE, run_dir / PREVIOUS_CHECKPOINT_FILE
    if not newest.is_file():
        why = f"{newest} is missing (the run stopped while replacing it)"
    else:
        try:
            return read_checkpoint(newest, device), newest, None
        except DamagedCheckpoint as damage:
            why = damage.reason
    way_out = f"start the run again by deleting {run_dir}, or train into another --run-dir"
    if not previous.is_file():
        raise DamagedCheckpoint(f"{why}, and there is no {PREVIOUS_CHECKPOINT_FILE} to fall back on: "
                                f"{way_out}")
    try:
        return read_checkpoint(previous, device), previous, why
    except DamagedCheckpoint as damage:
        raise DamagedCheckpoint(f"{why}, and {damage.reason}: {way_out}") from damage


def read_checkpoint(path: Path, device: torch.device, weights_only: bool = False) -> dict:
    """A checkpoint (or exported agent file) as saved, refused if another checkpoint version wrote it; a file
    that cannot be read raises :class:`DamagedCheckpoint` naming it.

    A run's own checkpoint is read with ``weights_only=False``: its optimiser, scheduler and RNG states are
    pickled Python objects, and it is only read from the user's own run folders, written by their own
    training. A file that may come from anyone is an exported agent, read with ``weights_only=True``
    (:func:`load_agent`): one that holds anything beyond tensors and plain data is refused, and nothing in it
    runs.
    """
    try:
        with warnings.catch_warnings():  # the safe loader's note on a raw pickle's protocol; refused below
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            state = torch.load(path, map_location=device, weights_only=weights_only)
    except FileNotFoundError:
        raise
    except pickle.UnpicklingError as error:
        if not weights_only:
            raise _damaged(path, error) from error
        asked = re.search(r"GLOBAL (\S+)", str(error))  # what the file would have called, e.g. posix.system
        what = f" (it asks for {asked.group(1)})" if asked else ""
        raise IncompatibleCheckpoint(f"{path} is not a jedi export and was not loaded: it holds something "
                                     f"other than tensors and plain data{what}") from None
    except Exception as error:  # torch raises many kinds here: EOFError, RuntimeError, ...
        raise _damaged(path, error) from error
    if not isinstance(state, dict) or "version" not in state:
        raise DamagedCheckpoint(f"{path} is not a jedi_core checkpoint: it holds no version stamp")
    if state.get("version") != CHECKPOINT_VERSION:
        raise IncompatibleCheckpoint(f"{path} is checkpoint version {state.get('version')}; this jedi_core "
                                     f"({jedi_core.__version__}) reads version {CHECKPOINT_VERSION}")
    return state


def _damaged(path: Path, error: Exception) -> DamagedCheckpoint:
    reason = f"{path} is damaged and cannot be read ({type(error).__name__}: {str(error)[:100]})"
    return DamagedCheckpoint(f"{reason}; a full disk or an interrupted copy can do this", reason)


def check_resumable(path: Path, saved_config: dict, cfg: Config) -> None:
    """Refuse to resume a checkpoint whose config differs from ``cfg`` beyond :data:`RESUMABLE_CHANGES`."""
    # Through from_dict, so that a section added since the run was saved compares as its default.
    differences = config_differences(to_dict(from_dict(saved_config, Config)), to_dict(cfg))
    if differences - RESUMABLE_CHANGES:
        raise IncompatibleCheckpoint(
            f"{path} was written by preset {saved_config['preset']!r} ({saved_config['method']}) and differs "
            f"from this command in {sorted(differences - RESUMABLE_CHANGES)}; rerun with the run's original "
            f"settings (see {path.parent / CONFIG_FILE}) or choose another --run-dir")


def load_run(run_dir: str | Path, device: str | None = None, replay: bool = True
             ) -> tuple[Config, Agent, ReplayBuffer | None]:
    """A run folder's config, its agent with the last checkpoint's weights, and its replay (``None`` with
    ``replay=False``: scoring an agent needs only the checkpoint, even where the replay is damaged)."""
    run_dir = Path(run_dir)
    cfg, agent, _ = _load_run_agent(run_dir, device)
    return cfg, agent, ReplayBuffer.load(run_dir / REPLAY_DIR) if replay else None


def export_agent(run_dir: str | Path, path: str | Path) -> Path:
    """Write a run's config and agent weights (no optimiser state, no replay) to one small file, atomically,
    with its final scores and its metrics (the learning curve travels with the agent).

    For sharing a trained agent and for the notebooks' shipped checkpoint; read it with :func:`load_agent`.
    """
    run_dir = Path(run_dir)
    path = Path(path)
    _, agent, counters = _load_run_agent(run_dir, "cpu")
    saved_config = json.loads((run_dir / CONFIG_FILE).read_text())  # as trained, not the CPU it was loaded on
    scores_file = run_dir / FINAL_SCORES_FILE
    final_scores = json.loads(scores_file.read_text()) if scores_file.is_file() else None
    state = {"kind": AGENT_FILE_KIND, "config": saved_config, "agent": agent.state_dict(),
             "counters": counters, "final_scores": final_scores, "metrics": read_metrics(run_dir)}
    path.parent.mkdir(parents=True, exist_ok=True)
    return _write_state(path, state)


def replace_probe(path: str | Path, probe: torch.nn.Module, channels: tuple[int, ...], record: dict) -> Path:
    """Give an exported agent file a decoder probe, ``channels`` wide, in place of its own or of none (its
    config's ``decoder_probe`` and ``probe_channels`` follow), and keep ``record``, how the probe was made, as
    its ``probe_fit``. The probe only draws detached latents, so every weight that acts or imagines stays as
    trained."""
    path = Path(path)
    state = read_checkpoint(path, torch.device("cpu"), weights_only=True)
    if state.get("kind") != AGENT_FILE_KIND:
        raise IncompatibleCheckpoint(f"{path} is not an exported agent file; make one with "
                                     "`python -m jedi_core export RUN_DIR PATH`")
    weights = {key: value for key, value in state["agent"].items()
               if not key.startswith("world_model.probe.")}
    weights.update({f"world_model.probe.{key}": value for key, value in probe.state_dict().items()})
    state["config"]["world_model"].update(decoder_probe=True, probe_channels=list(channels))
    state.update(agent=weights, probe_fit=record)
    _agent_with_weights(_with_device(from_dict(state["config"], Config), "cpu"), weights)  # a mismatch: now
    return _write_state(path, {key: value for key, value in state.items()
                               if key not in ("version", "jedi_core")})


def load_agent(path: str | Path, device: str | None = None) -> tuple[Config, Agent, dict]:
    """An exported agent file's config, agent (in eval mode) and metadata (counters, final scores, the run's
    ``metrics.jsonl`` records, empty in files exported before they were kept, and ``probe_fit``, how a probe
    fitted after the run was made: see :func:`replace_probe`).

    Read with ``weights_only=True``, which runs no code from the file: one that carries pickled code is
    refused (:class:`IncompatibleCheckpoint`) and its code never runs.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no agent file at {path} (make one with `python -m jedi_core export RUN_DIR "
                                f"{path}`)")
    state = read_checkpoint(path, torch.device("cpu"), weights_only=True)
    if state.get("kind") != AGENT_FILE_KIND:
        raise IncompatibleCheckpoint(f"{path} is not an exported agent file; a run's checkpoint.pt is read "
                                     "with load_run(RUN_DIR)")
    cfg = _with_device(from_dict(state["config"], Config), device)
    agent = _agent_with_weights(cfg, state["agent"])
    return cfg, agent.eval(), {"counters": state["counters"], "final_scores": state["final_scores"],
                               "metrics": state.get("metrics", []), "probe_fit": state.get("probe_fit")}


def _load_run_agent(run_dir: Path, device: str | None) -> tuple[Config, Agent, dict]:
    if not (run_dir / CONFIG_FILE).is_file() or not has_checkpoint(run_dir):
        missing = CONFIG_FILE if not (run_dir / CONFIG_FILE).is_file() else CHECKPOINT_FILE
        raise FileNotFoundError(f"{run_dir} has no {missing}: is it a run folder made by `train` "
                                "(and has it saved a checkpoint yet)?")
    cfg = _with_device(from_dict(json.loads((run_dir / CONFIG_FILE).read_text()), Config), device)
    state, path, why = read_run_checkpoint(run_dir, resolve_device(cfg.device))
    if why:
        print(f"warning: {why}; using {path}", file=sys.stderr)
    return cfg, _agent_with_weights(cfg, state["agent"]), state["counters"]


def _agent_with_weights(cfg: Config, weights: dict) -> Agent:
    agent = build_agent(cfg, env_num_actions(cfg.env), resolve_device(cfg.device))
    agent.load_state_dict(weights)
    return agent


def _with_device(cfg: Config, device: str | None) -> Config:
    return cfg if device is None else apply_overrides(cfg, [f"device={device}"])


def _state_bytes(state: dict) -> bytes:
    """``state`` serialised, stamped with the checkpoint version and the jedi_core that wrote it."""
    buffer = io.BytesIO()
    torch.save({"version": CHECKPOINT_VERSION, "jedi_core": jedi_core.__version__, **state}, buffer)
    return buffer.getvalue()


def _write_state(path: Path, state: dict) -> Path:
    """Write ``state`` atomically (:func:`_state_bytes`)."""
    atomic_write_bytes(path, _state_bytes(state))
    return path
