"""jedi_core.training.checkpoint: what a run may resume from, exported agent files (safe to load from anyone),
and checkpoints that are damaged, half written or of another version."""

import contextlib
import json
import os
import pickle
import shlex
from pathlib import Path

import pytest
import torch

from jedi_core.__main__ import main
from jedi_core.configlib import apply_overrides
from jedi_core.nn.probe import DecoderProbe
from jedi_core.presets import make_config
from jedi_core.training.checkpoint import (
    AGENT_FILE_KIND,
    CHECKPOINT_VERSION,
    RESUMABLE_CHANGES,
    IncompatibleCheckpoint,
    export_agent,
    load_agent,
    load_run,
    replace_probe,
)
from jedi_core.training.loop import Trainer
from jedi_core.training.run_dir import CHECKPOINT_FILE, FINAL_SCORES_FILE, METRICS_FILE, read_metrics

SHIPPED_AGENT = Path(__file__).resolve().parents[1] / "assets" / "catch_toy_agent.pt"


def _resumable(run_dir):
    (run_dir / FINAL_SCORES_FILE).unlink()  # pretend it stopped before the end
    return run_dir


def _same_weights(a, b):
    for (name, value), (_, reference) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(value, reference), name


def test_a_checkpoint_from_another_config_is_refused(finished_toy_run):
    cfg, run_dir, toy = finished_toy_run
    _resumable(run_dir)
    with pytest.raises(IncompatibleCheckpoint, match=r"preset 'smoke'.*world_model\.lr"):
        Trainer(apply_overrides(cfg, ["world_model.lr=0.5"]), run_dir, quiet=True).run()
    with pytest.raises(IncompatibleCheckpoint, match="method"):
        Trainer(make_config("smoke_diamond", toy), run_dir, quiet=True).run()


def test_a_run_resumes_with_the_fast_path_switched_on(finished_toy_run):
    cfg, run_dir, _ = finished_toy_run
    assert RESUMABLE_CHANGES == {"device", "performance.precision", "performance.compile",
                                 "performance.cuda_graphs", "performance.tf32", "performance.cudnn_benchmark",
                                 "logging.tensorboard"}
    _resumable(run_dir)
    fast = Trainer(apply_overrides(cfg, ["performance.precision=bf16", "device=cpu"]), run_dir, quiet=True)
    fast.load_checkpoint()  # a resumable change: no IncompatibleCheckpoint
    assert fast.cfg.performance.precision == "bf16"
    for update in (fast.updates.diffusion, fast.updates.reward_end, fast.updates.actor_critic):
        with update.context():  # the updates' losses run under bf16 autocast, applied from outside the model
            assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    _, saved, _ = load_run(run_dir)
    _same_weights(fast.agent, saved)
    # The rollouts the actor-critic's updates carry on come back as they were saved.
    carried = torch.load(run_dir / CHECKPOINT_FILE, weights_only=False)["imagination"]
    assert len(fast.updates.imagination.carried) == len(carried) > 0
    for restored, saved_tensor in zip(fast.updates.imagination.carried, carried, strict=True):
        assert torch.equal(restored, saved_tensor)


def test_a_run_saved_before_the_performance_section_existed_resumes(finished_toy_run):
    cfg, run_dir, _ = finished_toy_run
    _resumable(run_dir)
    state = torch.load(run_dir / CHECKPOINT_FILE, weights_only=False)
    del state["config"]["performance"]  # as a checkpoint written before the section was added
    torch.save(state, run_dir / CHECKPOINT_FILE)
    resumed = Trainer(cfg, run_dir, quiet=True)
    resumed.load_checkpoint()  # the missing section reads as its defaults
    assert resumed.counters["epoch"] == state["counters"]["epoch"]


def test_export_writes_an_agent_file_that_loads_and_acts_the_same(finished_toy_run, tmp_path, capsys):
    cfg, run_dir, _ = finished_toy_run
    assert main(["export", str(run_dir), str(tmp_path / "agent.pt")]) == 0
    assert "wrote" in capsys.readouterr().out
    loaded_cfg, agent, info = load_agent(tmp_path / "agent.pt")
    _, original, _ = load_run(run_dir)
    assert loaded_cfg == cfg and info["counters"]["env_steps"] == 200
    assert info["final_scores"]["episode_returns"] == json.loads((run_dir / FINAL_SCORES_FILE).read_text())[
        "episode_returns"]
    assert info["metrics"] == read_metrics(run_dir) and info["metrics"][-1]["env_steps"] == 200  # the curve
    _same_weights(agent, original)
    assert not agent.training  # loaded for acting
    assert (tmp_path / "agent.pt").stat().st_size < (run_dir / CHECKPOINT_FILE).stat().st_size / 2
    assert torch.load(tmp_path / "agent.pt", weights_only=True)["kind"] == AGENT_FILE_KIND  # plain data only
    with pytest.raises(IncompatibleCheckpoint, match="not an exported agent file"):
        load_agent(run_dir / CHECKPOINT_FILE)
    with pytest.raises(FileNotFoundError, match="jedi_core export"):
        load_agent(tmp_path / "missing.pt")


