"""The training loop (DESIGN §4, §8): collect, train the world model, train the actor-critic, evaluate, save.

A run lives in one folder::

    RUN_DIR/config.json         the resolved config
    RUN_DIR/checkpoint.pt       models, optimisers, schedules, counters, RNG states (atomic)
    RUN_DIR/replay/             every real transition (atomic, incremental)
    RUN_DIR/metrics.jsonl       one line per epoch
    RUN_DIR/final_scores.json   the final evaluation, read by ``python -m jedi_core report``

Running the same command again resumes from the checkpoint. Ctrl-C saves before exiting. A non-finite loss
stops the run, and the last good checkpoint is kept.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

import jedi_core
from jedi_core.agent import Agent, play_episode
from jedi_core.config import Config, apply_overrides, from_dict, to_dict
from jedi_core.data import ReplayBuffer
from jedi_core.envs import env_num_actions, make_env
from jedi_core.imagination import actor_critic_training_step, sample_contexts
from jedi_core.io import atomic_write_bytes, atomic_write_text
from jedi_core.logs import mean_logs, non_finite
from jedi_core.performance import compile_agent
from jedi_core.report import FINAL_SCORES_FILE
from jedi_core.runtime import resolve_device, seed_everything
from jedi_core.world_model import sample_training_batch

CHECKPOINT_FILE, CONFIG_FILE, METRICS_FILE, REPLAY_DIR = "checkpoint.pt", "config.json", "metrics.jsonl", "replay"
CHECKPOINT_VERSION = 1
RESUMABLE_CHANGES = {"device", "performance.precision", "performance.compile"}  # a resumed run may change these
LOG_CHUNK = 200  # updates whose logs are read (and checked for divergence) in one device-to-host transfer
AGENT_FILE_KIND = "jedi-agent"  # an exported agent file (weights only), not a resumable checkpoint


class IncompatibleCheckpoint(RuntimeError):
    """A checkpoint written by another config or another checkpoint version."""


class Collector:
    """Plays the real environment with the agent, recording every step; keeps its episode across epochs."""

    def __init__(self, cfg: Config, replay: ReplayBuffer, agent: Agent, seed: int):
        self.env, self.replay, self.agent = make_env(cfg.env), replay, agent
        self.seed, self.resets = seed, 0
        self.episode, self.obs, self.state, self.episode_return = None, None, None, 0.0

    def _reset(self) -> None:
        # Seed every reset from (seed, reset count): a resumed run replays the same starts.
        self.obs, _ = self.env.reset(seed=self.seed * 100_003 + self.resets)
        self.resets += 1
        self.episode = self.replay.new_episode(self.obs)
        self.state, self.episode_return = self.agent.initial_state(1), 0.0

    def collect(self, num_steps: int, epsilon: float, rng: np.random.Generator, random_policy: bool = False
                ) -> list[float]:
        """Play ``num_steps`` steps; returns the returns of the episodes that finished."""
        finished = []
        for _ in range(num_steps):
            if self.episode is None or self.episode.finished:
                self._reset()
            if random_policy:
                action = int(rng.integers(self.agent.num_actions))
            else:
                actions, self.state = self.agent.act(self.obs[None], self.state, epsilon)
                action = int(actions[0])
            self.obs, reward, terminated, truncated, info = self.env.step(action)
            self.episode.append(action, float(reward), self.obs, terminated=terminated, truncated=truncated,
                                life_loss=bool(info.get("life_loss", False)))
            self.episode_return += float(reward)
            if terminated or truncated:
                finished.append(self.episode_return)
        return finished


def evaluate(agent: Agent, cfg: Config, episodes: int, seed: int, max_steps: int | None = None) -> list[float]:
    """Mean-return protocol: full episodes (lost lives do not end them), sampled policy, epsilon 0."""
    env = make_env(cfg.env)
    returns = [play_episode(agent, env, seed + index, max_steps).total_reward for index in range(episodes)]
    env.close()
    return returns


class Trainer:
    def __init__(self, cfg: Config, run_dir: str | Path, quiet: bool = False):
        self.cfg, self.run_dir, self.quiet = cfg, Path(run_dir), quiet
        self.device = resolve_device(cfg.device)
        seed_everything(cfg.seed)
        self.agent = Agent(cfg, env_num_actions(cfg.env)).to(self.device)
        compile_agent(self.agent, cfg.performance.compile)
        self.wm_optimizer, self.wm_scheduler = self.agent.world_model.make_optimizer()
        self.ac_optimizer, self.ac_scheduler = self.agent.make_actor_critic_optimizer()
        self.replay = ReplayBuffer()
        self.rng = np.random.default_rng(cfg.seed)
        self.counters = {"epoch": 0, "env_steps": 0, "world_model_updates": 0, "actor_critic_updates": 0,
                         "final_epochs": 0, "collector_resets": 0}
        self.recent_returns: list[float] = []

    # -- the loop -------------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return (self.run_dir / FINAL_SCORES_FILE).is_file()

    def run(self) -> dict:
        """Train to the end of the schedule (resuming if a checkpoint exists), evaluate, return the scores."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.finished:
            self._say(f"{self.run_dir} has finished already: see {FINAL_SCORES_FILE}")
            return json.loads((self.run_dir / FINAL_SCORES_FILE).read_text())
        if (self.run_dir / CHECKPOINT_FILE).is_file():
            self.load_checkpoint()
            self._say(f"resumed {self.run_dir} at epoch {self.counters['epoch']}, "
                      f"{self.counters['env_steps']} env steps")
        atomic_write_text(self.run_dir / CONFIG_FILE, json.dumps(to_dict(self.cfg), indent=1))
        collector = Collector(self.cfg, self.replay, self.agent, self.cfg.seed)
        collector.resets = self.counters["collector_resets"]
        cfg, train = self.cfg, self.cfg.training
        bar = tqdm(total=cfg.env_steps, initial=self.counters["env_steps"], unit="step", disable=self.quiet,
                   desc=f"{cfg.method} {cfg.env.game if cfg.env.kind == 'atari' else 'toy'}")
        try:
            if self.counters["env_steps"] == 0 and train.initial_random_steps > 0:
                steps = min(train.initial_random_steps, cfg.env_steps)
                self.recent_returns += collector.collect(steps, 1.0, self.rng, random_policy=True)
                self._count_steps(steps, collector, bar)
            while self.counters["final_epochs"] < train.final_training_epochs or \
                    self.counters["env_steps"] < cfg.env_steps:
                self._epoch(collector, bar)
            self.save_checkpoint()
        except KeyboardInterrupt:
            self.save_checkpoint()
            self._say(f"interrupted: saved {self.run_dir / CHECKPOINT_FILE}; run the same command to resume")
            raise
        finally:
            bar.close()
        return self.final_evaluation()

    def _epoch(self, collector: Collector, bar) -> None:
        cfg, train = self.cfg, self.cfg.training
        started = time.perf_counter()
        self.counters["epoch"] += 1
        first = self.counters["epoch"] == 1
        if self.counters["env_steps"] < cfg.env_steps:
            steps = min(train.env_steps_per_epoch, cfg.env_steps - self.counters["env_steps"])
            self.recent_returns += collector.collect(steps, train.epsilon, self.rng)
            self._count_steps(steps, collector, bar)
        else:
            self.counters["final_epochs"] += 1
        wm_updates = train.first_epoch_world_model_updates if first else train.world_model_updates
        ac_updates = train.first_epoch_actor_critic_updates if first else train.actor_critic_updates
        logs = self._updates(self.train_world_model, wm_updates)
        logs.update(self._updates(self.train_actor_critic, ac_updates))
        if train.eval_every_epochs and self.counters["epoch"] % train.eval_every_epochs == 0:
            logs["eval_return"] = float(np.mean(evaluate(self.agent, cfg, train.periodic_eval_episodes,
                                                         seed=10**6 + self.counters["epoch"])))
        self.recent_returns = self.recent_returns[-20:]
        if self.recent_returns:
            logs["train_return"] = float(np.mean(self.recent_returns))
        logs["epoch_seconds"] = time.perf_counter() - started
        self._log({**self.counters, **logs})
        bar.set_postfix({k: f"{logs[k]:.3g}" for k in ("train_return", "loss", "return_mean") if k in logs})
        if self.counters["epoch"] % train.checkpoint_every_epochs == 0:
            self.save_checkpoint()

    def _updates(self, update, count: int, chunk: int = LOG_CHUNK) -> dict[str, float]:
        """Run ``count`` updates; return their mean logs.

        The updates queue work on the device without waiting for it. Their logs are read once per ``chunk``
        updates (one transfer) and checked, so a diverged update stops the run within a chunk, before the
        next checkpoint is written.
        """
        sums: dict[str, float] = {}
        for start in range(0, count, chunk):
            size = min(chunk, count - start)
            logs = mean_logs([update() for _ in range(size)])
            if diverged := non_finite(logs):
                raise FloatingPointError(f"epoch {self.counters['epoch']}: non-finite {', '.join(diverged)} "
                                         f"(logs: {logs}); the last good checkpoint in {self.run_dir} is kept")
            for key, value in logs.items():
                sums[key] = sums.get(key, 0.0) + value * size
        return {key: value / count for key, value in sums.items()}

    def _count_steps(self, steps: int, collector: Collector, bar) -> None:
        self.counters["env_steps"] += steps
        self.counters["collector_resets"] = collector.resets
        bar.update(steps)

    def train_world_model(self) -> dict[str, torch.Tensor]:
        wm_cfg = self.cfg.world_model
        batch = sample_training_batch(self.replay, wm_cfg, self.rng, self.cfg.replay.sample_weights).to_torch(
            self.device)
        logs = self.agent.world_model.training_step(batch, self.wm_optimizer, self.wm_scheduler, sync=False)
        self.counters["world_model_updates"] += 1
        return logs

    def train_actor_critic(self) -> dict[str, torch.Tensor]:
        ac_cfg, world_model = self.cfg.actor_critic, self.agent.world_model
        frames, actions = sample_contexts(self.replay, ac_cfg.batch_size, world_model.context_length, self.rng,
                                          self.cfg.replay.sample_weights, self.device)
        logs = actor_critic_training_step(world_model, self.agent.actor_critic, frames, actions, ac_cfg,
                                          self.ac_optimizer, self.ac_scheduler, sync=False)
        self.counters["actor_critic_updates"] += 1
        return logs

    def final_evaluation(self) -> dict:
        returns = evaluate(self.agent, self.cfg, self.cfg.eval_episodes, seed=10**7 + self.cfg.seed)
        scores = {"method": self.cfg.method.upper() if self.cfg.method == "jedi" else "DIAMOND (ours)",
                  "game": self.cfg.env.game if self.cfg.env.kind == "atari" else "toy",
                  "seed": self.cfg.seed, "episode_returns": returns, "env_steps": self.counters["env_steps"],
                  "preset": self.cfg.preset, "jedi_core": jedi_core.__version__}
        atomic_write_text(self.run_dir / FINAL_SCORES_FILE, json.dumps(scores, indent=1))
        self._say(f"final evaluation over {len(returns)} episodes: mean return {np.mean(returns):.2f}")
        return scores

    # -- checkpoints ----------------------------------------------------------------------------

    def save_checkpoint(self) -> Path:
        """Replay first (its own atomic index), then everything else in one atomically written file."""
        self.replay.save(self.run_dir / REPLAY_DIR)
        state = {"version": CHECKPOINT_VERSION, "jedi_core": jedi_core.__version__, "config": to_dict(self.cfg),
                 "counters": dict(self.counters), "agent": self.agent.state_dict(),
                 "wm_optimizer": self.wm_optimizer.state_dict(), "wm_scheduler": self.wm_scheduler.state_dict(),
                 "ac_optimizer": self.ac_optimizer.state_dict(), "ac_scheduler": self.ac_scheduler.state_dict(),
                 "numpy_rng": self.rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                 "recent_returns": self.recent_returns}
        if torch.cuda.is_available():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        buffer = io.BytesIO()
        torch.save(state, buffer)
        path = self.run_dir / CHECKPOINT_FILE
        atomic_write_bytes(path, buffer.getvalue())
        return path

    def load_checkpoint(self) -> None:
        path = self.run_dir / CHECKPOINT_FILE
        state = _read_checkpoint(path, self.device)
        # Through from_dict, so that a section added since the run was saved compares as its default.
        differences = _config_differences(to_dict(from_dict(state["config"])), to_dict(self.cfg))
        if differences - RESUMABLE_CHANGES:
            saved = state["config"]
            raise IncompatibleCheckpoint(
                f"{path} was written by preset {saved['preset']!r} ({saved['method']}) and differs from this "
                f"command in {sorted(differences - RESUMABLE_CHANGES)}; rerun with the run's original settings "
                f"(see {self.run_dir / CONFIG_FILE}) or choose another --run-dir")
        self.agent.load_state_dict(state["agent"])
        for name in ("wm_optimizer", "wm_scheduler", "ac_optimizer", "ac_scheduler"):
            getattr(self, name).load_state_dict(state[name])
        self.rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"].cpu())
        if "cuda_rng" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.recent_returns = state["recent_returns"]
        self.replay = ReplayBuffer.load(self.run_dir / REPLAY_DIR)
        for episode in self.replay.episodes:
            if not episode.finished:  # the emulator state is gone: that episode ends here, cut short
                episode.finish_truncated()
        # The replay is saved before the checkpoint, so it may hold steps the checkpoint has not counted.
        self.counters = {**state["counters"], "env_steps": self.replay.num_steps}

    # -- output ---------------------------------------------------------------------------------

    def _log(self, record: dict) -> None:
        with open(self.run_dir / METRICS_FILE, "a") as handle:
            handle.write(json.dumps(record) + "\n")

    def _say(self, message: str) -> None:
        if not self.quiet:
            tqdm.write(message)


