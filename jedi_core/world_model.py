"""World models behind one interface: JEDI's latent diffusion model and DIAMOND's pixel one.

Two losses, each trained by its own update in Algorithm 1's order (diffusion updates, then reward/end
updates), both reaching the encoder:

* :meth:`WorldModel.diffusion_loss`, on windows of ``context_length + num_targets`` frames: encode them (JEDI:
  a conv encoder to 16x8x8 latents, gradients on; the pixel baseline: identity) and predict each target from
  the ``context_length`` latents and actions before it, EDM-style.

  * *Stop-gradient*: the target latent (and so its noised copy) is detached. The encoder learns only
    through the *context* latents and the reward/end loss. Without it, encoder and denoiser can agree on a
    constant latent, which is trivially predictable (collapse).
  * *Random switching*: for the next target, the whole batch conditions, with probability ``switch_prob``
    (one draw, the paper's Algorithm 1), on the denoiser's own prediction of the previous target instead of
    the encoder's latent, as it will have to in imagination; the prediction keeps its gradient unless
    ``switch_grad`` is off.

* :meth:`WorldModel.reward_end_loss`, on windows of ``segment_steps`` transitions: the reward sign and end
  flag of each, from the latents of its two frames, with an LSTM's memory along the window.

Each module has its own AdamW (the encoder at ``lr_scale`` x the learning rate): :meth:`diffusion_update` and
:meth:`reward_end_update` step the ones their loss trains (``optim.Update``).

Imagination: :meth:`WorldModel.burn_in` encodes a real context and warms up the reward model's LSTM;
:meth:`WorldModel.imagine_step` samples the next latent (3 Euler steps), then a reward and an end flag.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from jedi_core.config import Config, WorldModelConfig
from jedi_core.nn.blocks import LSTMState
from jedi_core.nn.diffusion import Denoiser, DenoiserNet
from jedi_core.nn.encoder import LatentEncoder, latent_clamp
from jedi_core.nn.ops import masked_mean, masked_std
from jedi_core.nn.probe import DecoderProbe
from jedi_core.nn.reward_end import RewardEndModel
from jedi_core.optim import OptimizerAndSchedule, Update, linear_warmup, make_adamw
from jedi_core.replay import TorchBatch
from jedi_core.runtime import Logs


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
    """Encoder + diffusion dynamics + reward/termination model, trained end to end (module docstring)."""

    def __init__(self, cfg: WorldModelConfig, encoder: nn.Module, denoiser: Denoiser,
                 reward_end: RewardEndModel, probe: DecoderProbe | None = None):
        super().__init__()
        self.cfg = cfg
        self.encoder = encoder
        self.denoiser = denoiser
        self.reward_end = reward_end
        self.probe = probe
        self.context_length = cfg.denoiser.context_length
        self.latent_shape: tuple[int, int, int]  # (C, h, w) of what encode() returns, set by subclasses

    # -- training -------------------------------------------------------------------------------

    def encode(self, frames: Tensor) -> Tensor:
        """Float frames (..., 3, H, W) in [-1, 1] -> latents (..., C, h, w) (pixel model: the frames)."""
        return self.encoder(frames)

    def diffusion_loss(self, batch: TorchBatch) -> tuple[Tensor, dict[str, Tensor]]:
        """The EDM loss of each target of a window of ``context_length + num_targets`` frames (and the decoder
        probe's loss). Logs are detached 0-dim tensors; nothing here waits for the device."""
        frames_needed = self.context_length + self.cfg.num_targets
        if batch.obs.shape[1] != frames_needed:
            raise ValueError(f"a diffusion window holds context_length + num_targets = {frames_needed} "
                             f"frames, got {batch.obs.shape[1]}")
        latents = self.encode(batch.obs)  # (B, L + K, C, h, w), with gradient
        target_losses, switched = self.target_losses(latents, batch.actions, batch.mask_padding)
        loss = torch.stack(target_losses).mean()
        logs = {"diffusion_loss": loss.detach(), "switched_fraction": switched,
                "latent_std": masked_std(latents.detach(), batch.mask_padding)}
        if self.probe is not None:
            # Detached latents: the probe learns to draw them and sends nothing back to the encoder. One frame
            # a window (the last): drawing all L + K would cost as much as the diffusion update itself.
            drawn = self.probe(latents[:, -1].detach())
            probe_loss = masked_mean((drawn - batch.obs[:, -1]).pow(2).flatten(1).mean(1),
                                     batch.mask_padding[:, -1])
            loss = loss + probe_loss
            logs["probe_loss"] = probe_loss.detach()
        return loss, logs

    def target_losses(self, latents: Tensor, actions: Tensor, mask_padding: Tensor
                      ) -> tuple[list[Tensor], Tensor]:
        """One EDM loss per target: each predicted from the ``context_length`` latents before it.

        Returns the losses (target order) and the fraction of batches whose context was switched (0-dim).
        """
        cfg = self.cfg
        length = self.context_length
        context = latents[:, :length]
        losses = []
        switched = latents.new_zeros((), dtype=torch.float32)
        for k in range(cfg.num_targets):
            target = latents[:, length + k]
            if cfg.stop_gradient:
                target = target.detach()  # the target (and so its noised copy) sends no gradient
            loss, prediction = self.denoiser.loss(target, context, actions[:, k: k + length],
                                                  mask_padding[:, length + k])
            losses.append(loss)
            if k + 1 < cfg.num_targets:
                next_latent, switch = self.switch(prediction, latents[:, length + k])
                switched = switched + switch.float() / (cfg.num_targets - 1)
                context = torch.cat([context[:, 1:], next_latent[:, None]], dim=1)
        return losses, switched

    def switch(self, prediction: Tensor, encoded: Tensor) -> tuple[Tensor, Tensor]:
        """Random switching, one draw for the batch (Algorithm 1): the next context latent is the prediction
        (probability ``switch_prob``) or the encoder's latent. Returns the chosen latents and the draw."""
        if not self.cfg.switch_grad:
            prediction = prediction.detach()
        switch = torch.rand((), device=prediction.device) < self.cfg.switch_prob
        return torch.where(switch, prediction, encoded), switch

    def reward_end_loss(self, batch: TorchBatch) -> tuple[Tensor, dict[str, Tensor]]:
        """Cross-entropy of the reward sign and end flag of every real transition of a window; the encoder
        learns from it too. With ``next_input=sampled``, x_t+1 is the denoiser's sample once a full context
        precedes it, what imagination feeds the model."""
        latents = self.encode(batch.obs)  # (B, T + 1, C, h, w), with gradient
        next_latents = None
        if self.cfg.reward_end.next_input == "sampled":
            # Imagination's inputs: the context's real latents (as burn_in), then the denoiser's samples.
            with torch.no_grad():
                sampled = self.denoiser.sample_along(latents.detach(), batch.actions, self.context_length)
            next_latents = torch.cat([latents[:, 1: self.context_length], sampled.to(latents.dtype)], 1)
        loss, logs = self.reward_end.loss(latents, batch.actions, batch.rewards, batch.ends,
                                          batch.transition_mask, next_latents)
        logs["reward_end_loss"] = loss.detach()
        return loss, logs

    def make_optimizers(self) -> dict[str, OptimizerAndSchedule]:
        """One AdamW and its warm-up per module: the encoder (at ``lr_scale`` x lr), the denoiser, the probe
        (if any) and the reward/end model. The encoder's is stepped by both losses' updates."""
        cfg = self.cfg
        optimizers = {}
        for name, module in self._modules_by_name().items():
            if not any(p.requires_grad for p in module.parameters()):
                continue  # the pixel model's identity encoder has nothing to train
            lr = cfg.lr * (cfg.encoder.lr_scale if name == "encoder" else 1.0)
            optimizer = make_adamw({name: (module, lr)}, cfg.weight_decay, cfg.adam_eps)
            optimizers[name] = (optimizer, linear_warmup(optimizer, cfg.warmup_steps))
        return optimizers

    def diffusion_update(self, optimizers: dict[str, OptimizerAndSchedule]) -> Update:
        """Algorithm 1's diffusion update: :meth:`diffusion_loss` trains the encoder, the denoiser (clipped at
        ``grad_clip_denoiser``) and the probe."""
        return self._update(self.diffusion_loss, ("encoder", "denoiser", "probe"), optimizers)

    def reward_end_update(self, optimizers: dict[str, OptimizerAndSchedule]) -> Update:
        """Algorithm 1's reward/end update: :meth:`reward_end_loss` trains the encoder and the reward/end
        model."""
        return self._update(self.reward_end_loss, ("encoder", "reward_end"), optimizers)

    def _update(self, loss_fn: Callable[[TorchBatch], tuple[Tensor, Logs]], names: Sequence[str],
                optimizers: dict[str, OptimizerAndSchedule]) -> Update:
        modules = self._modules_by_name()
        names = [name for name in names if name in optimizers]
        clip_groups = {}
        for name in names:
            limit = self.cfg.grad_clip_denoiser if name == "denoiser" else self.cfg.grad_clip_other
            # Each update logs the encoder's gradient norm under a name of its own (an epoch logs both).
            log_name = "encoder_reward_end" if name == "encoder" and "reward_end" in names else name
            clip_groups[f"grad_norm_{log_name}"] = (list(modules[name].parameters()), limit)
        return Update(loss_fn, [optimizers[name] for name in names], clip_groups)

    def _modules_by_name(self) -> dict[str, nn.Module]:
        modules = {"encoder": self.encoder, "denoiser": self.denoiser, "probe": self.probe,
                   "reward_end": self.reward_end}
        return {name: module for name, module in modules.items() if module is not None}

    # -- imagination ----------------------------------------------------------------------------

    @torch.no_grad()
    def burn_in(self, frames: Tensor, actions: Tensor) -> ImaginationState:
        """Start imagination from a real context: frames (B, L, 3, H, W), the L-1 actions between them.

        The reward/end LSTM reads the context's L-1 transitions, so its memory matches the real past.
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

    def parameter_counts(self) -> dict[str, int]:
        """Parameters per component (encoder, denoiser, reward_end, probe if any) and their total."""
        counts = {name: sum(p.numel() for p in module.parameters())
                  for name, module in self._modules_by_name().items()}
        counts["total"] = sum(counts.values())
        return counts


class JEDIWorldModel(WorldModel):
    """JEDI: a learned encoder to C x 8 x 8 latents, a one-level latent U-Net, a latent reward/end model."""

    def __init__(self, cfg: WorldModelConfig, num_actions: int, frame_size: int = 64,
                 frame_channels: int = 3):
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
        super().__init__(cfg, encoder, denoiser, reward_end, probe)
        self.latent_shape = (encoder.latent_channels, latent_size, latent_size)


class PixelWorldModel(WorldModel):
    """DIAMOND: no encoder (identity), a 4-level U-Net on 64x64 frames, 8-bit outputs, a CNN reward/end."""

    def __init__(self, cfg: WorldModelConfig, num_actions: int, frame_size: int = 64,
                 frame_channels: int = 3):
        denoiser = _make_denoiser(cfg, num_actions, frame_channels, output_transform=quantize_frames)
        reward_end = _make_reward_end(cfg, num_actions, frame_channels, frame_size)
        super().__init__(cfg, nn.Identity(), denoiser, reward_end, probe=None)
        self.latent_shape = (frame_channels, frame_size, frame_size)


def _make_denoiser(cfg: WorldModelConfig, num_actions: int, channels: int,
                   output_transform: Callable[[Tensor], Tensor]) -> Denoiser:
    denoiser_cfg = cfg.denoiser
    net = DenoiserNet(channels, denoiser_cfg.context_length, num_actions, denoiser_cfg.cond_channels,
                      denoiser_cfg.depths, denoiser_cfg.channels, [bool(a) for a in denoiser_cfg.attention])
    return Denoiser(net, denoiser_cfg.edm, denoiser_cfg.sampler, output_transform)


def _make_reward_end(cfg: WorldModelConfig, num_actions: int, channels: int, size: int) -> RewardEndModel:
    reward_end_cfg = cfg.reward_end
    return RewardEndModel(channels, size, num_actions, reward_end_cfg.cond_channels, reward_end_cfg.depths,
                          reward_end_cfg.channels, [bool(a) for a in reward_end_cfg.attention],
                          reward_end_cfg.lstm_dim)


def build_world_model(cfg: Config, num_actions: int) -> WorldModel:
    """The world model a config asks for: ``method=jedi`` (latent) or ``method=diamond`` (pixel)."""
    cls = JEDIWorldModel if cfg.method == "jedi" else PixelWorldModel
    return cls(cfg.world_model, num_actions, frame_size=cfg.env.screen_size)
