"""Every loop over the real environment: the initial random collection, collection with the agent, evaluation.

Each recorded step goes through :func:`step_and_record`, so the replay always holds the same fields (the
life-loss flag included) whoever played the step. While training (``replay.split_at_life_loss``, as in
DIAMOND) a lost life ends the replay episode and the actor's memory, and the game plays on: the next
episode starts from the same frame. Evaluation plays whole games with the sampled policy at epsilon 0, on
several environments side by side (:func:`evaluate`); lost lives never end an evaluation episode.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from tqdm.auto import tqdm

from jedi_core.agent import Agent
from jedi_core.config import Config, EnvConfig
from jedi_core.envs import make_env
from jedi_core.nn.blocks import LSTMState
from jedi_core.replay import Episode, ReplayBuffer

#: A collector's k-th reset is seeded ``seed * RESET_SEED_STRIDE + k``: a resumed run replays the same starts,
#: and two seeds' sequences do not overlap for the first 100,003 resets.
RESET_SEED_STRIDE = 100_003


def step_and_record(env: gym.Env, episode: Episode, action: int) -> tuple[np.ndarray, float, bool]:
    """Take ``action`` in ``env`` and append the transition to ``episode``; returns (frame, reward, done)."""
    obs, reward, terminated, truncated, info = env.step(action)
    episode.append(action, float(reward), obs, terminated=terminated, truncated=truncated,
                   life_loss=bool(info.get("life_loss", False)))
    return obs, float(reward), terminated or truncated


def start_next_life(replay: ReplayBuffer, episode: Episode, obs: np.ndarray) -> Episode:
    """A life was lost and the game plays on: end ``episode`` there and start the next one from ``obs``, the
    frame the lost life ended on (DIAMOND's training episodes are single lives)."""
    episode.finish_at_life_loss()
    return replay.new_episode(obs)


def collect_random_steps(env_cfg: EnvConfig, num_steps: int, seed: int, replay: ReplayBuffer | None = None,
                         split_at_life_loss: bool = False) -> ReplayBuffer:
    """Play ``num_steps`` uniformly random actions and record every transition (life-loss flags included);
    ``split_at_life_loss`` ends a replay episode at each lost life, as training collection does."""
    replay = ReplayBuffer() if replay is None else replay
    env = make_env(env_cfg)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    episode = replay.new_episode(obs)
    for _ in range(num_steps):
        action = int(rng.integers(env.action_space.n))
        obs, _, done = step_and_record(env, episode, action)
        if done:
            obs, _ = env.reset()
            episode = replay.new_episode(obs)
        elif split_at_life_loss and episode.life_loss[-1]:
            episode = start_next_life(replay, episode, obs)
    env.close()
    return replay


class Collector:
    """Plays the real environment with the agent, recording every step; keeps its episode across epochs."""

    def __init__(self, cfg: Config, replay: ReplayBuffer, agent: Agent, seed: int, resets: int = 0):
        self.env = make_env(cfg.env)
        self.replay = replay
        self.agent = agent
        self.seed = seed
        self.split_at_life_loss = cfg.replay.split_at_life_loss
        self.resets = resets  # how many episodes this run has started: the next reset's seed follows from it
        self.episode: Episode | None = None
        self.obs: np.ndarray | None = None
        self.state: LSTMState | None = None
        self.episode_return = 0.0

    def _reset(self) -> None:
        self.obs, _ = self.env.reset(seed=self.seed * RESET_SEED_STRIDE + self.resets)
        self.resets += 1
        self.episode = self.replay.new_episode(self.obs)
        self.state = self.agent.initial_state(1)
        self.episode_return = 0.0

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
            self.obs, reward, done = step_and_record(self.env, self.episode, action)
            self.episode_return += reward
            if done:
                finished.append(self.episode_return)
            elif self.split_at_life_loss and self.episode.life_loss[-1]:
                self._next_life()
        return finished

    def _next_life(self) -> None:
        """A life was lost and the game goes on: a new replay episode from this frame, the actor's memory
        zeroed. The game's return keeps adding up across lives."""
        self.episode = start_next_life(self.replay, self.episode, self.obs)
        self.state = self.agent.initial_state(1)


@dataclass
class _EvalSlot:
    """One environment of :func:`evaluate` and the episode it plays (``episode`` is None when idle)."""

    env: gym.Env
    episode: int | None = None
    obs: np.ndarray | None = None
    steps: int = 0
    total: float = 0.0
    done: bool = False

    def start(self, episode: int, seed: int) -> None:
        self.obs, _ = self.env.reset(seed=seed)
        self.episode = episode
        self.steps = 0
        self.total = 0.0
        self.done = False

    def step(self, action: int) -> None:
        self.obs, reward, terminated, truncated, _ = self.env.step(action)
        self.steps += 1
        self.total += float(reward)
        self.done = terminated or truncated

    def over(self, max_steps: int | None) -> bool:
        """Idle, or its episode has ended or reached ``max_steps``."""
        capped = max_steps is not None and self.steps >= max_steps
        return self.episode is None or self.done or capped


@torch.no_grad()
def evaluate(agent: Agent, cfg: Config, episodes: int, seed: int,
             max_steps: int | None = None, progress: bool = False) -> list[float]:
    """Mean-return protocol: full episodes (lost lives do not end them), sampled policy, epsilon 0, episode
    ``i`` reset with seed ``seed + i``; the returns come back in episode order.

    ``min(env.eval_envs, episodes)`` environments play side by side and the actor acts on all of them in one
    batch (a batch-1 forward per step leaves a GPU idle). Every episode is started exactly once and played
    to its end, an environment whose episode ends taking the next unstarted one: stopping once ``episodes``
    had ended would over-represent short episodes. Each episode sees the frames that one environment
    playing the episodes one by one (:func:`~jedi_core.agent.play_episode`) would show for the same
    actions. ``progress`` shows a bar over the ended episodes (a hundred Atari games take minutes to an
    hour).
    """
    agent.eval()
    slots = [_EvalSlot(make_env(cfg.env)) for _ in range(min(cfg.env.eval_envs, episodes))]
    envs = [slot.env for slot in slots]
    unstarted = list(range(episodes))[::-1]  # pop() gives the next episode index
    returns = [0.0] * episodes
    state = agent.initial_state(len(slots))
    with tqdm(total=episodes, desc="evaluation", unit="episode", disable=not progress) as bar:
        while True:
            for slot in slots:
                _next_episode(slot, unstarted, seed, max_steps, returns, bar)
            state = _state_of_playing_slots(slots, state)
            slots = [slot for slot in slots if slot.episode is not None]
            if not slots:
                break
            actions, state = agent.act(np.stack([slot.obs for slot in slots]), state, epsilon=0.0)
            for slot, action in zip(slots, actions, strict=True):
                slot.step(int(action))
    for env in envs:
        env.close()
    return returns


def _next_episode(slot: _EvalSlot, unstarted: list[int], seed: int, max_steps: int | None,
                  returns: list[float], bar: tqdm) -> None:
    """If ``slot``'s episode is over, record its return and start the next unstarted episode there (the slot
    is left idle when none is left)."""
    while slot.over(max_steps):
        if slot.episode is not None:
            returns[slot.episode] = slot.total
            bar.update()
            slot.episode = None
        if not unstarted:
            return
        episode = unstarted.pop()
        slot.start(episode, seed + episode)


def _state_of_playing_slots(slots: list[_EvalSlot], state: LSTMState) -> LSTMState:
    """The actor's state for the slots still playing: rows zeroed where an episode has just started, rows of
    idle slots dropped. New tensors, never in place: the state may be a compiled network's output."""
    hidden, cell = state
    fresh = [slot.steps == 0 for slot in slots]
    if any(fresh):
        mask = torch.tensor(fresh, device=hidden.device)[:, None]
        hidden = hidden.masked_fill(mask, 0.0)
        cell = cell.masked_fill(mask, 0.0)
    playing = [row for row, slot in enumerate(slots) if slot.episode is not None]
    if len(playing) < len(slots):
        hidden = hidden[playing]
        cell = cell[playing]
    return hidden, cell
