r"""How far the fast path moves the model's outputs from fp32 eager, at a preset's real size.

For each variant (bf16 autocast; torch.compile in each mode; both), the relative error of the diffusion
loss, the denoiser's output D, one imagined latent and the policy logits against fp32 eager, with the same
weights and random draws (``jedi_core.analysis.precision.output_deviation``). The zero-initialised output
layers (the denoiser's last conv, the actor head) get random weights first, as after training; otherwise
their outputs ignore every input and any variant would look exact.

    python benchmarks/precision_check.py --preset atari100k --device cuda \
        --out benchmarks/results/precision_atari100k_cuda.json

A variant is worth keeping on only if every error stays small (bf16 rounds to about 3 significant digits, so
errors near 1e-2 are expected; compile alone should be near 1e-6) and the bench shows it is faster.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from jedi_core.agent import Agent
from jedi_core.analysis.bench import synthetic_replay
from jedi_core.analysis.precision import fast_copy, output_deviation
from jedi_core.presets import make_config
from jedi_core.replay import sample_contexts, sample_diffusion_batch
from jedi_core.runtime import atomic_write_text, resolve_device

VARIANTS = {"bf16": ("bf16", "off"), "compile-default": ("fp32", "default"),
            "compile-reduce-overhead": ("fp32", "reduce-overhead"),
            "bf16+reduce-overhead": ("bf16", "reduce-overhead")}
#: Random frames the batch and contexts are drawn from (``jedi_core.analysis.bench``'s default).
REPLAY_STEPS = 2_000


def check(preset: str, device: str, variants: list[str], batch_size: int = 32, num_actions: int = 18) -> dict:
    torch.manual_seed(0)
    cfg = make_config(preset, [f"device={device}", f"world_model.batch_size={batch_size}"])
    resolved = resolve_device(cfg.device)
    agent = Agent(cfg, num_actions).to(resolved)
    torch.nn.init.normal_(agent.world_model.denoiser.net.conv_out.weight, std=0.05)
    torch.nn.init.normal_(agent.actor_critic.actor.weight, std=0.05)
    replay = synthetic_replay(REPLAY_STEPS, num_actions)
    rng = np.random.default_rng(0)
    batch = sample_diffusion_batch(replay, cfg.world_model, rng).to_torch(resolved)
    contexts = sample_contexts(replay, batch_size, agent.world_model.context_length, rng,
                               cfg.replay.sample_weights, resolved)
    results = {}
    for name in variants:
        precision, mode = VARIANTS[name]
        started = time.perf_counter()
        fast = fast_copy(agent, precision, mode)
        results[name] = {**output_deviation(agent, fast, batch, contexts),
                         "seconds": time.perf_counter() - started}
        print(name, {key: f"{value:.2e}" for key, value in results[name].items()}, flush=True)
    return {"preset": preset,
            "device": torch.cuda.get_device_name(resolved) if resolved.type == "cuda" else "cpu",
            "torch": torch.__version__, "batch_size": batch_size, "variants": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="atari100k")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    report = check(args.preset, args.device, args.variants, args.batch)
    out = Path(args.out
               or f"benchmarks/results/precision_{args.preset}_{resolve_device(args.device).type}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(report, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
