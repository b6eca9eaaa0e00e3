"""The configuration of a run: its sections, field by field (the named presets are in
:mod:`jedi_core.presets`).

A config is a tree of frozen dataclasses, one section per part of the method (environment, replay, world
model, actor-critic, training schedule, performance, logging). A *preset* is a function returning one
(``smoke``, ``toy``, ``colab``, ``atari100k``, ``diamond``, ``smoke_diamond``); presets change numbers, never
code paths. Overrides use dotted keys::

    cfg = make_config("atari100k", ["env.game=Pong", "seed=3"])

Every field is declared with :func:`~jedi_core.configlib.option`: its default, and the values or range it
accepts, so a typo fails at once with a message naming the field and what it accepts. The machinery that
parses, checks and serialises the tree is generic and lives in :mod:`jedi_core.configlib`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from jedi_core.configlib import ConfigError, option

# ----------------------------------------------------------------------------------------------
# Sections


@dataclass(frozen=True)
class EnvConfig:
    """The environment and the Atari100k protocol."""

    kind: str = option("atari", choices=("atari", "toy"), help="a real Atari game or the toy Catch game")
    game: str = option("Breakout", help="one of the 26 Atari100k games (ignored by the toy game)")
    frame_skip: int = option(4, low=1, high=16, help="agent step = this many emulator frames")
    stochastic_frame_skip: bool = option(False,
                                         help="draw the skip uniformly from frame_skip_range each step")
    frame_skip_range: tuple[int, int] = option((2, 6), help="inclusive range of the stochastic frame skip")
    noop_max: int = option(30, low=0, high=1000, help="up to this many no-ops at reset")
    screen_size: int = option(64, low=8, high=256, help="observations are screen_size x screen_size RGB")
    max_episode_frames: int = option(108_000, low=1, help="emulator-frame cap of one episode (truncation)")
    repeat_action_probability: float = option(0.0, low=0.0, high=1.0, help="sticky actions; 0 in Atari100k")
    num_envs: int = option(1, low=1, high=256, help="environments stepped together when collecting")
    vector_mode: str = option("sync", choices=("sync", "async"), help="sync: one process; async: one per env")
    eval_envs: int = option(16, low=1, help="environments played side by side in evaluation (each episode "
                                            "still starts once and plays to its end)")

    @property
    def game_name(self) -> str:
        """The Atari game's name, or ``"toy"`` for the toy game (run folders and score files use it)."""
        return self.game if self.kind == "atari" else "toy"

    def validate(self) -> None:
        lo, hi = self.frame_skip_range
        if not 1 <= lo <= hi:
            raise ConfigError(f"env.frame_skip_range: {self.frame_skip_range!r} must satisfy "
                              "1 <= low <= high")
        if self.kind == "atari":
            from jedi_core.envs.games import canonical_game_name

            canonical_game_name(self.game)  # raises a helpful error for an unknown game


@dataclass(frozen=True)
class ReplayConfig:
    """Replay storage and sampling (DIAMOND's recency weights)."""

    sample_weights: tuple[float, ...] = option(
        (0.1, 0.1, 0.1, 0.7), help="sampling weight of each recency group of episodes, oldest first")
    split_at_life_loss: bool = option(
        True, help="while training, end a replay episode at each lost life and reset the actor's memory "
                   "there (DIAMOND); the game plays on. Evaluation always plays whole games")

    def validate(self) -> None:
        weights = self.sample_weights
        if not weights or any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ConfigError(f"replay.sample_weights: {self.sample_weights!r} must be non-negative numbers "
                              "with a positive sum, e.g. (0.1, 0.1, 0.1, 0.7)")


