"""Measure a world model's open-loop prediction error on random-policy Atari data, against copy-last.

    python benchmarks/world_model_prediction.py --game Breakout --preset smoke --updates 1000

Collects ``--steps`` random-policy transitions for training and a held-out set with another seed, trains
the world model of ``--preset``, and every ``--eval-every`` updates records the losses, the latent
standard deviation (collapse watch), the 1..H-step normalised prediction errors of the model and of
copy-the-last-latent on the held-out set, and the reward/end model's recall of each reward sign and of
the end flag on every held-out transition. Writes JSON and a PNG to ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from jedi_core.analysis.diagnostics import prediction_errors, reward_end_recall
from jedi_core.envs import env_num_actions
from jedi_core.presets import make_config
from jedi_core.replay import sample_diffusion_batch, sample_reward_end_batch
from jedi_core.runtime import atomic_write_text, autocast, resolve_device, seed_everything, to_floats
from jedi_core.training.collect import collect_random_steps
from jedi_core.world_model import build_world_model

#: The held-out set is a third the size of the training set, but never under this many transitions.
MIN_HELD_OUT_STEPS = 1000
#: Added to the run's seed for the held-out set, so its episodes are not the training set's.
HELD_OUT_SEED_OFFSET = 10_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--game", default="Breakout")
    parser.add_argument("--preset", default="smoke")
    parser.add_argument("--steps", type=int, default=3000, help="random-policy training transitions")
    parser.add_argument("--updates", type=int, default=1000)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--horizon", type=int, default=15)
    parser.add_argument("--rollouts", type=int, default=128, help="held-out windows per evaluation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--tag", default="", help="added to the output names, to keep variants apart")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. world_model.lr=1e-3")
    args = parser.parse_args()

    cfg = make_config(args.preset, [f"env.game={args.game}", f"seed={args.seed}", *args.overrides])
    device = resolve_device(cfg.device)
    rng = seed_everything(cfg.seed)
    train = collect_random_steps(cfg.env, args.steps, seed=cfg.seed)
    held_out = collect_random_steps(cfg.env, max(args.steps // 3, MIN_HELD_OUT_STEPS),
                                    seed=cfg.seed + HELD_OUT_SEED_OFFSET)
    model = build_world_model(cfg, env_num_actions(cfg.env)).to(device)
    wm = cfg.world_model
    # Each update is a diffusion update then a reward/end update (Algorithm 1's two updates, one AdamW per
    # module, the encoder's stepped by both), at the run's precision: the trainer runs them in blocks of an
    # epoch's updates instead.
    optimizers = model.make_optimizers()
    precision = functools.partial(autocast, device, cfg.performance.precision)
    steps = [(sample_diffusion_batch, model.diffusion_update(optimizers)),
             (sample_reward_end_batch, model.reward_end_update(optimizers))]
    steps = [(sample, dataclasses.replace(update, context=precision)) for sample, update in steps]
    history = []
    started = time.perf_counter()
    for update in range(1, args.updates + 1):
        logs = {}
        for sample, step in steps:
            batch = sample(train, wm, rng, cfg.replay.sample_weights).to_torch(device)
            logs.update(to_floats(step(batch)))
        if update % args.eval_every == 0 or update == args.updates:
            with precision():  # rollouts at the run's precision, as imagination runs them
                errors = prediction_errors(model, held_out, args.horizon, args.rollouts,
                                           np.random.default_rng(1), device)
            recall = reward_end_recall(model, held_out, wm.segment_steps, device=device)
            record = {"update": update, "seconds": time.perf_counter() - started, **logs,
                      "model_error": errors["model"].tolist(),
                      "copy_last_error": errors["copy_last"].tolist(),
                      "latent_variance": errors["latent_variance"], "reward_end_recall": recall}
            history.append(record)
            print(f"update {update}: diffusion loss {logs['diffusion_loss']:.4f} "
                  f"latent_std {logs['latent_std']:.4f} | 1-step "
                  f"{errors['model'][0]:.3f} vs copy {errors['copy_last'][0]:.3f} | {args.horizon}-step "
                  f"{errors['model'][-1]:.3f} vs copy {errors['copy_last'][-1]:.3f} | recall reward "
                  f"{recall['reward']} end {recall['end']}", flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = f"world_model_prediction_{args.game}_{args.preset}" + (f"_{args.tag}" if args.tag else "")
    result = {"game": args.game, "preset": args.preset, "overrides": args.overrides,
              "train_steps": args.steps, "held_out_counts": history[-1]["reward_end_recall"]["counts"],
              "updates": args.updates, "device": str(device),
              "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
              "torch": torch.__version__, "parameters": model.parameter_counts(), "history": history}
    atomic_write_text(out / f"{name}.json", json.dumps(result, indent=1))
    _plot(history, args, out / f"{name}.png")
    print(f"wrote {out / name}.json and .png")


def _plot(history: list[dict], args: argparse.Namespace, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 3.5), layout="constrained")
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2)
    steps = np.arange(1, args.horizon + 1)
    last = history[-1]
    left.plot(steps, last["model_error"], "o-", label=f"world model ({last['update']} updates)")
    left.plot(steps, last["copy_last_error"], "s--", label="copy last latent")
    left.set_xlabel("imagined steps")
    left.set_ylabel("MSE / latent variance")
    left.set_title(f"{args.game}: open-loop prediction error (held-out)")
    left.legend()
    updates = [h["update"] for h in history]
    right.plot(updates, [h["latent_std"] for h in history], "o-")
    right.set_xlabel("world-model updates")
    right.set_ylabel("latent std (over samples)")
    right.set_title("collapse watch")
    figure.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
