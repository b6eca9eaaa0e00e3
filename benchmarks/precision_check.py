"""How far the fast path moves the model's outputs from fp32 eager, at a preset's real size (DESIGN §6).

For each variant (bf16 autocast; torch.compile in each mode; both), the relative error of the world-model
loss, the denoiser's output D, one imagined latent and the policy logits against fp32 eager, with the same
weights and random draws (``jedi_core.performance.output_deviation``). The zero-initialised output layers
(the denoiser's last conv, the actor head) get random weights first, as after training; otherwise their
outputs ignore every input and any variant would look exact.

    python benchmarks/precision_check.py --preset atari100k --device cuda --out benchmarks/results/precision_atari100k_cuda.json

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
from jedi_core.bench import synthetic_replay
from jedi_core.config import make_config
from jedi_core.imagination import sample_contexts
from jedi_core.io import atomic_write_text
from jedi_core.performance import compile_agent, output_deviation
from jedi_core.runtime import resolve_device
from jedi_core.world_model import sample_training_batch

VARIANTS = {"bf16": ("bf16", "off"), "compile-default": ("fp32", "default"),
            "compile-reduce-overhead": ("fp32", "reduce-overhead"), "bf16+reduce-overhead": ("bf16", "reduce-overhead")}


def check(preset: str, device: str, variants: list[str], batch_size: int = 32, num_actions: int = 18) -> dict:
    torch.manual_seed(0)
    cfg = make_config(preset, [f"device={device}", f"world_model.batch_size={batch_size}"])
    resolved = resolve_device(cfg.device)
    agent = Agent(cfg, num_actions).to(resolved)
    torch.nn.init.normal_(agent.world_model.denoiser.net.conv_out.weight, std=0.05)
    torch.nn.init.normal_(agent.actor_critic.actor.weight, std=0.05)
    replay, rng = synthetic_replay(2_000, num_actions), np.random.default_rng(0)
    batch = sample_training_batch(replay, cfg.world_model, rng).to_torch(resolved)
    contexts = sample_contexts(replay, batch_size, agent.world_model.context_length, rng, cfg.replay.sample_weights,
                               resolved)
    results = {}
    for name in variants:
        precision, mode = VARIANTS[name]

        def fast(fast_agent, precision=precision, mode=mode):
            fast_agent.world_model.precision = precision
            compile_agent(fast_agent, mode)

        started = time.perf_counter()
        results[name] = {**output_deviation(agent, batch, contexts, fast), "seconds": time.perf_counter() - started}
        print(name, {key: f"{value:.2e}" for key, value in results[name].items()}, flush=True)
    return {"preset": preset, "device": torch.cuda.get_device_name(resolved) if resolved.type == "cuda" else "cpu",
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
    out = Path(args.out or f"benchmarks/results/precision_{args.preset}_{resolve_device(args.device).type}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(report, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