@dataclass(frozen=True)
class EncoderConfig:
    """JEDI's encoder: 64x64x3 frame -> C x 8 x 8 latent, squashed by ``clamp * tanh(z / clamp)``."""

    channels: tuple[int, ...] = option((32, 32, 32, 16), help="channels per stage; the last is the latent's")
    downsample: tuple[int, ...] = option((1, 1, 1, 0), help="1: halve the resolution after that stage")
    clamp: float = option(3.0, low=0.1,
                          help="latent clamp s in s*tanh(z/s), also applied to denoised latents")
    lr_scale: float = option(0.3, low=0.0, high=10.0,
                             help="encoder learning rate = lr_scale x world-model lr")

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
    """The conditional U-Net: one 160-channel level on 8x8 latents (JEDI), four on 64x64 pixels (DIAMOND)."""

    channels: tuple[int, ...] = option((160,), help="channels per U-Net level")
    depths: tuple[int, ...] = option((1,), help="residual blocks per level (the paper's Table 3: one)")
    attention: tuple[int, ...] = option((0,),
                                        help="1: self-attention in that level (the middle always has it)")
    cond_channels: int = option(256, low=4, help="size of the noise + action conditioning vector")
    context_length: int = option(4, low=1, high=64, help="past frames/latents the next one is predicted from")
    edm: EDMConfig = field(default_factory=EDMConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)

    def validate(self) -> None:
        _check_levels("world_model.denoiser", self.channels, self.depths, self.attention)
        if self.cond_channels % (2 * self.context_length):
            raise ConfigError(f"world_model.denoiser.cond_channels: {self.cond_channels} must be a "
                              f"multiple of 2 x context_length ({2 * self.context_length})")


@dataclass(frozen=True)
class RewardEndConfig:
    """Reward/termination model: conv encoder on (x_t, x_t+1) with action AdaGN, then an LSTM."""

    channels: tuple[int, ...] = option((32,), help="channels per level (2x downsampling between levels)")
    depths: tuple[int, ...] = option((4,), help="residual blocks per level")
    attention: tuple[int, ...] = option((0,))
    cond_channels: int = option(128, low=2, help="action embedding size")
    lstm_dim: int = option(512, low=1)
    next_input: str = option("real", choices=("real", "sampled"),
                             help="the x_t+1 the model trains on once a full context precedes it: real: "
                                  "the encoder's latent of the real next frame (DIAMOND); sampled: the "
                                  "denoiser's sample of it from the real context, what imagination feeds it")

    def validate(self) -> None:
        _check_levels("world_model.reward_end", self.channels, self.depths, self.attention)


@dataclass(frozen=True)
class WorldModelConfig:
    """The world model and how it is trained."""

    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    denoiser: DenoiserConfig = field(default_factory=DenoiserConfig)
    reward_end: RewardEndConfig = field(default_factory=RewardEndConfig)
    segment_steps: int = option(18, low=1,
                                help="transitions per reward/end training window (DIAMOND: 19 frames)")
    num_targets: int = option(2, low=1, help="frames predicted per segment; the last ones of the segment")
    switch_prob: float = option(0.5, low=0.0, high=1.0,
                                help="random switching: chance the context is the model's own prediction")
    switch_grad: bool = option(True, help="the switched-in prediction keeps its gradient")
    stop_gradient: bool = option(True,
                                 help="no gradient through the target latent (off only to show collapse)")
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
    """LSTM actor-critic trained by REINFORCE with a value baseline in imagination (DIAMOND)."""

    channels: tuple[int, ...] = option((32, 64),
                                       help="conv stem channels per stage (JEDI: on 16x8x8 latents)")
    downsample: tuple[int, ...] = option((0, 1), help="1: 2x max-pool after that stage")
    lstm_dim: int = option(512, low=1)
    horizon: int = option(15, low=1, help="imagined steps per rollout")
    gamma: float = option(0.985, low=0.0, high=1.0)
    lambda_: float = option(0.95, low=0.0, high=1.0, help="lambda of the lambda-returns")
    entropy_weight: float = option(1e-3, low=0.0)
    value_weight: float = option(1.0, low=0.0)
    temperature: float = option(1.0, low=1e-3,
                                help="policy sampling temperature (DIAMOND lowered it on Freeway)")
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
    """The epoch loop (DIAMOND's Atari schedule)."""

    initial_random_steps: int = option(5_000, low=0, help="uniformly random steps before the first epoch")
    initial_minority_rewards: int = option(
        10, low=0, help="then keep collecting random steps, an epoch's worth at a time, until this many "
                        "transitions have a reward sign other than the commonest (0: stop there)")
    initial_random_steps_max: int = option(10_000, low=0, help="the most random steps that rule may collect")
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

    def validate(self) -> None:
        if self.initial_random_steps_max < self.initial_random_steps:
            raise ConfigError(f"training.initial_random_steps_max: {self.initial_random_steps_max} must be "
                              f"at least training.initial_random_steps ({self.initial_random_steps})")