def test_replace_probe_changes_the_probe_alone_and_records_how_it_was_made(finished_toy_run, tmp_path):
    cfg, run_dir, _ = finished_toy_run
    path = export_agent(run_dir, tmp_path / "agent.pt")
    _, original, info = load_agent(path)
    assert info["probe_fit"] is None and original.world_model.probe is None  # the run trained none
    channels = tuple(2 * c for c in cfg.world_model.probe_channels)
    torch.manual_seed(1)
    probe = DecoderProbe(original.world_model.latent_shape[0], channels)
    replace_probe(path, probe, channels, {"command": "a fit"})
    loaded_cfg, agent, info = load_agent(path)
    assert info["probe_fit"] == {"command": "a fit"} and loaded_cfg.world_model.probe_channels == channels
    _same_weights(agent.world_model.probe, probe)
    weights = {name: value for name, value in agent.state_dict().items()
               if not name.startswith("world_model.probe.")}
    assert weights.keys() == original.state_dict().keys()
    for name, value in original.state_dict().items():  # every weight that acts or imagines, as trained
        assert torch.equal(weights[name], value), name
    with pytest.raises(Exception, match="probe"):  # a probe that does not fit the config is refused
        replace_probe(path, DecoderProbe(original.world_model.latent_shape[0], channels[:-1]), channels, {})
    with pytest.raises(IncompatibleCheckpoint, match="not an exported agent file"):
        replace_probe(run_dir / CHECKPOINT_FILE, probe, channels, {})


def test_the_shipped_agent_holds_only_tensors_and_plain_data():
    state = torch.load(SHIPPED_AGENT, weights_only=True)
    assert state["kind"] == AGENT_FILE_KIND and isinstance(state["config"], dict)
    cfg, agent, info = load_agent(SHIPPED_AGENT, device="cpu")
    assert cfg.env.kind == "toy" and not agent.training and info["counters"]["env_steps"] > 0


