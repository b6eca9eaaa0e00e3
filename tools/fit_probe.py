"""Ship a run's agent with a decoder probe that draws the sprites, fitted offline on the run's replay.

    python tools/fit_probe.py RUN_DIR assets/krull_cpu_agent.pt     # defaults: see --help

A run's own probe trains online on latents that move as the encoder learns: at the ``cpu`` budget it draws
the screen's layout but not the small sprites. So the agent file a notebook draws with carries a larger probe
fitted longer on the *final* encoder's latents of the run's replay (``analysis.probe_fit``). This tool fits
one, scores it on the replay's last episodes (held out) beside the run's own probe, writes the run's agent
file with it (its config's ``world_model.probe_channels`` set to match; every other weight as trained) and
records how it was made in the file's ``probe_fit``.

The score is the mean squared error in [-1, 1] pixel units over all pixels and over the *moving* ones: the
pixels more than ``MOVING`` away from their episode's median frame, which is where the sprites are. Drawing
each episode's median frame is the reference a probe must beat there.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from jedi_core.analysis.probe_fit import draw_frames, encode_frames, fit_decoder_probe
from jedi_core.replay import frames_to_float
from jedi_core.training.checkpoint import export_agent, load_run, replace_probe

#: A pixel is moving where some channel is this far (in [-1, 1] units) from its episode's median frame.
MOVING = 0.3


def squared_errors(drawn: torch.Tensor, frames: torch.Tensor, medians: torch.Tensor) -> dict[str, float]:
    """Mean squared error of ``drawn`` against ``frames``: over all pixels and over the moving ones."""
    moving = (frames - medians).abs().amax(1, keepdim=True) > MOVING
    error = (drawn - frames).pow(2).mean(1, keepdim=True)
    return {"all": round(float(error.mean()), 5), "moving": round(float(error[moving].mean()), 5)}


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
    if args.updates < 1 or args.batch_size < 1:
        raise SystemExit(f"--updates {args.updates} --batch-size {args.batch_size}: both must be at least 1")

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
    train_frames = [episode.obs for episode in train]
    test_frames = np.concatenate([episode.obs for episode in held_out])
    medians = np.concatenate([np.repeat(np.median(episode.obs, axis=0, keepdims=True).astype(np.uint8),
                                        len(episode.obs), axis=0) for episode in held_out])
    training_frames = sum(len(frames) for frames in train_frames)
    print(f"{args.run_dir}: {training_frames:,} frames to fit on, {len(test_frames):,} held out "
          f"({len(held_out)} episodes), latent {tuple(world_model.latent_shape)}")
    test_latents = encode_frames(world_model, test_frames)
    test_x = frames_to_float(torch.from_numpy(test_frames))
    median_x = frames_to_float(torch.from_numpy(medians))

    probe = fit_decoder_probe(world_model, train_frames, args.updates, args.batch_size, channels, args.lr,
                              args.seed, progress=True)
    drawn = {"median frame of each episode": median_x}
    if world_model.probe is not None:
        drawn["the run's own probe"] = draw_frames(world_model.probe.decode, test_latents)
    drawn[f"fitted probe {args.channels}"] = draw_frames(probe.decode, test_latents)
    results = {name: squared_errors(pictures, test_x, median_x) for name, pictures in drawn.items()}
    for name, result in results.items():
        print(f"{name:>30}: squared error {result['all']:.4f} over all pixels, {result['moving']:.4f} "
              "over the moving ones")

    options = " ".join(f"--{key.replace('_', '-')} {value}" for key, value in vars(args).items()
                       if key not in ("run_dir", "out"))
    record = {"command": f"python tools/fit_probe.py RUN_DIR OUT {options}",
              "training_frames": training_frames, "held_out_frames": len(test_frames),
              "squared_error": results}
    export_agent(args.run_dir, args.out)
    replace_probe(args.out, probe, channels, record)
    print(f"wrote {args.out} with the fitted probe")


if __name__ == "__main__":
    main()
