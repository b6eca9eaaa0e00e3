"""How good is a world model? Open-loop prediction error against the copy-the-last-latent baseline.

From a real context, the model imagines ``horizon`` steps under the *real* actions; each imagined latent
is compared with the encoder's latent of the real frame. Errors are divided by the variance of the real
latents, so a model cannot look good by shrinking its latent space (a collapsed latent has variance ~0,
and its normalised errors do not shrink with it). The baseline predicts that nothing moves: the last
context latent, repeated.
"""

from __future__ import annotations

import numpy as np
import torch

from jedi_core.replay import ReplayBuffer, frames_to_float
from jedi_core.world_model import WorldModel


@torch.no_grad()
def prediction_errors(world_model: WorldModel, replay: ReplayBuffer, horizon: int, num_rollouts: int,
                      rng: np.random.Generator, device: torch.device | str = "cpu"
                      ) -> dict[str, np.ndarray | float]:
    """Normalised MSE per imagined step for the model and for copy-last, over windows without padding.

    Returns ``model`` and ``copy_last`` arrays of length ``horizon`` and the real latents'
    ``latent_variance``.
    """
    length = world_model.context_length
    steps = length - 1 + horizon  # transitions per window: the context's own, then the imagined ones
    windows = [i for i, e in enumerate(replay.episodes) if e.num_steps >= steps]
    if not windows:
        raise ValueError(f"no episode has the {steps} steps a {horizon}-step rollout after a {length}-frame "
                         "context needs")
    segments = []
    for _ in range(num_rollouts):
        episode = replay.episodes[windows[rng.integers(len(windows))]]
        start = int(rng.integers(0, episode.num_steps - steps + 1))
        segments.append(episode.segment(start, steps))
    frames = torch.from_numpy(np.stack([s.obs for s in segments])).to(device)
    actions = torch.from_numpy(np.stack([s.actions for s in segments])).to(device)
    world_model.eval()
    floats = frames_to_float(frames)
    real = world_model.encode(floats)  # (N, steps + 1, C, h, w)
    variance = real.flatten(2).var(dim=0).mean().clamp(min=1e-12)
    model_errors = []
    copy_errors = []
    last_context = real[:, length - 1]
    with world_model.autocast():  # one precision context for the whole rollout, as in imagination
        state = world_model.burn_in(floats[:, :length], actions[:, : length - 1])
        for k in range(horizon):
            predicted, _, _, state = world_model.imagine_step(state, actions[:, length - 1 + k])
            truth = real[:, length + k]
            model_errors.append((predicted - truth).pow(2).mean() / variance)
            copy_errors.append((last_context - truth).pow(2).mean() / variance)
    # Read once at the end: an .item() per step would make the host wait for the device at every step.
    return {"model": torch.stack(model_errors).cpu().numpy(),
            "copy_last": torch.stack(copy_errors).cpu().numpy(),
            "latent_variance": variance.item()}
