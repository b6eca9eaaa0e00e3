"""A decoder probe fitted offline: a fresh probe trained to draw the *detached* latents of recorded frames.

A run's own probe trains online, one small batch per world-model update, on latents that move as the encoder
learns. Pictures are all a probe is for (it trains nothing else), so a video, the dream widget or a shipped
agent file can instead use one fitted afterwards on the final encoder's latents of the run's replay:
:func:`fit_decoder_probe` does it, for ``evaluate --video`` and ``tools/fit_probe.py`` alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from jedi_core.nn.probe import DecoderProbe
from jedi_core.replay import frames_to_float
from jedi_core.world_model import WorldModel


@torch.no_grad()
def encode_frames(world_model: WorldModel, frames: np.ndarray, chunk: int = 512) -> Tensor:
    """uint8 (N, H, W, 3) frames -> the encoder's (N, C, h, w) latents on its device, ``chunk`` at a time."""
    device = next(world_model.parameters()).device
    return torch.cat([world_model.encode(frames_to_float(torch.from_numpy(frames[i:i + chunk]).to(device)))
                      for i in range(0, len(frames), chunk)])


@torch.no_grad()
def draw_frames(decode: Callable[[Tensor], Tensor], latents: Tensor, chunk: int = 256) -> Tensor:
    """``decode`` applied ``chunk`` latents at a time: (N, C, h, w) -> (N, 3, H, W) pictures in [-1, 1]."""
    return torch.cat([decode(latents[i:i + chunk]) for i in range(0, len(latents), chunk)])


def fit_decoder_probe(world_model: WorldModel, episodes: Sequence[np.ndarray], updates: int = 500,
                      batch_size: int = 32, channels: tuple[int, ...] | None = None, lr: float = 1e-3,
                      seed: int = 0, progress: bool = False) -> DecoderProbe:
    """A fresh :class:`DecoderProbe` fitted by Adam, with a cosine-decayed rate, on (latent, frame) pairs
    drawn uniformly over all frames of ``episodes`` (uint8 (T, H, W, 3) arrays); the encoder is untouched.

    ``channels`` defaults to the world model's ``probe_channels``. The frames the updates will draw are picked
    up front and each is encoded once, so many updates over a few thousand frames cost one encoder pass.
    """
    if updates < 1 or batch_size < 1:
        raise ValueError(f"updates={updates}, batch_size={batch_size}: a probe is fitted by at least one "
                         "update of at least one frame")
    device = next(world_model.parameters()).device
    starts = np.cumsum([0, *(len(frames) for frames in episodes)])
    picks = np.random.default_rng(seed).integers(starts[-1], size=(updates, batch_size))
    picked, rows = np.unique(picks, return_inverse=True)
    rows = rows.reshape(picks.shape)
    episode_of = np.searchsorted(starts, picked, side="right") - 1
    frames = np.stack([episodes[e][i - starts[e]] for e, i in zip(episode_of, picked, strict=True)])
    world_model.eval()
    latents = encode_frames(world_model, frames)

    with torch.random.fork_rng(devices=[]):  # a seeded probe that leaves the caller's random stream alone
        torch.manual_seed(seed)
        probe = DecoderProbe(latents.shape[1], channels or world_model.cfg.probe_channels).to(device)
    optimizer = torch.optim.Adam(probe.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, updates)
    bar = tqdm(rows, desc="fitting a decoder probe", unit="update", disable=not progress)
    for update, batch_rows in enumerate(bar, start=1):
        targets = frames_to_float(torch.from_numpy(frames[batch_rows]).to(device))
        loss = F.mse_loss(probe(latents[torch.from_numpy(batch_rows).to(device)]), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if progress and update % 100 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
    return probe.eval()