@dataclass(frozen=True)
class PerformanceConfig:
    """How fast the same model runs. Changes speed and rounding, never the model or the schedule.

    Each is off by default until a measurement shows it helps (``channels_last`` is on for a CPU:
    ``benchmarks/profile_run.py``). A resumed run may change them.
    """

    precision: str = option("fp32", choices=("fp32", "bf16"),
                            help="bf16: autocast the forward passes (weights and optimiser stay fp32)")
    compile: str = option("off", choices=("off", "default", "reduce-overhead", "max-autotune"),
                          help="torch.compile the denoiser, the reward/end conv tower, the actor-critic and "
                               "JEDI's encoder with this mode (reduce-overhead adds inductor's CUDA graphs; "
                               "cuda_graphs is the project's own); the first updates are slow: it compiles")
    cuda_graphs: bool = option(False, help="replay each update's loss, backward pass and clipping (an "
                                           "actor-critic update's whole imagined rollout) from a CUDA graph "
                                           "(one launch instead of thousands; on a CPU the same buffers run "
                                           "eagerly)")
    channels_last: str = option("auto", choices=("auto", "on", "off"),
                                help="keep conv weights and activations channels-last (NHWC); auto: on a CPU "
                                     "(oneDNN runs the convolutions 1.3-1.5x faster so), off on a GPU")
    tf32: bool = option(False, help="GPU matmuls and convolutions in TF32 (10-bit mantissa inputs, fp32 "
                                    "sums)")
    cudnn_benchmark: bool = option(False, help="let cuDNN time its convolution algorithms once per shape")


@dataclass(frozen=True)
class LoggingConfig:
    """Where a run's metrics go besides ``metrics.jsonl``, which is always written and stays the record.

    A resumed run may change these.
    """

    tensorboard: bool = option(False, help="also write each metrics.jsonl line as TensorBoard scalars at its "
                                           "epoch, in RUN_DIR/tensorboard/ (needs jedi-core[tensorboard])")


@dataclass(frozen=True)
class Config:
    """The whole configuration of a run."""

    preset: str = option("atari100k", help="the preset this config was built from (recorded in checkpoints)")
    method: str = option("jedi", choices=("jedi", "diamond"),
                         help="jedi: latent diffusion world model; diamond: the pixel-diffusion baseline")
    seed: int = option(0, low=0, high=2**31 - 1)
    device: str = option("auto", help="auto, cpu, cuda, cuda:N or mps")
    env_steps: int = option(100_000, low=1,
                            help="agent steps of real experience (Atari100k: 100k = 400k frames)")
    eval_episodes: int = option(100, low=1, high=1_000,
                                help="episodes of the final evaluation (run seeds' episodes never overlap)")
    env: EnvConfig = field(default_factory=EnvConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    world_model: WorldModelConfig = field(default_factory=WorldModelConfig)
    actor_critic: ActorCriticConfig = field(default_factory=ActorCriticConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    performance: PerformanceConfig = field(default_factory=PerformanceConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    def validate(self) -> None:
        if not (self.device in ("auto", "cpu", "cuda", "mps") or
                (self.device.startswith("cuda:") and self.device[5:].isdigit())):
            raise ConfigError(f"device: {self.device!r} is not allowed; "
                              "choose auto, cpu, cuda, cuda:N or mps")


# ----------------------------------------------------------------------------------------------
# Rules shared by sections


def _check_stages(section: str, channels: tuple[int, ...], downsample: tuple[int, ...]) -> None:
    if len(channels) != len(downsample) or any(d not in (0, 1) for d in downsample):
        raise ConfigError(f"{section}.downsample: {downsample!r} needs one 0 or 1 per stage of channels "
                          f"{channels!r}")


def _check_levels(section: str, channels: tuple[int, ...], depths: tuple[int, ...], attention: tuple[int, ...]
                  ) -> None:
    if not len(channels) == len(depths) == len(attention):
        raise ConfigError(f"{section}: channels, depths and attention need one entry per level, got "
                          f"{channels!r}, {depths!r}, {attention!r}")

