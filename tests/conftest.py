"""Fixtures shared by the test files: small synthetic batches, a smoke-sized agent with a replay, trained-like
weights, a detector of the ops that make the host wait for the device, a finished run on the toy game, and
the repository's scripts (benchmarks/, tools/) loaded as modules.

Each fixture returns a function (a factory), so a test can build several with different settings.
"""

import importlib.util
import os
import shutil
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from jedi_core.agent import Agent
from jedi_core.analysis.bench import synthetic_replay
from jedi_core.config import Config
from jedi_core.presets import make_config
from jedi_core.replay import TorchBatch

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two workers share the cores (pyproject's -n): one thread each, for them and the processes they start,
    # so that none waits on a busy core and a run's trajectory is the same on any machine.
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

#: Actions of the synthetic batches and replays (Breakout's minimal action set).
NUM_ACTIONS = 4


def synthetic_batch(batch=4, steps=5, seed=0, num_actions=NUM_ACTIONS):
    """A TorchBatch of random 64x64 frames in [-1, 1], random actions and rewards, no ends, no padding."""
    generator = torch.Generator().manual_seed(seed)
    return TorchBatch(
        obs=torch.rand(batch, steps + 1, 3, 64, 64, generator=generator) * 2 - 1,
        actions=torch.randint(0, num_actions, (batch, steps), generator=generator),
        rewards=torch.randint(-1, 2, (batch, steps), generator=generator).float(),
        ends=torch.zeros(batch, steps, dtype=torch.bool),
        mask_padding=torch.ones(batch, steps + 1, dtype=torch.bool))


@pytest.fixture
def make_batch():
    """``make_batch(batch=4, steps=5, seed=0)``: a small synthetic :class:`TorchBatch`."""
    return synthetic_batch


def give_output_weights(model):
    """Give the zero-initialised outputs some weights, as after the first updates, so gradients flow.

    The denoiser's output conv starts at zero (F = 0 ignores its inputs), and so does an agent's actor (a
    uniform policy whatever it sees). ``model`` is a world model or an agent; it is returned.
    """
    world_model = getattr(model, "world_model", model)
    torch.nn.init.normal_(world_model.denoiser.net.conv_out.weight, std=0.05)
    if hasattr(model, "actor_critic"):
        torch.nn.init.normal_(model.actor_critic.actor.weight, std=0.05)
    return model


@pytest.fixture
def trained_like():
    """``trained_like(model)``: :func:`give_output_weights` (a world model or an agent)."""
    return give_output_weights


@pytest.fixture
def smoke_setup():
    """``smoke_setup(preset="smoke", overrides=())`` -> (cfg, agent, replay, rng) on the CPU, seeded.

    The replay is the benchmark's synthetic one: 300 steps of random frames in finished episodes.
    """

    def setup(preset="smoke", overrides=()):
        torch.manual_seed(0)
        cfg = make_config(preset, ["device=cpu", *overrides])
        agent = Agent(cfg, NUM_ACTIONS)
        replay = synthetic_replay(300, NUM_ACTIONS)
        return cfg, agent, replay, np.random.default_rng(0)

    return setup


# Ops that make the host wait for the device: reading a value (.item(), bool(), float()), data-dependent
# shapes (nonzero, masked_select; boolean indexing goes through aten.index with a bool index), and
# multinomial, whose CUDA kernel reads the probabilities back to check them (inside the kernel, where this
# mode cannot see it, so the op itself is listed).
WAITING_OPS = {"_local_scalar_dense", "nonzero", "masked_select", "is_nonzero", "equal", "unique_consecutive",
               "_unique2", "multinomial"}


class HostWaits(TorchDispatchMode):
    """Records every op that would make the host wait for a GPU (the CPU runs the same ops)."""

    def __init__(self):
        super().__init__()
        self.seen, self.paused = [], False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if not self.paused:
            bool_index = name in ("index", "index_put", "index_put_") and any(
                isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] or ()))
            if name in WAITING_OPS or bool_index:
                self.seen.append(name)
        return func(*args, **(kwargs or {}))

    def ignore_step_of(self, optimizer):
        """AdamW reads its step count with .item(), but that count lives on the host: not a device wait."""
        optimizer.register_step_pre_hook(lambda *_: setattr(self, "paused", True))
        optimizer.register_step_post_hook(lambda *_: setattr(self, "paused", False))
        return self


@pytest.fixture
def host_waits():
    """A fresh :class:`HostWaits` detector: ``with waits: ...`` then read ``waits.seen``."""
    return HostWaits()


#: A smoke run on the toy game: 50 random steps, then epochs of 50 steps, 200 steps in all (a few seconds).
TOY_RUN = ("env.kind=toy", "env_steps=200", "training.initial_random_steps=50")


class ToyRun(NamedTuple):
    cfg: Config  # make_config("smoke", overrides)
    run_dir: Path
    overrides: tuple[str, ...]


@pytest.fixture(scope="session")
def _finished_toy_run_template(tmp_path_factory):
    from jedi_core.training.loop import Trainer

    run_dir = tmp_path_factory.mktemp("template") / "run"
    Trainer(make_config("smoke", TOY_RUN), run_dir, quiet=True).run()
    return run_dir


@pytest.fixture
def finished_toy_run(_finished_toy_run_template, tmp_path):
    """A :class:`ToyRun` whose folder is the test's own copy of one finished run (trained once a session)."""
    run_dir = tmp_path / "run"
    shutil.copytree(_finished_toy_run_template, run_dir)
    return ToyRun(make_config("smoke", TOY_RUN), run_dir, TOY_RUN)


@pytest.fixture
def toy_run_overrides():
    """The overrides of :data:`TOY_RUN`, for a test that trains a toy run of its own (``smoke`` preset)."""
    return list(TOY_RUN)


@pytest.fixture
def load_script():
    """``load_script("benchmarks/atari_cpu_runs.py")``: a script of the repository, outside the package, as a
    module, so that its functions can be tested."""

    def load(relative_path: str):
        path = Path(__file__).resolve().parents[1] / relative_path
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