class _RunsCode:
    """Pickled as a call to ``os.system``: an unsafe load of it creates ``marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


class _SomeClass:
    """Any class: a jedi export holds none."""


@pytest.mark.parametrize("made_with", ["torch.save", "a raw pickle", "a pickled class"])
def test_an_agent_file_that_carries_pickled_code_is_refused_and_its_code_never_runs(made_with, tmp_path):
    marker, path = tmp_path / "the payload ran", tmp_path / "agent.pt"
    payload = _SomeClass() if made_with == "a pickled class" else _RunsCode(marker)
    state = {"kind": AGENT_FILE_KIND, "version": CHECKPOINT_VERSION, "agent": {}, "payload": payload}
    if made_with == "a raw pickle":
        path.write_bytes(pickle.dumps(state, protocol=2))
    else:
        torch.save(state, path)
    with pytest.raises(IncompatibleCheckpoint) as refused:
        load_agent(path)
    message = str(refused.value)
    assert message.startswith(f"{path} is not a jedi export") and "\n" not in message
    asked = "_SomeClass" if made_with == "a pickled class" else "system"  # posix.system on Linux and macOS
    assert "(it asks for " in message and asked in message
    assert not marker.exists()
    if made_with != "a pickled class":  # the file is a live one: an unsafe load runs its payload
        with contextlib.suppress(RuntimeError):  # a raw pickle is then refused, too late, for its format
            torch.load(path, weights_only=False)
        assert marker.exists()


def test_a_checkpoint_or_agent_file_of_another_version_is_refused(finished_toy_run, tmp_path):
    cfg, run_dir, _ = finished_toy_run
    export_agent(_resumable(run_dir), tmp_path / "agent.pt")
    for path in (run_dir / CHECKPOINT_FILE, tmp_path / "agent.pt"):
        state = torch.load(path, weights_only=False)
        torch.save({**state, "version": CHECKPOINT_VERSION + 1}, path)
    message = f"checkpoint version {CHECKPOINT_VERSION + 1}.*reads version {CHECKPOINT_VERSION}"
    with pytest.raises(IncompatibleCheckpoint, match=message):
        Trainer(cfg, run_dir, quiet=True).run()
    with pytest.raises(IncompatibleCheckpoint, match=message):
        load_run(run_dir)
    with pytest.raises(IncompatibleCheckpoint, match=message):
        load_agent(tmp_path / "agent.pt")


def test_two_damaged_checkpoints_stop_the_run_and_are_not_overwritten(finished_toy_run):
    from jedi_core.training.run_dir import PREVIOUS_CHECKPOINT_FILE

    cfg, run_dir, _ = finished_toy_run
    damaged = {}
    for name in (CHECKPOINT_FILE, PREVIOUS_CHECKPOINT_FILE):
        checkpoint = _resumable(run_dir) / name if name == CHECKPOINT_FILE else run_dir / name
        damaged[name] = checkpoint.read_bytes()[: checkpoint.stat().st_size // 2]
        checkpoint.write_bytes(damaged[name])
    lines = (run_dir / METRICS_FILE).read_text()
    with pytest.raises(RuntimeError):  # never a silent fresh start over the old run
        Trainer(cfg, run_dir, quiet=True).run()
    assert all((run_dir / name).read_bytes() == content for name, content in damaged.items())
    assert (run_dir / METRICS_FILE).read_text() == lines


def test_an_interrupted_checkpoint_write_leaves_the_previous_checkpoint(finished_toy_run):
    cfg, run_dir, _ = finished_toy_run
    _, before, _ = load_run(run_dir)
    (run_dir / (CHECKPOINT_FILE + ".tmp")).write_bytes(b"half a checkpoint")  # killed while writing
    _, after, _ = load_run(run_dir)
    _same_weights(after, before)
    _resumable(run_dir)
    resumed = Trainer(cfg, run_dir, quiet=True)
    resumed.load_checkpoint()
    assert resumed.counters["env_steps"] == 200
    resumed.save_checkpoint()  # the next save writes over the leftover and leaves no temporary file
    assert not (run_dir / (CHECKPOINT_FILE + ".tmp")).exists()


@pytest.mark.parametrize("damage", ["empty", "random bytes", "cut in half"])
def test_a_damaged_newest_checkpoint_is_named_and_the_run_resumes_from_the_previous(damage, finished_toy_run,
                                                                                     capsys):
    from jedi_core.training.checkpoint import DamagedCheckpoint, read_checkpoint
    from jedi_core.training.run_dir import PREVIOUS_CHECKPOINT_FILE

    cfg, run_dir, _ = finished_toy_run
    newest, previous = run_dir / CHECKPOINT_FILE, run_dir / PREVIOUS_CHECKPOINT_FILE
    previous_epoch = torch.load(previous, weights_only=False)["counters"]["epoch"]
    assert previous_epoch < torch.load(newest, weights_only=False)["counters"]["epoch"]  # two generations
    content = newest.read_bytes()
    newest.write_bytes({"empty": b"", "random bytes": bytes(range(256)) * 40,
                        "cut in half": content[: len(content) // 2]}[damage])
    with pytest.raises(DamagedCheckpoint, match=f"{newest} is damaged and cannot be read"):
        read_checkpoint(newest, torch.device("cpu"))

    trainer = Trainer(cfg, _resumable(run_dir), quiet=True)
    trainer.load_checkpoint()
    assert trainer.counters["epoch"] == previous_epoch
    assert f"{newest} is damaged" in capsys.readouterr().err  # said even when quiet
    assert max(m["epoch"] for m in map(json.loads, (run_dir / METRICS_FILE).read_text().splitlines())) \
        == previous_epoch  # the log goes back with it

    good_previous = previous.read_bytes()
    trainer.save_checkpoint()  # replaces the damaged newest and keeps the previous one, which is good
    assert previous.read_bytes() == good_previous
    read_checkpoint(newest, torch.device("cpu"))
    previous.write_bytes(b"")
    newest.write_bytes(b"")
    with pytest.raises(DamagedCheckpoint, match="and .*checkpoint.prev.pt is damaged.*start the run again by "
                                                "deleting"):
        Trainer(cfg, run_dir, quiet=True).load_checkpoint()
    status = main(["evaluate", str(run_dir), "--episodes", "1"])
    assert status == 2 and "start the run again by deleting" in capsys.readouterr().err  # no traceback


def test_a_full_disk_stops_with_one_message_and_leaves_the_last_checkpoint(finished_toy_run, monkeypatch):
    import errno
    import os

    import numpy as np

    from jedi_core.training import checkpoint as checkpoint_module
    from jedi_core.training.checkpoint import CheckpointWriteError
    from jedi_core.training.run_dir import PREVIOUS_CHECKPOINT_FILE, REPLAY_DIR

    cfg, run_dir, _ = finished_toy_run
    trainer = Trainer(cfg, _resumable(run_dir), quiet=True)
    trainer.load_checkpoint()
    episode = trainer.replay.new_episode(np.zeros((64, 64, 3), np.uint8))  # something new for the save
    episode.append(0, 0.0, np.zeros((64, 64, 3), np.uint8))

    def snapshot():
        files = [*run_dir.iterdir(), *(run_dir / REPLAY_DIR).iterdir()]
        return {path: path.read_bytes() for path in files if path.is_file()}

    before = snapshot()

    def disk_full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    for where in ("replay", "checkpoint"):  # full while writing the replay's episode, or the checkpoint
        if where == "replay":
            monkeypatch.setattr(os, "fsync", disk_full)
        else:
            monkeypatch.setattr(checkpoint_module, "write_durably", disk_full)
        expected = (r"No space left on device.*what this save had written is removed and the last "
                    r"checkpoint \(checkpoint.pt\) is intact.*run the same command to resume")
        with pytest.raises(CheckpointWriteError, match=expected):
            trainer.save_checkpoint()
        monkeypatch.undo()
        after = snapshot()
        for name in (CHECKPOINT_FILE, PREVIOUS_CHECKPOINT_FILE):
            assert after[run_dir / name] == before[run_dir / name]
        assert not [path for path in after if path.name.endswith(".tmp")]
        if where == "replay":
            assert after == before  # the new episode's file went with the failed save
