"""Dataclass configs, named presets and command-line overrides.

A config is a tree of dataclasses. A *preset* is a function returning one (``smoke``, ``colab``,
``atari100k``, ``diamond``); presets change numbers, never code paths. Overrides use dotted keys::

    cfg = make_config("atari100k", ["env.game=Pong", "seed=3"])

Every field is checked against its type hint and, where given, its allowed values or range, so a
typo fails at once with a message naming the field and what it accepts. Later sections (world model,
training) are added as new dataclasses on :class:`Config`; the validation and override machinery
needs no change for them.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """A config key or value that is not allowed; the message says which and what is."""


def option(default: Any, *, choices: Sequence[Any] | None = None, low: float | None = None,
           high: float | None = None, help: str = "") -> Any:
    """A dataclass field with its allowed values (``choices``) or inclusive range (``low``/``high``)."""
    meta = {"choices": tuple(choices) if choices is not None else None, "low": low, "high": high, "help": help}
    if isinstance(default, (list, dict)):
        raise TypeError("use tuples for sequence defaults so configs stay immutable")
    return field(default=default, metadata=meta)


# ----------------------------------------------------------------------------------------------
# Sections


@dataclass(frozen=True)
class EnvConfig:
    """The environment and the Atari100k protocol (DESIGN §3)."""

    kind: str = option("atari", choices=("atari", "toy"), help="a real Atari game or the toy Catch game")
    game: str = option("Breakout", help="one of the 26 Atari100k games (ignored by the toy game)")
    frame_skip: int = option(4, low=1, high=16, help="agent step = this many emulator frames")
    stochastic_frame_skip: bool = option(False, help="draw the skip uniformly from frame_skip_range each step")
    frame_skip_range: tuple[int, int] = option((2, 6), help="inclusive range of the stochastic frame skip")
    noop_max: int = option(30, low=0, high=1000, help="up to this many no-ops at reset")
    screen_size: int = option(64, low=8, high=256, help="observations are screen_size x screen_size RGB")
    max_episode_frames: int = option(108_000, low=1, help="emulator-frame cap of one episode (truncation)")
    repeat_action_probability: float = option(0.0, low=0.0, high=1.0, help="sticky actions; 0 in Atari100k")
    num_envs: int = option(1, low=1, high=256, help="environments stepped together when collecting")
    vector_mode: str = option("sync", choices=("sync", "async"), help="sync: one process; async: one per env")

    def validate(self) -> None:
        lo, hi = self.frame_skip_range
        if not 1 <= lo <= hi:
            raise ConfigError(f"env.frame_skip_range: {self.frame_skip_range!r} must satisfy 1 <= low <= high")
        if self.kind == "atari":
            from jedi_core.envs.games import canonical_game_name

            canonical_game_name(self.game)  # raises a helpful error for an unknown game


@dataclass(frozen=True)
class ReplayConfig:
    """Replay storage and sampling (DESIGN §4, DIAMOND's recency weights)."""

    sample_weights: tuple[float, ...] = option(
        (0.1, 0.1, 0.1, 0.7), help="sampling weight of each recency group of episodes, oldest first")

    def validate(self) -> None:
        if not self.sample_weights or any(w < 0 for w in self.sample_weights) or sum(self.sample_weights) <= 0:
            raise ConfigError(f"replay.sample_weights: {self.sample_weights!r} must be non-negative numbers "
                              "with a positive sum, e.g. (0.1, 0.1, 0.1, 0.7)")


@dataclass(frozen=True)
class EncoderConfig:
    """JEDI's encoder: 64x64x3 frame -> C x 8 x 8 latent, squashed by ``clamp * tanh(z / clamp)``."""

    channels: tuple[int, ...] = option((32, 32, 32, 16), help="channels per stage; the last is the latent's")
    downsample: tuple[int, ...] = option((1, 1, 1, 0), help="1: halve the resolution after that stage")
    clamp: float = option(3.0, low=0.1, help="latent clamp s in s*tanh(z/s), also applied to denoised latents")
    lr_scale: float = option(0.3, low=0.0, high=10.0, help="encoder learning rate = lr_scale x world-model lr")

    def validate(self) -> None:
        _check_stages("world_model.encoder", self.channels, self.downsample)


@dataclass(frozen=True)
class EDMConfig:
    """EDM training constants (DIAMOND's values; JEDI's own are not published)."""

    sigma_data: float = option(0.5, low=1e-3, help="data std the preconditioning assumes")
    sigma_offset_noise: float = option(0.3, low=0.0, help="per-channel offset noise, folded into sigma")
    sigma_loc: float = option(-0.4, help="mean of ln(sigma) while training")
    sigma_scale: float = option(1.2, low=1e-3, help="std of ln(sigma) while training")
    sigma_min: float = option(2e-3, low=1e-6, help="training sigmas are clipped to [sigma_min, sigma_max]")
    sigma_max: float = option(20.0, low=1e-3)


@dataclass(frozen=True)
class SamplerConfig:
    """Karras schedule with an Euler (or Heun) sampler; JEDI uses 3 Euler steps."""

    num_steps: int = option(3, low=1, high=1000, help="denoising steps per imagined frame")
    sigma_min: float = option(2e-3, low=1e-6)
    sigma_max: float = option(5.0, low=1e-3)
    rho: float = option(7.0, low=1.0)
    order: int = option(1, choices=(1, 2), help="1: Euler, 2: Heun")
    s_churn: float = option(0.0, low=0.0, help="stochastic sampling; the stochastic-Atari runs use 1")
    s_tmin: float = option(0.0, low=0.0)
    s_tmax: float = option(1e9, low=0.0)
    s_noise: float = option(1.0, low=0.0)
    init_noise: str = option("unit", choices=("unit", "sigma_max"),
                             help="start noise std: 1 (DIAMOND, less drift) or sigma_max (textbook EDM)")


@dataclass(frozen=True)
class DenoiserConfig:
    """The conditional U-Net: one 160-channel level on 8x8 latents (JEDI) or four on 64x64 pixels (DIAMOND)."""

    channels: tuple[int, ...] = option((160,), help="channels per U-Net level")
    depths: tuple[int, ...] = option((2,), help="residual blocks per level")
    attention: tuple[int, ...] = option((0,), help="1: self-attention in that level (the middle always has it)")
    cond_channels: int = option(256, low=4, help="size of the noise + action conditioning vector")
    context_length: int = option(4, low=1, high=64, help="past frames/latents the next one is predicted from")
    edm: EDMConfig = field(default_factory=EDMConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)

    def validate(self) -> None:
        _check_levels("world_model.denoiser", self.channels, self.depths, self.attention)
        if self.cond_channels % (2 * self.context_length):
            raise ConfigError(f"world_model.denoiser.cond_channels: {self.cond_channels} must be a multiple of "
                              f"2 x context_length ({2 * self.context_length})")


@dataclass(frozen=True)
class RewardEndConfig:
    """Reward/termination model: conv encoder on (x_t, x_t+1) with action AdaGN, then an LSTM."""

    channels: tuple[int, ...] = option((32,), help="channels per level (2x downsampling between levels)")
    depths: tuple[int, ...] = option((4,), help="residual blocks per level")
    attention: tuple[int, ...] = option((0,))
    cond_channels: int = option(128, low=2, help="action embedding size")
    lstm_dim: int = option(512, low=1)

    def validate(self) -> None:
        _check_levels("world_model.reward_end", self.channels, self.depths, self.attention)


@dataclass(frozen=True)
class WorldModelConfig:
    """The world model and how it is trained (DESIGN §4)."""

    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    denoiser: DenoiserConfig = field(default_factory=DenoiserConfig)
    reward_end: RewardEndConfig = field(default_factory=RewardEndConfig)
    segment_steps: int = option(19, low=1, help="transitions per training segment (reward/end sees all of them)")
    num_targets: int = option(2, low=1, help="frames predicted per segment; the last ones of the segment")
    switch_prob: float = option(0.5, low=0.0, high=1.0,
                                help="random switching: chance a sequence conditions on its own prediction")
    switch_grad: bool = option(True, help="the switched-in prediction keeps its gradient")
    stop_gradient: bool = option(True, help="no gradient through the target latent (off only to show collapse)")
    decoder_probe: bool = option(False, help="train a pixel decoder on detached latents, for pictures only")
    probe_channels: tuple[int, ...] = option((64, 32, 32), help="decoder probe channels, one per 2x upsample")
    batch_size: int = option(32, low=1)
    lr: float = option(1e-4, low=0.0)
    weight_decay: float = option(1e-2, low=0.0)
    adam_eps: float = option(1e-8, low=0.0)
    warmup_steps: int = option(100, low=0, help="linear learning-rate warm-up")
    grad_clip_denoiser: float = option(1.0, low=0.0)
    grad_clip_other: float = option(100.0, low=0.0, help="gradient clip of the encoder and reward/end model")

    def validate(self) -> None:
        needed = self.denoiser.context_length + self.num_targets
        if self.segment_steps + 1 < needed:
            raise ConfigError(f"world_model.segment_steps: {self.segment_steps} transitions give "
                              f"{self.segment_steps + 1} frames, fewer than context_length + num_targets "
                              f"= {needed}")


@dataclass(frozen=True)
class ActorCriticConfig:
    """LSTM actor-critic trained by REINFORCE with a value baseline in imagination (DESIGN §4, DIAMOND)."""

    channels: tuple[int, ...] = option((32, 64), help="conv stem channels per stage (JEDI: on 16x8x8 latents)")
    downsample: tuple[int, ...] = option((0, 1), help="1: 2x max-pool after that stage")
    lstm_dim: int = option(512, low=1)
    horizon: int = option(15, low=1, help="imagined steps per rollout")
    gamma: float = option(0.985, low=0.0, high=1.0)
    lambda_: float = option(0.95, low=0.0, high=1.0, help="lambda of the lambda-returns")
    entropy_weight: float = option(1e-3, low=0.0)
    value_weight: float = option(1.0, low=0.0)
    temperature: float = option(1.0, low=1e-3, help="policy sampling temperature (DIAMOND lowered it on Freeway)")
    batch_size: int = option(32, low=1, help="imagined rollouts per update")
    lr: float = option(1e-4, low=0.0)
    weight_decay: float = option(0.0, low=0.0)
    adam_eps: float = option(1e-8, low=0.0)
    warmup_steps: int = option(100, low=0)
    grad_clip: float = option(100.0, low=0.0)

    def validate(self) -> None:
        _check_stages("actor_critic", self.channels, self.downsample)


@dataclass(frozen=True)
class TrainingConfig:
    """The epoch loop (DESIGN §4, DIAMOND's Atari schedule)."""

    initial_random_steps: int = option(5_000, low=0, help="uniformly random steps before the first epoch")
    env_steps_per_epoch: int = option(100, low=1, help="real steps collected per epoch (epsilon-greedy)")
    world_model_updates: int = option(400, low=0, help="world-model updates per epoch")
    actor_critic_updates: int = option(400, low=0, help="actor-critic updates per epoch")
    first_epoch_world_model_updates: int = option(10_000, low=0)
    first_epoch_actor_critic_updates: int = option(5_000, low=0)
    final_training_epochs: int = option(50, low=0, help="training-only epochs after the step budget is spent")
    epsilon: float = option(0.01, low=0.0, high=1.0, help="random-action rate while collecting")
    eval_every_epochs: int = option(50, low=0, help="periodic evaluation (0: only the final one)")
    periodic_eval_episodes: int = option(4, low=1)
    checkpoint_every_epochs: int = option(10, low=1)


@dataclass(frozen=True)
class PerformanceConfig:
    """How fast the same model runs (DESIGN §6). Changes speed and rounding, never the model or the schedule.

    Both are off by default: each is kept on for a preset only once the bench shows it helps on a GPU
    (``benchmarks/RESULTS.md``). A resumed run may change them.
    """

    precision: str = option("fp32", choices=("fp32", "bf16"),
                            help="bf16: autocast the forward passes (weights and optimiser stay fp32)")
    compile: str = option("off", choices=("off", "default", "reduce-overhead", "max-autotune"),
                          help="torch.compile the denoiser, the reward/end conv tower and the actor-critic with this mode "
                               "(reduce-overhead adds CUDA graphs); the first updates are slow while it compiles")


@dataclass(frozen=True)
class Config:
    """The whole configuration of a run."""

    preset: str = option("atari100k", help="the preset this config was built from (recorded in checkpoints)")
    method: str = option("jedi", choices=("jedi", "diamond"),
                         help="jedi: latent diffusion world model; diamond: the pixel-diffusion baseline")
    seed: int = option(0, low=0, high=2**31 - 1)
    device: str = option("auto", help="auto, cpu, cuda, cuda:N or mps")
    env_steps: int = option(100_000, low=1, help="agent steps of real experience (Atari100k: 100k = 400k frames)")
    eval_episodes: int = option(100, low=1, help="episodes of the final evaluation")
    env: EnvConfig = field(default_factory=EnvConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    world_model: WorldModelConfig = field(default_factory=WorldModelConfig)
    actor_critic: ActorCriticConfig = field(default_factory=ActorCriticConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    performance: PerformanceConfig = field(default_factory=PerformanceConfig)

    def validate(self) -> None:
        if not (self.device in ("auto", "cpu", "cuda", "mps") or
                (self.device.startswith("cuda:") and self.device[5:].isdigit())):
            raise ConfigError(f"device: {self.device!r} is not allowed; choose auto, cpu, cuda, cuda:N or mps")


# ----------------------------------------------------------------------------------------------
# Presets


def atari100k() -> Config:
    """Paper scale: the Atari100k protocol and budget (DESIGN §3)."""
    return Config(preset="atari100k")


def diamond() -> Config:
    """The pixel-diffusion baseline (DIAMOND) on the same protocol, for side-by-side comparison.

    DIAMOND's 4-level U-Net on 64x64 frames, its CNN reward/end model, and its autoregressive step: the
    second target always conditions on the (detached, 8-bit) first prediction.
    """
    cfg = atari100k()
    world_model = dataclasses.replace(
        cfg.world_model, switch_prob=1.0, switch_grad=False,
        denoiser=dataclasses.replace(cfg.world_model.denoiser, channels=(64, 64, 64, 64), depths=(2, 2, 2, 2),
                                     attention=(0, 0, 0, 0)),
        reward_end=RewardEndConfig(channels=(32, 32, 32, 32), depths=(2, 2, 2, 2), attention=(0, 0, 0, 0)))
    actor_critic = dataclasses.replace(cfg.actor_critic, channels=(32, 32, 64, 64), downsample=(1, 1, 1, 1))
    return dataclasses.replace(cfg, preset="diamond", method="diamond", world_model=world_model,
                               actor_critic=actor_critic)


def colab() -> Config:
    """One Colab GPU in a few hours: the full protocol on a reduced step budget."""
    return dataclasses.replace(atari100k(), preset="colab", env_steps=25_000, eval_episodes=20)


def smoke() -> Config:
    """A real Atari game end to end in about a minute on a CPU: every code path, tiny numbers."""
    world_model = WorldModelConfig(
        encoder=EncoderConfig(channels=(8, 8, 8, 4)),
        denoiser=DenoiserConfig(channels=(64,), depths=(2,), cond_channels=64),
        reward_end=RewardEndConfig(channels=(16,), depths=(1,), cond_channels=16, lstm_dim=32),
        segment_steps=7, probe_channels=(16, 16, 8), batch_size=8)
    actor_critic = ActorCriticConfig(channels=(8, 16), lstm_dim=32, horizon=5, batch_size=8)
    training = TrainingConfig(initial_random_steps=100, env_steps_per_epoch=50, world_model_updates=5,
                              actor_critic_updates=5, first_epoch_world_model_updates=10,
                              first_epoch_actor_critic_updates=5, final_training_epochs=1, eval_every_epochs=2,
                              periodic_eval_episodes=1, checkpoint_every_epochs=1)
    return dataclasses.replace(atari100k(), preset="smoke", env_steps=300, eval_episodes=1,
                               env=dataclasses.replace(EnvConfig(), max_episode_frames=2_000),
                               world_model=world_model, actor_critic=actor_critic, training=training)


def smoke_diamond() -> Config:
    """The pixel baseline at smoke size (tests and CI)."""
    cfg = diamond()
    world_model = dataclasses.replace(
        smoke().world_model, switch_prob=1.0, switch_grad=False,
        denoiser=DenoiserConfig(channels=(16, 16), depths=(1, 1), attention=(0, 0), cond_channels=32),
        reward_end=RewardEndConfig(channels=(8, 8, 8, 8), depths=(1, 1, 1, 1), attention=(0, 0, 0, 0),
                                   cond_channels=16, lstm_dim=32))
    actor_critic = dataclasses.replace(smoke().actor_critic, channels=(8, 8, 16, 16), downsample=(1, 1, 1, 1))
    return dataclasses.replace(smoke(), preset="smoke_diamond", method=cfg.method, world_model=world_model,
                               actor_critic=actor_critic)


def toy() -> Config:
    """The toy Catch game, learnt on a 2-core CPU in minutes (the learning test and the notebooks).

    Smoke-sized models with a smaller denoiser, learning rates 10-20x the paper's (short runs), a first
    epoch long enough for the reward model to learn what a catch looks like from random play (an
    actor-critic trained on a reward model that has not yet learnt catches settles on a poor policy), and
    a 10x entropy bonus that keeps the policy exploring while it recovers from such a start.
    """
    cfg = smoke()
    world_model = dataclasses.replace(
        cfg.world_model, lr=1e-3, warmup_steps=10, segment_steps=5, batch_size=16,
        denoiser=dataclasses.replace(cfg.world_model.denoiser, channels=(32,), depths=(1,), cond_channels=32))
    actor_critic = dataclasses.replace(cfg.actor_critic, horizon=7, batch_size=16, lr=2e-3, warmup_steps=10,
                                       entropy_weight=1e-2)
    training = dataclasses.replace(cfg.training, initial_random_steps=1_000, env_steps_per_epoch=100,
                                   world_model_updates=20, actor_critic_updates=20,
                                   first_epoch_world_model_updates=500, first_epoch_actor_critic_updates=50,
                                   final_training_epochs=0, eval_every_epochs=2, periodic_eval_episodes=20,
                                   checkpoint_every_epochs=5)
    return dataclasses.replace(cfg, preset="toy", env_steps=4_000, eval_episodes=100,
                               env=dataclasses.replace(cfg.env, kind="toy"), world_model=world_model,
                               actor_critic=actor_critic, training=training)


PRESETS: dict[str, Callable[[], Config]] = {
    "smoke": smoke, "smoke_diamond": smoke_diamond, "toy": toy, "colab": colab, "atari100k": atari100k, "diamond": diamond}


# ----------------------------------------------------------------------------------------------
# Building, overriding and validating


def make_config(preset: str = "atari100k", overrides: Sequence[str] = ()) -> Config:
    """Build a preset, apply ``key=value`` overrides, validate every field, return the config."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}"
                          + _did_you_mean(preset, PRESETS))
    cfg = apply_overrides(PRESETS[preset](), overrides)
    validate(cfg)
    return cfg


def apply_overrides(cfg: Any, overrides: Sequence[str]) -> Any:
    """Return a copy of ``cfg`` with each ``dotted.key=value`` applied (values parsed per field type)."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} must look like key=value, e.g. env.game=Pong")
        cfg = _set(cfg, key.strip().split("."), raw.strip(), prefix="")
    return cfg


def validate(cfg: Any, prefix: str = "") -> None:
    """Check every field of a config tree against its type, choices and range, then its own rules."""
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        value, name = getattr(cfg, f.name), prefix + f.name
        if dataclasses.is_dataclass(hints[f.name]):
            validate(value, name + ".")
            continue
        _check_type(name, value, hints[f.name])
        choices, low, high = f.metadata.get("choices"), f.metadata.get("low"), f.metadata.get("high")
        if choices is not None and value not in choices:
            raise ConfigError(f"{name}: {value!r} is not allowed; choose one of: {', '.join(map(str, choices))}"
                              + _did_you_mean(str(value), [str(c) for c in choices]))
        if (low is not None and value < low) or (high is not None and value > high):
            raise ConfigError(f"{name}: {value!r} is out of range; allowed: "
                              f"{low if low is not None else '-inf'} <= {f.name} <= "
                              f"{high if high is not None else 'inf'}")
    if hasattr(cfg, "validate"):
        cfg.validate()


def to_dict(cfg: Any) -> dict[str, Any]:
    """The config as plain JSON-ready data (tuples become lists)."""
    return dataclasses.asdict(cfg)


def from_dict(data: dict[str, Any], cls: type = Config) -> Any:
    """Rebuild a config from :func:`to_dict` output; unknown or missing keys are errors."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"unknown config keys {sorted(unknown)} for {cls.__name__}; valid: {sorted(names)}")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        kwargs[name] = from_dict(value, hint) if dataclasses.is_dataclass(hint) else _coerce_data(value, hint)
    cfg = cls(**kwargs)
    if cls is Config:
        validate(cfg)
    return cfg


def describe(cfg: Any, prefix: str = "") -> list[str]:
    """One line per field, ``key = value  # help``, for ``--help`` texts and printing a run's config."""
    hints, lines = typing.get_type_hints(type(cfg)), []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(hints[f.name]):
            lines += describe(value, prefix + f.name + ".")
        else:
            note = f.metadata.get("help", "")
            lines.append(f"{prefix + f.name} = {value!r}" + (f"  # {note}" if note else ""))
    return lines


# ----------------------------------------------------------------------------------------------
# Helpers


def _check_stages(section: str, channels: tuple[int, ...], downsample: tuple[int, ...]) -> None:
    if len(channels) != len(downsample) or any(d not in (0, 1) for d in downsample):
        raise ConfigError(f"{section}.downsample: {downsample!r} needs one 0 or 1 per stage of channels {channels!r}")


def _check_levels(section: str, channels: tuple[int, ...], depths: tuple[int, ...], attention: tuple[int, ...]
                  ) -> None:
    if not len(channels) == len(depths) == len(attention):
        raise ConfigError(f"{section}: channels, depths and attention need one entry per level, got "
                          f"{channels!r}, {depths!r}, {attention!r}")


def _did_you_mean(word: str, candidates: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _set(cfg: Any, path: list[str], raw: str, prefix: str) -> Any:
    names = [f.name for f in dataclasses.fields(cfg)]
    head = path[0]
    if head not in names:
        where = f" in {prefix[:-1]}" if prefix else ""
        raise ConfigError(f"unknown config key {prefix + head!r}{_did_you_mean(head, names)}; "
                          f"valid keys{where}: {', '.join(names)}")
    hint = typing.get_type_hints(type(cfg))[head]
    current = getattr(cfg, head)
    if dataclasses.is_dataclass(hint):
        if len(path) == 1:
            raise ConfigError(f"{prefix + head!r} is a section; set one of its keys, e.g. "
                              f"{prefix + head}.{dataclasses.fields(current)[0].name}=...")
        return dataclasses.replace(cfg, **{head: _set(current, path[1:], raw, prefix + head + ".")})
    if len(path) > 1:
        raise ConfigError(f"{prefix + head!r} is a value, not a section: drop '.{'.'.join(path[1:])}'")
    return dataclasses.replace(cfg, **{head: _parse(prefix + head, raw, hint)})


def _parse(name: str, raw: str, hint: Any) -> Any:
    """Turn command-line text into a value of the field's type, or say what was expected."""
    try:
        if hint is str:
            return raw
        if hint is bool:
            lowered = raw.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if hint is int:
            return int(raw.replace("_", ""))
        if hint is float:
            return float(raw)
        if typing.get_origin(hint) is tuple:
            text = raw.strip()
            items = ast.literal_eval(text if text[:1] in "([" else f"({text},)")
            return _coerce_data(list(items) if isinstance(items, (list, tuple)) else [items], hint)
    except (ValueError, SyntaxError, TypeError):
        pass
    raise ConfigError(f"{name}: cannot read {raw!r} as {_type_name(hint)}")


def _coerce_data(value: Any, hint: Any) -> Any:
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        item_type = args[0]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"expected a sequence for {_type_name(hint)}, got {value!r}")
        return tuple(float(v) if item_type is float and isinstance(v, int) and not isinstance(v, bool) else v
                     for v in value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _check_type(name: str, value: Any, hint: Any) -> None:
    ok: bool
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        item_types = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
        ok = isinstance(value, tuple) and len(item_types) == len(value) and all(
            _is_instance(v, t) for v, t in zip(value, item_types, strict=True))
    elif isinstance(hint, type):
        ok = isinstance(value, hint)
    else:
        ok = True
    if not ok:
        raise ConfigError(f"{name}: {value!r} is not {_type_name(hint)}")


def _is_instance(value: Any, hint: Any) -> bool:
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {args[0].__name__} (e.g. 0.1,0.1,0.1,0.7)"
        return f"a list of {len(args)} values ({', '.join(a.__name__ for a in args)})"
    if isinstance(hint, types.UnionType):
        return str(hint)
    return {bool: "true or false", int: "an integer", float: "a number", str: "text"}.get(hint, str(hint))
