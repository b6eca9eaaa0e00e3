"""``benchmarks/profile_step.py`` at a chosen batch, with the per-imagined-step numbers worked out.

    python benchmarks/gpu_session/profile_stage.py atari100k cuda --out OUT/profile.json
    python benchmarks/gpu_session/profile_stage.py smoke cpu --batch 2 --out OUT/profile.json   # dry run

profile_step.py fixes the batch at 32 (the actor-critic's); at that size a CPU needs a minute, so the dry run
sets a smaller one here and otherwise runs the same code. Added to its JSON: kernels, aten calls and wall time
per imagined step, and the device's busy share of the wall time (far below 1: the host's launches bound it).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

PROFILE_STEP = Path(__file__).resolve().parents[1] / "profile_step.py"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("preset")
    parser.add_argument("device")
    parser.add_argument("--batch", type=int, default=None,
                        help="imagined rollouts (default: profile_step's 32)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    spec = importlib.util.spec_from_file_location("profile_step", PROFILE_STEP)
    profile_step = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(profile_step)
    if args.batch:
        profile_step.BATCH = args.batch  # main() reads the module's constant
    profile_step.main(args.preset, args.device, args.out)
    result = json.loads(Path(args.out).read_text())
    horizon = result["horizon"]
    rollout = result["rollout"]
    per_step = {"wall_ms": rollout["wall_ms"] / horizon, "aten_calls": rollout["aten_calls"] / horizon,
                "cuda_kernels": rollout["cuda_kernels"] / horizon if rollout.get("cuda_kernels") else None}
    result["per_imagined_step"] = per_step
    for name in ("rollout", "actor_critic_update"):
        part = result[name]
        part["device_busy_share"] = (part["device_busy_ms"] / part["wall_ms"]
                                     if part.get("device_busy_ms") is not None else None)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print("per imagined step:", json.dumps(per_step))


if __name__ == "__main__":
    main()
