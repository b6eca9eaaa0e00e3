"""How good is a world model? Open-loop prediction error against the copy-the-last-latent baseline, and the
reward/end model's recall of each class on held-out transitions.

From a real context, the model imagines ``horizon`` steps under the *real* actions; each imagined latent
is compared with the encoder's latent of the real frame. Errors are divided by the variance of the real
latents, so a model cannot look good by shrinking its latent space (a collapsed latent has variance ~0,
and its normalised errors do not shrink with it). The baseline predicts that nothing moves: the last
context latent, repeated.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

from jedi_core.replay import Batch, ReplayBuffer, TorchBatch, frames_to_float
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


#: The classes :func:`reward_end_recall` reports: the reward's sign, then the end flag.
REWARD_CLASSES = ("-1", "0", "+1")
END_CLASSES = ("no end", "end")


@torch.no_grad()
def reward_end_recall(world_model: WorldModel, replay: ReplayBuffer, window: int, batch_size: int = 64,
                      device: torch.device | str = "cpu") -> dict[str, dict[str, float | int]]:
    """The share of each class the reward/end model's argmax gets right, over every transition of ``replay``.

    The episodes are read in consecutive windows of ``window`` transitions, each from a fresh LSTM state (as
    the model is trained); padding is left out. Returns ``reward`` and ``end`` dicts of recall per class
    (``nan`` for a class that never occurs) and ``counts`` of each class. A model that always predicts the
    commonest class scores 1 on it and 0 on the others, so the rare classes' recall is what shows learning.
    """
    hits = torch.zeros(5, dtype=torch.long, device=device)
    totals = torch.zeros(5, dtype=torch.long, device=device)
    world_model.eval()
    for batch in _windows(replay, window, batch_size, device, whole_only=False):
        reward_logits, end_logits, _ = world_model.reward_end(world_model.encode(batch.obs), batch.actions)
        mask = batch.transition_mask
        targets = torch.cat([batch.rewards.sign().long() + 1, batch.ends.long() + 3])[mask.repeat(2, 1)]
        predicted = torch.cat([reward_logits.argmax(-1), end_logits.argmax(-1) + 3])[mask.repeat(2, 1)]
        totals += torch.bincount(targets, minlength=5)
        hits += torch.bincount(targets[predicted == targets], minlength=5)
    hits, totals = hits.cpu().numpy(), totals.cpu().numpy()
    recall = [float(h / t) if t else float("nan") for h, t in zip(hits, totals, strict=True)]
    return {"reward": dict(zip(REWARD_CLASSES, recall[:3], strict=True)),
            "end": dict(zip(END_CLASSES, recall[3:], strict=True)),
            "counts": dict(zip(REWARD_CLASSES + END_CLASSES, totals.tolist(), strict=True))}


def _windows(replay: ReplayBuffer, window: int, batch_size: int, device: torch.device | str,
             whole_only: bool) -> Iterator[TorchBatch]:
    """Each episode read in consecutive windows of ``window`` transitions, ``batch_size`` windows a batch;
    the last window of an episode is padded, or left out with ``whole_only``."""
    segments = [episode.segment(start, window, pad_after=not whole_only) for episode in replay.episodes
                for start in range(0, episode.num_steps - (window - 1 if whole_only else 0), window)]
    for first in range(0, len(segments), batch_size):
        yield Batch.stack(segments[first: first + batch_size]).to_torch(device)


#: |c| past which tanh(c) is within 0.5% of +-1 and passes back less than 1% of a gradient.
SATURATED_CELL = 3.0


@torch.no_grad()
def reward_lstm_state(world_model: WorldModel, replay: ReplayBuffer, window: int, batch_size: int = 64,
                      device: torch.device | str = "cpu") -> dict[str, float | int]:
    """Has the reward/end model's LSTM saturated? Over every whole window of ``window`` real transitions,
    each from a fresh state (as the model is trained): the mean |c| of the last cell state and the share of
    cells past :data:`SATURATED_CELL`, where the LSTM's output no longer moves with its input and sends
    its tower and the encoder almost no gradient; and how much the tower's features (the LSTM's input) vary
    across transitions against their size. A model sitting on the class prior with saturated cells and
    features that barely vary has stopped reading its input."""
    model = world_model.reward_end
    cells, features = [], []
    world_model.eval()
    for batch in _windows(replay, window, batch_size, device, whole_only=True):
        tower = model.features(world_model.encode(batch.obs), batch.actions)
        _, (_, cell) = model.lstm(tower)
        cells.append(cell.flatten().float())
        features.append(tower.flatten(0, 1).float())
    if not cells:
        raise ValueError(f"no episode of the replay has {window} transitions")
    cell, feature = torch.cat(cells).abs(), torch.cat(features)
    return {"windows": feature.shape[0] // window, "cell_abs_mean": float(cell.mean()),
            "saturated_cells": float((cell > SATURATED_CELL).float().mean()),
            "feature_spread": float(feature.std(dim=0).mean()),
            "feature_abs_mean": float(feature.abs().mean())}


@torch.no_grad()
def one_step_reward_recall(world_model: WorldModel, replay: ReplayBuffer, per_class: int,
                           rng: np.random.Generator, device: torch.device | str = "cpu") -> dict[str, dict]:
    """Does a reward survive one imagined step? From real contexts, the reward/end model's argmax on the
    real next latent and on the denoiser's sample of it (same context, same action, 3 Euler steps).

    Up to ``per_class`` transitions of each reward sign are drawn. Where ``real`` recall is high and
    ``imagined`` recall low, the reward model knows the event but the denoiser does not draw it: imagination
    then carries no reward to the actor-critic, however good the reward model is on real play. Also the mean
    probability of +1 per true class (``plus_probability``), on both: imagination draws rewards from it; and
    per latent position, the mean |real next latent - last latent| (``real_change``) and |sample - real next
    latent| (``sample_error``) per true class: where a reward shows, and whether the denoiser draws it there.
    """
    length = world_model.context_length
    by_class: dict[int, list[tuple[int, int]]] = {-1: [], 0: [], 1: []}
    for index, episode in enumerate(replay.episodes):
        for start in range(episode.num_steps - length + 1):
            by_class[int(np.sign(episode.rewards[start + length - 1]))].append((index, start))
    chosen = []
    for sign, places in by_class.items():
        picks = rng.permutation(len(places))[:per_class]
        chosen += [(sign, *places[p]) for p in picks]
    if not chosen:
        raise ValueError(f"no episode has the {length} steps a context and one step need")
    segments = [replay.episodes[index].segment(start, length) for _, index, start in chosen]
    frames = frames_to_float(torch.from_numpy(np.stack([s.obs for s in segments])).to(device))
    actions = torch.from_numpy(np.stack([s.actions for s in segments])).to(device)
    targets = torch.tensor([sign + 1 for sign, _, _ in chosen], device=device)
    world_model.eval()
    state = world_model.burn_in(frames[:, :length], actions[:, : length - 1])
    action = actions[:, length - 1]
    generator = torch.Generator(device).manual_seed(0)
    imagined = world_model.denoiser.sample_next(state.latents, actions, generator)
    last = state.latents[:, -1]
    real = world_model.encode(frames[:, length])

    def class_means(values: Tensor) -> dict[str, Tensor | None]:
        """The mean of ``values`` (N, ...) over each true class's transitions (None where there are none)."""
        return {label: values[targets == k].mean(0) if (targets == k).any() else None
                for k, label in enumerate(REWARD_CLASSES)}

    def floats(means: dict[str, Tensor | None]) -> dict[str, float]:
        return {label: float("nan") if mean is None else float(mean) for label, mean in means.items()}

    recall: dict[str, dict] = {"plus_probability": {}}
    for name, next_latent in (("real", real), ("imagined", imagined)):
        logits, _, _ = world_model.reward_end(torch.stack([last, next_latent], dim=1), action[:, None],
                                              state.reward_end_state)
        recall[name] = floats(class_means((logits[:, -1].argmax(-1) == targets).float()))
        # Imagination samples the reward: the mean P(+1) per true class says how often it would draw one.
        recall["plus_probability"][name] = floats(class_means(logits[:, -1].softmax(-1)[:, 2]))
    recall["counts"] = {label: int((targets == k).sum()) for k, label in enumerate(REWARD_CLASSES)}
    # Where the event shows: per latent position (channel mean), how much the real next latent changes and
    # how far the sample is from it, per true class. Equal maps under +1 mean the denoiser never draws it.
    maps = {"real_change": (real - last).abs(), "sample_error": (imagined - real).abs()}
    for name, values in maps.items():
        means = class_means(values.float().mean(1))  # (h, w) per class
        recall[name] = {label: mean.tolist() for label, mean in means.items() if mean is not None}
    return recall
