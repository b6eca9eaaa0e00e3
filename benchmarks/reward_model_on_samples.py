"""Can a reward model find rewards on the denoiser's samples if it is trained on them?

Takes a finished run, freezes everything but its reward/end model, and trains copies of that model for
``--updates`` reward/end updates on the run's replay, once on real next latents (DIAMOND's inputs) and once
on the denoiser's one-step samples (``world_model.reward_end.next_input=sampled``). Before and after, it
measures on held-out play of the run's policy (``benchmarks/diagnose_run.py``'s) the +1 recall and the mean
P(+1) one step after a real context, on the real next latent and on the denoiser's sample of it.

    python benchmarks/reward_model_on_samples.py runs/jedi_cpu_MsPacman_seed0 --updates 1000
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
from diagnose_run import held_out_play

from jedi_core.analysis.diagnostics import one_step_reward_recall
from jedi_core.optim import make_adamw
from jedi_core.replay import ReplayBuffer, sample_reward_end_batch
from jedi_core.runtime import atomic_write_text
from jedi_core.training.checkpoint import load_run
from jedi_core.world_model import WorldModel


def measure(world_model: WorldModel, held_out: ReplayBuffer, per_class: int) -> dict:
    """+1 recall and mean P(+1) per true class, one step on, on real next latents and on samples."""
    result = one_step_reward_recall(world_model, held_out, per_class, np.random.default_rng(1))
    return {"recall": {name: result[name] for name in ("real", "imagined")},
            "plus_probability": result["plus_probability"], "counts": result["counts"]}


def train_reward_end(world_model: WorldModel, replay: ReplayBuffer, next_input: str, updates: int,
                     cfg) -> WorldModel:
    """A copy of ``world_model`` whose reward/end model (only) made ``updates`` updates on ``next_input``."""
    model = copy.deepcopy(world_model)
    model.cfg = dataclasses.replace(model.cfg, reward_end=dataclasses.replace(model.cfg.reward_end,
                                                                              next_input=next_input))
    model.requires_grad_(False)
    model.reward_end.requires_grad_(True)
    wm_cfg = cfg.world_model
    optimizer = make_adamw({"reward_end": (model.reward_end, wm_cfg.lr)}, wm_cfg.weight_decay,
                           wm_cfg.adam_eps)
    rng = np.random.default_rng(2)
    torch.manual_seed(2)
    model.train()
    for _ in range(updates):
        batch = sample_reward_end_batch(replay, cfg.world_model, rng, cfg.replay.sample_weights)
        loss, _ = model.reward_end_loss(batch.to_torch("cpu"))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--updates", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=2000, help="held-out real steps played by the policy")
    parser.add_argument("--per-class", type=int, default=256)
    parser.add_argument("--out", type=Path, default=None,
                        help="default: RUN_DIR/reward_model_on_samples.json")
    args = parser.parse_args()

    cfg, agent, replay = load_run(args.run_dir, device="cpu")
    held_out, _ = held_out_play(cfg, agent, args.steps)  # the same play as diagnose_run.py
    report = {"run_dir": str(args.run_dir), "updates": args.updates, "held_out_steps": args.steps,
              "before": measure(agent.world_model, held_out, args.per_class)}
    for next_input in ("real", "sampled"):
        trained = train_reward_end(agent.world_model, replay, next_input, args.updates, cfg)
        report[f"after_{next_input}"] = measure(trained, held_out, args.per_class)
    out = args.out or args.run_dir / "reward_model_on_samples.json"
    atomic_write_text(out, json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
