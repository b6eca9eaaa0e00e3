"""World models behind one interface: JEDI's latent diffusion model and DIAMOND's pixel one.

Training (``forward(batch, part) -> (loss, logs)``), on one replay segment of T transitions:

1. **Encode** every frame. JEDI: a conv encoder to 16x8x8 latents, gradients on. Pixel baseline: identity.
2. **Reward/termination loss** on all T transitions, from those latents, so the encoder learns from it.
3. **Diffusion loss** on the last ``context_length + num_targets`` latents: predict each target from the
   previous ``context_length`` latents and actions, EDM-style.

   * *Stop-gradient*: the target latent (and so its noised copy) is detached. The encoder learns only
     through the *context* latents and the reward/end loss. Without it, encoder and denoiser can agree on a
     constant latent, which is trivially predictable (collapse).
   * *Random switching*: for the next target, the batch (the paper's Algorithm 1; each sequence on its own
     with ``switch_per="sequence"``) conditions, with probability ``switch_prob``, on the denoiser's own
     prediction of the previous target instead of the encoder's latent,
     as it will have to in imagination; the prediction keeps its gradient unless ``switch_grad`` is off.

``world_model.updates`` says how they are stepped, always through :func:`jedi_core.optim.optimizer_step`
with the encoder at 0.3x the learning rate: ``"separate"`` (the paper's Algorithm 1) runs diffusion
updates, then reward/end updates, each part with its own optimiser and batches (``forward(batch, part)``);
``"joint"`` sums both losses in one optimiser step.

Imagination: :meth:`WorldModel.burn_in` encodes a real context and warms up the reward model's LSTM;
:meth:`WorldModel.imagine_step` samples the next latent (3 Euler steps), then a reward and an end flag.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import Tensor, nn

from jedi_core.config import Config, WorldModelConfig
from jedi_core.cuda_graphs import StaticStep, StaticUpdate, static_imagine_step
from jedi_core.nn.blocks import LSTMState
from jedi_core.nn.diffusion import Denoiser, DenoiserNet
from jedi_core.nn.encoder import LatentEncoder, latent_clamp
from jedi_core.nn.ops import masked_mean, masked_std
from jedi_core.nn.probe import DecoderProbe
from jedi_core.nn.reward_end import RewardEndModel
from jedi_core.optim import linear_warmup, make_adamw, optimizer_step
from jedi_core.replay import TorchBatch
from jedi_core.runtime import Logs, autocast

GraphT = TypeVar("GraphT", StaticStep, StaticUpdate)

#: What one world-model update trains: everything (a joint update), or one part of Algorithm 1's loops.
UPDATE_PARTS = ("all", "diffusion", "reward_end")
#: The parts each ``world_model.updates`` setting steps, in order, every epoch.
UPDATE_SCHEDULES = {"joint": ("all",), "separate": ("diffusion", "reward_end")}


def quantize_frames(frames: Tensor) -> Tensor:
    """Clamp to [-1, 1] and truncate to the 256 levels of an 8-bit image (DIAMOND's output transform).

    Truncation, as DIAMOND's ``.byte()`` cast does: on average half a level darker than rounding would be.
    The 1e-3 of a level added first keeps an exact level where float error puts it just below itself.
    """
    return frames.clamp(-1, 1).add(1).mul(127.5).add(1e-3).floor().div(127.5).sub(1)


@dataclass
class ImaginationState:
    """What imagination carries from one step to the next, for a batch of B rollouts."""

    latents: Tensor  # (B, L, C, h, w): the last L latents (frames, for the pixel model)
    actions: Tensor  # (B, L): the action taken at each of them; the last is set by imagine_step
    reward_end_state: LSTMState | None  # nn.LSTM's (1, B, D) tensors: the batch is their dimension 1

    def flat(self) -> list[Tensor]:
        """The state as a list of tensors (a CUDA graph's inputs): latents, actions, then the LSTM's."""
        return [self.latents, self.actions, *(self.reward_end_state or ())]

    @classmethod
    def from_flat(cls, tensors: Sequence[Tensor]) -> ImaginationState:
        latents, actions, *memory = tensors
        return cls(latents, actions, (memory[0], memory[1]) if memory else None)

    def rows(self, index: Tensor | slice) -> ImaginationState:
        """The rollouts ``index`` picks (a slice, or a tensor of row numbers that may repeat)."""
        state = None
        if self.reward_end_state is not None:
            state = (self.reward_end_state[0][:, index], self.reward_end_state[1][:, index])
        return ImaginationState(self.latents[index], self.actions[index], state)

    def where(self, replace: Tensor, other: ImaginationState) -> ImaginationState:
        """Row b from ``other`` where ``replace[b]`` (B,) is True, else from this state: no host sync."""
        def pick(mine: Tensor, theirs: Tensor, batch_dim: int = 0) -> Tensor:
            shape = [1] * mine.dim()
            shape[batch_dim] = -1
            return torch.where(replace.view(shape), theirs, mine)

        state = None
        if self.reward_end_state is not None:
            state = (pick(self.reward_end_state[0], other.reward_end_state[0], batch_dim=1),
                     pick(self.reward_end_state[1], other.reward_end_state[1], batch_dim=1))
        return ImaginationState(pick(self.latents, other.latents), pick(self.actions, other.actions), state)


class WorldModel(nn.Module):
    """Encoder + diffusion dynamics + reward/termination model, trained end to end (see the module docstring).

    ``precision`` (``performance.precision``) is fixed when the model is built: ``"bf16"`` runs the forward
    passes of one update (:meth:`training_step`) or of one imagined rollout (``imagination.imagine``)
    under bf16 autocast, entered once by :meth:`autocast`; the networks' outputs are fp32 either way.
    """

    def __init__(self, cfg: WorldModelConfig, encoder: nn.Module, denoiser: Denoiser,
                 reward_end: RewardEndModel, probe: DecoderProbe | None = None, precision: str = "fp32",
                 cuda_graphs: bool = False):
        super().__init__()
        self.cfg = cfg
        self.encoder = encoder
        self.denoiser = denoiser
        self.reward_end = reward_end
        self.probe = probe
        self.context_length = cfg.denoiser.context_length
        self.precision = precision
        self.cuda_graphs = cuda_graphs
        self._graphs: dict[tuple, StaticStep | StaticUpdate] = {}  # performance.cuda_graphs (captured)
        self.latent_shape: tuple[int, int, int]  # (C, h, w) of what encode() returns, set by subclasses

    # -- training -------------------------------------------------------------------------------

    def encode(self, frames: Tensor) -> Tensor:
        """Float frames (..., 3, H, W) in [-1, 1] -> latents (..., C, h, w) (pixel model: the frames)."""
        return self.encoder(frames)

    def forward(self, batch: TorchBatch, part: str = "all") -> tuple[Tensor, dict[str, Tensor]]:
        """The loss of ``part`` and its terms, as detached 0-dim tensors (``runtime.to_floats`` reads them).

        ``part``: ``"all"`` (the summed loss of a joint update), ``"diffusion"`` (the diffusion loss and the
        decoder probe's) or ``"reward_end"``; the encoder learns from each. Nothing here waits for the
        device: masked means replace boolean indexing, so the update can run ahead of the host (see
        ``jedi_core.runtime``).
        """
        if part not in UPDATE_PARTS:
            raise ValueError(f"part {part!r} is not one of {', '.join(UPDATE_PARTS)}")
        frames_needed = self.context_length + self.cfg.num_targets
        if part != "reward_end" and batch.obs.shape[1] < frames_needed:
            raise ValueError(f"segments of {batch.obs.shape[1]} frames are too short: the world model needs "
                             f"context_length + num_targets = {frames_needed}")
        latents = self.encode(batch.obs)  # (B, T+1, C, h, w), with gradient
        logs: dict[str, Tensor] = {}
        loss = latents.new_zeros((), dtype=torch.float32)
        if part != "diffusion":
            next_latents = None
            if self.cfg.reward_end.next_input == "sampled":
                # Imagination's inputs: the context's real latents (as burn_in), then the denoiser's samples.
                with torch.no_grad():
                    sampled = self.denoiser.sample_along(latents.detach(), batch.actions, self.context_length)
                next_latents = torch.cat([latents[:, 1: self.context_length], sampled.to(latents.dtype)], 1)
            reward_end_loss, logs = self.reward_end.loss(latents, batch.actions, batch.rewards, batch.ends,
                                                         batch.transition_mask, next_latents)
            loss = loss + reward_end_loss
            logs["reward_end_loss"] = reward_end_loss.detach()
        if part != "reward_end":
            target_losses, switched = self.diffusion_losses(latents, batch.actions, batch.mask_padding)
            diffusion_loss = torch.stack(target_losses).mean()
            loss = loss + diffusion_loss
            logs.update(diffusion_loss=diffusion_loss.detach(), switched_fraction=switched,
                        latent_std=masked_std(latents.detach(), batch.mask_padding))
            if self.probe is not None:
                # Detached latents: the probe learns to draw them and sends nothing back to the encoder.
                decoded = self.probe(latents.detach())
                frame_errors = (decoded - batch.obs).pow(2).flatten(2).mean(2)  # (B, T+1)
                probe_loss = masked_mean(frame_errors, batch.mask_padding)
                loss = loss + probe_loss
                logs["probe_loss"] = probe_loss.detach()
        logs["loss"] = loss.detach()
        return loss, logs

    def diffusion_losses(self, latents: Tensor, actions: Tensor, mask_padding: Tensor
                         ) -> tuple[list[Tensor], Tensor]:
        """One EDM loss per target on the last ``context_length + num_targets`` latents of the segment.

        Returns the losses (target order) and the fraction of sequences whose context was switched (a 0-dim
        tensor).
        """
        cfg = self.cfg
        length = self.context_length
        start = latents.shape[1] - (length + cfg.num_targets)
        window = latents[:, start:]
        actions = actions[:, start:]
        mask = mask_padding[:, start:]
        context = window[:, :length]
        losses = []
        switched = latents.new_zeros((), dtype=torch.float32)
        for k in range(cfg.num_targets):
            target = window[:, length + k]
            if cfg.stop_gradient:
                target = target.detach()  # the target (and so its noised copy) sends no gradient
            target_actions = actions[:, k: k + length]
            loss, prediction = self.denoiser.loss(target, context, target_actions, mask[:, length + k])
            losses.append(loss)
            if k + 1 < cfg.num_targets:
                next_latent, switch = self.switch(prediction, window[:, length + k])
                switched = switched + switch.float().mean() / (cfg.num_targets - 1)
                context = torch.cat([context[:, 1:], next_latent[:, None]], dim=1)
        return losses, switched

    def switch(self, prediction: Tensor, encoded: Tensor) -> tuple[Tensor, Tensor]:
        """Random switching: the next context latent is the prediction (probability ``switch_prob``) or the
        encoder's latent, drawn once for the whole batch or per sequence (``switch_per``). Returns the chosen
        latents and the (B,) switch mask."""
        if not self.cfg.switch_grad:
            prediction = prediction.detach()
        batch = prediction.shape[0]
        draws = 1 if self.cfg.switch_per == "batch" else batch
        switch = (torch.rand(draws, device=prediction.device) < self.cfg.switch_prob).expand(batch)
        return torch.where(switch.view(-1, 1, 1, 1), prediction, encoded), switch

    def _components(self, part: str) -> dict[str, nn.Module]:
        """The modules an update of ``part`` trains."""
        parts = {"encoder": self.encoder, "denoiser": self.denoiser, "reward_end": self.reward_end,
                 "probe": self.probe}
        if part == "diffusion":
            del parts["reward_end"]
        elif part == "reward_end":
            del parts["denoiser"], parts["probe"]
        return {name: module for name, module in parts.items() if module is not None}

    def make_optimizer(self, part: str = "all"
                       ) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
        """One AdamW over the modules an update of ``part`` trains, a parameter group per module (the
        encoder at ``lr_scale`` x lr), and its warm-up."""
        cfg = self.cfg
        components = {name: (module, cfg.lr * (cfg.encoder.lr_scale if name == "encoder" else 1.0))
                      for name, module in self._components(part).items()}
        optimizer = make_adamw(components, cfg.weight_decay, cfg.adam_eps)
        return optimizer, linear_warmup(optimizer, cfg.warmup_steps)

    def clip_groups(self, part: str = "all") -> dict[str, tuple[list[nn.Parameter], float]]:
        """Clip groups of an update of ``part``: the denoiser to ``grad_clip_denoiser``, the rest to
        ``grad_clip_other`` (logged as ``grad_norm_reward_end`` in a reward/end update, to keep it apart)."""
        components = self._components(part)
        groups = {}
        if "denoiser" in components:
            groups["grad_norm_denoiser"] = (list(components.pop("denoiser").parameters()),
                                            self.cfg.grad_clip_denoiser)
        others = [p for module in components.values() for p in module.parameters()]
        name = "grad_norm_reward_end" if part == "reward_end" else "grad_norm_other"
        groups[name] = (others, self.cfg.grad_clip_other)
        return groups

    def autocast(self, cache_enabled: bool = True) -> torch.autocast:
        """The precision context of one update or one rollout (``runtime.autocast`` at ``self.precision``).

        Its cache of bf16 weights must be off while a CUDA graph is captured (PyTorch's rule)."""
        return autocast(next(self.parameters()).device, self.precision, cache_enabled)

    def training_step(self, batch: TorchBatch, optimizer: torch.optim.Optimizer,
                      scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
                      check_finite: bool = True, part: str = "all") -> Logs:
        """One update of ``part`` (see :meth:`forward`; ``optimizer`` from ``make_optimizer(part)``): the
        loss under this model's precision, then :func:`~jedi_core.optim.optimizer_step`.

        Returns the logs as 0-dim device tensors (``runtime.to_floats`` reads them). ``check_finite`` (the
        default, for notebooks) raises on a non-finite loss before any weight changes; the trainer turns it
        off so that nothing waits for the device, and checks the logs every 200 updates instead.
        """
        self.train()
        if self.cuda_graphs:  # the same update, its loss and backward pass replayed from a CUDA graph
            update = self.captured((part, id(optimizer)), batch.obs, lambda: StaticUpdate(
                lambda *tensors: self(TorchBatch(*tensors), part), optimizer, self.clip_groups(part),
                functools.partial(self.autocast, cache_enabled=False)))
            return update.step(batch.tensors(), optimizer, scheduler, check_finite)
        with self.autocast():
            loss, logs = self(batch, part)
        return optimizer_step(loss, logs, optimizer, scheduler, self.clip_groups(part), check_finite)

    # -- imagination ----------------------------------------------------------------------------

    @torch.no_grad()
    def burn_in(self, frames: Tensor, actions: Tensor) -> ImaginationState:
        """Start imagination from a real context: frames (B, L, 3, H, W), the L-1 actions between them.

        The reward/end LSTM reads the context's L-1 transitions, so its memory matches the real past. Runs at
        the caller's precision: ``imagination.imagine`` enters :meth:`autocast` once for the whole rollout.
        """
        if frames.shape[1] != self.context_length or actions.shape[1] != self.context_length - 1:
            raise ValueError(f"burn-in needs {self.context_length} frames and {self.context_length - 1} "
                             f"actions, got {frames.shape[1]} and {actions.shape[1]}")
        latents = self.encode(frames)
        state = self.reward_end(latents, actions)[2] if self.context_length > 1 else None
        pending = actions.new_zeros(actions.shape[0], 1)
        return ImaginationState(latents, torch.cat([actions, pending], dim=1), state)

    @torch.no_grad()
    def imagine_step(self, state: ImaginationState, action: Tensor, generator: torch.Generator | None = None
                     ) -> tuple[Tensor, Tensor, Tensor, ImaginationState]:
        """Take ``action`` (B,) in every rollout: next latent, reward (-1/0/1), end flag, new state."""
        actions = torch.cat([state.actions[:, :-1], action[:, None]], dim=1)
        next_latent = self.denoiser.sample_next(state.latents, actions, generator)
        pair = torch.stack([state.latents[:, -1], next_latent], dim=1)
        reward, end, reward_end_state = self.reward_end.sample(pair, action[:, None], state.reward_end_state,
                                                               generator)
        pending = actions.new_zeros(actions.shape[0], 1)
        new_state = ImaginationState(latents=torch.cat([state.latents[:, 1:], next_latent[:, None]], dim=1),
                                     actions=torch.cat([actions[:, 1:], pending], dim=1),
                                     reward_end_state=reward_end_state)
        return next_latent, reward, end, new_state

    def captured(self, key: tuple, example: Tensor, build: Callable[[], GraphT]) -> GraphT:
        """``performance.cuda_graphs``: the step or update of ``key`` at the shape and device of ``example``
        (an input), built by ``build`` and kept at its first use."""
        key = (*key, tuple(example.shape), example.device)
        if key not in self._graphs:
            self._graphs[key] = build()
        return self._graphs[key]

    def step_function(self, state: ImaginationState, generator: torch.Generator | None = None
                      ) -> Callable[..., tuple[Tensor, Tensor, Tensor, ImaginationState]]:
        """What imagination calls at each step: :meth:`imagine_step`, or, with ``performance.cuda_graphs``
        and the default generator, the same step replayed from a CUDA graph (``jedi_core.cuda_graphs``),
        captured at the first rollout of each batch shape."""
        if not self.cuda_graphs or generator is not None:
            return self.imagine_step
        static = self.captured(("imagine_step", state.reward_end_state is None), state.latents,
                               lambda: static_imagine_step(self, state))

        def replay(state: ImaginationState, action: Tensor, generator: None = None
                   ) -> tuple[Tensor, Tensor, Tensor, ImaginationState]:
            next_latent, reward, end, *new_state = static(*state.flat(), action)
            return next_latent, reward, end, ImaginationState.from_flat(new_state)
        return replay

    def parameter_counts(self) -> dict[str, int]:
        """Parameters per component (encoder, denoiser, reward_end, probe if any) and their total."""
        components = {"encoder": self.encoder, "denoiser": self.denoiser, "reward_end": self.reward_end,
                      "probe": self.probe}
        counts = {name: sum(p.numel() for p in module.parameters())
                  for name, module in components.items() if module is not None}
        counts["total"] = sum(counts.values())
        return counts


class JEDIWorldModel(WorldModel):
    """JEDI: a learned encoder to C x 8 x 8 latents, a one-level latent U-Net, a latent reward/end model."""

    def __init__(self, cfg: WorldModelConfig, num_actions: int, frame_size: int = 64, frame_channels: int = 3,
                 precision: str = "fp32", cuda_graphs: bool = False):
        encoder_cfg = cfg.encoder
        encoder = LatentEncoder(encoder_cfg.channels, encoder_cfg.downsample, encoder_cfg.clamp,
                                in_channels=frame_channels)
        latent_size = frame_size // encoder.downscale
        clamp = functools.partial(latent_clamp, scale=encoder_cfg.clamp)
        denoiser = _make_denoiser(cfg, num_actions, encoder.latent_channels, output_transform=clamp)
        reward_end = _make_reward_end(cfg, num_actions, encoder.latent_channels, latent_size)
        probe = None
        if cfg.decoder_probe:
            probe = DecoderProbe(encoder.latent_channels, cfg.probe_channels, frame_channels)
            probed_size = latent_size * 2 ** len(cfg.probe_channels)
            if probed_size != frame_size:
                raise ValueError(f"world_model.probe_channels: {len(cfg.probe_channels)} upsamplings take "
                                 f"{latent_size}x{latent_size} latents to {probed_size}, not {frame_size}; "
                                 "give one entry per 2x step")
        super().__init__(cfg, encoder, denoiser, reward_end, probe, precision, cuda_graphs)
        self.latent_shape = (encoder.latent_channels, latent_size, latent_size)


class PixelWorldModel(WorldModel):
    """DIAMOND: no encoder (identity), a 4-level U-Net on 64x64 frames, 8-bit outputs, a CNN reward/end."""

    def __init__(self, cfg: WorldModelConfig, num_actions: int, frame_size: int = 64, frame_channels: int = 3,
                 precision: str = "fp32", cuda_graphs: bool = False):
        denoiser = _make_denoiser(cfg, num_actions, frame_channels, output_transform=quantize_frames)
        reward_end = _make_reward_end(cfg, num_actions, frame_channels, frame_size)
        super().__init__(cfg, nn.Identity(), denoiser, reward_end, probe=None, precision=precision,
                         cuda_graphs=cuda_graphs)
        self.latent_shape = (frame_channels, frame_size, frame_size)


def _make_denoiser(cfg: WorldModelConfig, num_actions: int, channels: int,
                   output_transform: Callable[[Tensor], Tensor]) -> Denoiser:
    denoiser_cfg = cfg.denoiser
    net = DenoiserNet(channels, denoiser_cfg.context_length, num_actions, denoiser_cfg.cond_channels,
                      denoiser_cfg.depths, denoiser_cfg.channels, [bool(a) for a in denoiser_cfg.attention])
    return Denoiser(net, denoiser_cfg.edm, denoiser_cfg.sampler, output_transform)


def _make_reward_end(cfg: WorldModelConfig, num_actions: int, channels: int, size: int) -> RewardEndModel:
    reward_end_cfg = cfg.reward_end
    normalize = reward_end_cfg.lstm_input == "normalized"
    return RewardEndModel(channels, size, num_actions, reward_end_cfg.cond_channels, reward_end_cfg.depths,
                          reward_end_cfg.channels, [bool(a) for a in reward_end_cfg.attention],
                          reward_end_cfg.lstm_dim, normalize_lstm_input=normalize)


def build_world_model(cfg: Config, num_actions: int) -> WorldModel:
    """The world model a config asks for: ``method=jedi`` (latent) or ``method=diamond`` (pixel)."""
    cls = JEDIWorldModel if cfg.method == "jedi" else PixelWorldModel
    return cls(cfg.world_model, num_actions, frame_size=cfg.env.screen_size,
               precision=cfg.performance.precision, cuda_graphs=cfg.performance.cuda_graphs)
