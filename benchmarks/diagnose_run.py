"""Why does (or doesn't) a run learn? The world model and the policy of a run's last checkpoint, measured on
fresh real play of that policy (held out: none of it is in the replay the run trained on).

    python benchmarks/diagnose_run.py runs/jedi_cpu_Boxing_seed0 --steps 2000

Prints, and writes as JSON beside ``--out``:
- the reward/end model's recall of each class (-1, 0, +1; end), with how often each occurs: a model that
  never predicts a reward cannot teach the policy anything;
- the same recall one imagined step later: on the real next latent and on the denoiser's sample of it, from
  the same real context and action (a reward the denoiser does not draw never reaches imagination), and the
  mean probability of +1 on each (imagination samples its rewards from it);
- imagined against real returns of the same policy over the same ``--horizon`` steps from the same real
  contexts: the actor-critic climbs the imagined ones;
- whether the reward/end model's LSTM has saturated (cells past |c| = 3 pass back almost no gradient) and
  how much its input features vary: a model on the class prior that no longer reads its input;
- open-loop latent prediction error against copying the last latent, per step, normalised by latent variance;
- the latent spread (collapse watch) and the policy's entropy on real frames (log(actions) is uniform).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch

from jedi_core.analysis.diagnostics import (
    one_step_reward_recall,
    prediction_errors,
    reward_end_recall,
    reward_lstm_state,
)
from jedi_core.imagination import imagine
from jedi_core.replay import ReplayBuffer, frames_to_float
from jedi_core.runtime import atomic_write_text
from jedi_core.training.checkpoint import load_run
from jedi_core.training.collect import Collector

#: Seeds of the held-out play, far from the run's collection and evaluation seeds.
HELD_OUT_SEED = 5 * 10**7


@torch.no_grad()
def imagined_and_real_returns(agent, replay: ReplayBuffer, horizon: int, count: int,
                              rng: np.random.Generator) -> dict[str, float]:
    """From ``count`` real contexts of ``replay``: the policy's imagined return over ``horizon`` steps (sum of
    rewards up to the first imagined end) against the real return the same policy got over the next
    ``horizon`` steps of that episode (sign-clipped rewards, as the agent is trained on)."""
    world_model = agent.world_model
    length = world_model.context_length
    steps = length - 1 + horizon
    episodes = [e for e in replay.episodes if e.num_steps >= steps]
    segments = []
    for _ in range(count):
        episode = episodes[rng.integers(len(episodes))]
        segments.append(episode.segment(int(rng.integers(0, episode.num_steps - steps + 1)), steps))
    frames = frames_to_float(torch.from_numpy(np.stack([s.obs[:length] for s in segments])))
    actions = torch.from_numpy(np.stack([s.actions[:length - 1] for s in segments]))
    rollout = imagine(world_model, agent.actor_critic, frames, actions, horizon=horizon,
                      generator=torch.Generator().manual_seed(0))
    imagined = (rollout.rewards * rollout.alive).sum(1).numpy()
    real = np.array([np.sign(s.rewards[length - 1:]).sum() for s in segments])
    both_vary = imagined.std() > 0 and real.std() > 0
    return {"imagined_mean": float(imagined.mean()), "real_mean": float(real.mean()),
            "imagined_nonzero_share": float((imagined != 0).mean()),
            "real_nonzero_share": float((real != 0).mean()),
            "correlation": float(np.corrcoef(imagined, real)[0, 1]) if both_vary else float("nan")}


@torch.no_grad()
def policy_entropy_and_spread(agent, replay: ReplayBuffer, frames: int = 512) -> dict[str, float]:
    """Mean policy entropy on real frames (fresh LSTM state per frame) and the latents' spread."""
    observations = np.concatenate([e.obs for e in replay.episodes])[:frames]
    latents = agent.world_model.encode(frames_to_float(torch.from_numpy(observations)))
    logits, _, _ = agent.actor_critic(latents, agent.initial_state(len(latents)))
    probabilities = logits.softmax(-1)
    entropy = -(probabilities * probabilities.clamp_min(1e-12).log()).sum(-1).mean()
    return {"policy_entropy": float(entropy), "uniform_entropy": math.log(logits.shape[-1]),
            "latent_std": float(latents.std(dim=0).mean())}


def held_out_play(cfg, agent, steps: int) -> tuple[ReplayBuffer, np.random.Generator]:
    """``steps`` of the agent's own play on seeds far from its run's (the same on every call: seeded), the
    agent left in eval mode, and the generator that played them, for what is drawn from them next."""
    held_out = ReplayBuffer()
    rng = np.random.default_rng(0)
    torch.manual_seed(0)  # the policy samples its actions
    Collector(cfg, held_out, agent, HELD_OUT_SEED).collect(steps, cfg.training.epsilon, rng)
    agent.eval()
    return held_out, rng


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--steps", type=int, default=2000, help="held-out real steps played by the policy")
    parser.add_argument("--horizon", type=int, default=None, help="default: the run's imagination horizon")
    parser.add_argument("--rollouts", type=int, default=256)
    parser.add_argument("--out", type=Path, default=None, help="default: RUN_DIR/diagnosis.json")
    args = parser.parse_args()

    cfg, agent, _ = load_run(args.run_dir, device="cpu", replay=False)
    horizon = args.horizon or cfg.actor_critic.horizon
    held_out, rng = held_out_play(cfg, agent, args.steps)
    errors = prediction_errors(agent.world_model, held_out, horizon, args.rollouts, rng)
    report = {
        "run_dir": str(args.run_dir), "held_out_steps": args.steps, "horizon": horizon,
        "reward_end_recall": reward_end_recall(agent.world_model, held_out, cfg.world_model.segment_steps),
        "reward_lstm": reward_lstm_state(agent.world_model, held_out, cfg.world_model.segment_steps),
        "returns": imagined_and_real_returns(agent, held_out, horizon, args.rollouts, rng),
        "one_step_reward_recall": one_step_reward_recall(agent.world_model, held_out, args.rollouts, rng),
        "prediction_error": {"model": errors["model"].round(4).tolist(),
                             "copy_last": errors["copy_last"].round(4).tolist()},
        **policy_entropy_and_spread(agent, held_out),
    }
    out = args.out or args.run_dir / "diagnosis.json"
    atomic_write_text(out, json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