def _config_differences(saved: dict, current: dict, prefix: str = "") -> set[str]:
    keys = set(saved) | set(current)
    differences = set()
    for key in keys:
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            differences |= _config_differences(a, b, prefix + key + ".")
        elif a != b:
            differences.add(prefix + key)
    return differences


def load_run(run_dir: str | Path, device: str | None = None) -> tuple[Config, Agent, ReplayBuffer]:
    """A run folder's config, its agent with the last checkpoint's weights, and its replay (for evaluation)."""
    run_dir = Path(run_dir)
    cfg, agent, _ = _load_run_agent(run_dir, device)
    return cfg, agent, ReplayBuffer.load(run_dir / REPLAY_DIR)


def export_agent(run_dir: str | Path, path: str | Path) -> Path:
    """Write a run's config and agent weights (no optimiser state, no replay) to one small file, atomically.

    For sharing a trained agent and for the notebooks' shipped checkpoint; read it with :func:`load_agent`.
    """
    run_dir, path = Path(run_dir), Path(path)
    _, agent, counters = _load_run_agent(run_dir, "cpu")
    saved_config = json.loads((run_dir / CONFIG_FILE).read_text())  # as trained, not the CPU it was loaded on
    scores_file = run_dir / FINAL_SCORES_FILE
    final_scores = json.loads(scores_file.read_text()) if scores_file.is_file() else None
    state = {"kind": AGENT_FILE_KIND, "version": CHECKPOINT_VERSION, "jedi_core": jedi_core.__version__,
             "config": saved_config, "agent": agent.state_dict(), "counters": counters,
             "final_scores": final_scores}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def load_agent(path: str | Path, device: str | None = None) -> tuple[Config, Agent, dict]:
    """An exported agent file's config, agent (in eval mode) and metadata (counters, final scores)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no agent file at {path} (make one with `python -m jedi_core export RUN_DIR {path}`)")
    state = _read_checkpoint(path, torch.device("cpu"))
    if state.get("kind") != AGENT_FILE_KIND:
        raise IncompatibleCheckpoint(f"{path} is not an exported agent file; a run's checkpoint.pt is read with "
                                     "load_run(RUN_DIR)")
    cfg = from_dict(state["config"])
    if device is not None:
        cfg = apply_overrides(cfg, [f"device={device}"])
    agent = Agent(cfg, env_num_actions(cfg.env))
    agent.load_state_dict(state["agent"])
    agent = agent.to(resolve_device(cfg.device)).eval()
    return cfg, agent, {"counters": state["counters"], "final_scores": state["final_scores"]}


def _load_run_agent(run_dir: Path, device: str | None) -> tuple[Config, Agent, dict]:
    for name in (CONFIG_FILE, CHECKPOINT_FILE):
        if not (run_dir / name).is_file():
            raise FileNotFoundError(f"{run_dir} has no {name}: is it a run folder made by `train` (and has it "
                                    "saved a checkpoint yet)?")
    cfg = from_dict(json.loads((run_dir / CONFIG_FILE).read_text()))
    if device is not None:
        cfg = apply_overrides(cfg, [f"device={device}"])
    device = resolve_device(cfg.device)
    state = _read_checkpoint(run_dir / CHECKPOINT_FILE, device)
    agent = Agent(cfg, env_num_actions(cfg.env)).to(device)
    agent.load_state_dict(state["agent"])
    return cfg, agent, state["counters"]


def _read_checkpoint(path: Path, device: torch.device) -> dict:
    state = torch.load(path, map_location=device, weights_only=False)
    if state.get("version") != CHECKPOINT_VERSION:
        raise IncompatibleCheckpoint(f"{path} is checkpoint version {state.get('version')}; this jedi_core "
                                     f"({jedi_core.__version__}) reads version {CHECKPOINT_VERSION}")
    return state


def default_run_dir(cfg: Config) -> Path:
    game = cfg.env.game if cfg.env.kind == "atari" else "toy"
    return Path("runs") / f"{cfg.method}_{cfg.preset}_{game}_seed{cfg.seed}"


