"""Ship a run's agent with a decoder probe that draws the sprites, fitted offline on the run's replay.

    python tools/fit_probe.py RUN_DIR assets/krull_cpu_agent.pt     # defaults: see --help

A run's own probe trains online, one small batch per world-model update, on latents that move as the encoder
learns: at the ``cpu`` budget it draws the screen's layout but not the small sprites. Pictures are all a probe
is for (it reads detached latents and trains nothing else), so the agent file a notebook draws with can carry
a larger probe fitted longer on the *final* encoder's latents of the run's replay. This tool fits one, scores
it on the replay's last episodes (held out) beside the run's own probe, writes the run's agent file with it
(its config's ``world_model.probe_channels`` set to match; every other weight as trained) and records how it
was made in the file's ``probe_fit``.

The score is the mean squared error in [-1, 1] pixel units over all pixels and over the *moving* ones: the
pixels more than ``MOVING`` away from their episode's median frame, which is where the sprites are. Drawing
each episode's median frame is the reference a probe must beat there.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from jedi_core.nn.probe import DecoderProbe
from jedi_core.replay import frames_to_float
from jedi_core.training.checkpoint import export_agent, load_run, replace_probe

#: A pixel is moving where some channel is this far (in [-1, 1] units) from its episode's median frame.
MOVING = 0.3


def encode_all(world_model, frames: np.ndarray, chunk: int = 512) -> torch.Tensor:
    """uint8 (N, H, W, 3) frames -> the encoder's (N, C, h, w) latents, detached."""
    with torch.no_grad():
        return torch.cat([world_model.encode(frames_to_float(torch.from_numpy(frames[i:i + chunk])))
                          for i in range(0, len(frames), chunk)])


def draw_all(decode, latents: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """``decode`` applied chunk by chunk: (N, C, h, w) latents -> (N, 3, H, W) pictures in [-1, 1]."""
    with torch.no_grad():
        return torch.cat([decode(latents[i:i + chunk]) for i in range(0, len(latents), chunk)])


def squared_errors(drawn: torch.Tensor, frames: torch.Tensor, medians: torch.Tensor) -> dict[str, float]:
    """Mean squared error of ``drawn`` against ``frames``: over all pixels and over the moving ones."""
    moving = (frames - medians).abs().amax(1, keepdim=True) > MOVING
    error = (drawn - frames).pow(2).mean(1, keepdim=True)
    return {"all": round(float(error.mean()), 5), "moving": round(float(error[moving].mean()), 5)}


def fit(latents: torch.Tensor, frames: np.ndarray, channels: tuple[int, ...], updates: int, batch_size: int,
        lr: float, seed: int) -> DecoderProbe:
    """A fresh probe fitted on (latent, frame) pairs drawn uniformly, with Adam and a cosine-decayed rate."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    probe = DecoderProbe(latents.shape[1], channels)
    optimizer = torch.optim.Adam(probe.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, updates)
    start = time.perf_counter()
    for update in range(1, updates + 1):
        picked = rng.integers(len(frames), size=batch_size)
        loss = F.mse_loss(probe(latents[picked]), frames_to_float(torch.from_numpy(frames[picked])))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if update % max(1, updates // 10) == 0:
            seconds = time.perf_counter() - start
            print(f"  update {update:,}/{updates:,}: loss {loss.item():.4f} ({seconds:.0f} s)", flush=True)
    return probe.eval()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a finished run's folder (its replay is the training set)")
    parser.add_argument("out", type=Path, help="the agent file to write (as `jedi_core export` does)")
    parser.add_argument("--channels", default="32,32,16", help="the probe's channels, one per 2x upsample")
    parser.add_argument("--updates", type=int, default=12_000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--held-out-episodes", type=int, default=3,
                        help="the replay's last episodes, scored only")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    channels = tuple(int(c) for c in args.channels.split(","))

    cfg, agent, replay = load_run(args.run_dir, "cpu")
    world_model = agent.world_model.eval()
    if len(channels) != len(cfg.world_model.probe_channels):
        raise SystemExit(f"--channels {args.channels}: give {len(cfg.world_model.probe_channels)} numbers, "
                         f"one per 2x upsample from the {tuple(world_model.latent_shape)} latent to a frame")
    episodes = replay.episodes
    if not 0 < args.held_out_episodes < len(episodes):
        raise SystemExit(f"--held-out-episodes {args.held_out_episodes}: the replay has {len(episodes)} "
                         "episodes; hold out at least one and train on the rest")
    train, held_out = episodes[:-args.held_out_episodes], episodes[-args.held_out_episodes:]
    train_frames = np.concatenate([episode.obs for episode in train])
    test_frames = np.concatenate([episode.obs for episode in held_out])
    medians = np.concatenate([np.repeat(np.median(episode.obs, axis=0, keepdims=True).astype(np.uint8),
                                        len(episode.obs), axis=0) for episode in held_out])
    print(f"{args.run_dir}: {len(train_frames):,} frames to fit on, {len(test_frames):,} held out "
          f"({len(held_out)} episodes), latent {tuple(world_model.latent_shape)}")
    train_latents, test_latents = encode_all(world_model, train_frames), encode_all(world_model, test_frames)
    test_x = frames_to_float(torch.from_numpy(test_frames))
    median_x = frames_to_float(torch.from_numpy(medians))

    probe = fit(train_latents, train_frames, channels, args.updates, args.batch_size, args.lr, args.seed)
    drawn = {"median frame of each episode": median_x}
    if world_model.probe is not None:
        drawn["the run's own probe"] = draw_all(world_model.probe.decode, test_latents)
    drawn[f"fitted probe {args.channels}"] = draw_all(probe.decode, test_latents)
    results = {name: squared_errors(pictures, test_x, median_x) for name, pictures in drawn.items()}
    for name, result in results.items():
        print(f"{name:>30}: squared error {result['all']:.4f} over all pixels, {result['moving']:.4f} "
              "over the moving ones")

    options = " ".join(f"--{key.replace('_', '-')} {value}" for key, value in vars(args).items()
                       if key not in ("run_dir", "out"))
    record = {"command": f"python tools/fit_probe.py RUN_DIR OUT {options}",
              "training_frames": len(train_frames), "held_out_frames": len(test_frames),
              "squared_error": results}
    export_agent(args.run_dir, args.out)
    replace_probe(args.out, probe, channels, record)
    print(f"wrote {args.out} with the fitted probe")

if __name__ == "__main__":
    main()
