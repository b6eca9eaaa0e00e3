"""Hook for the CUDA-graph path: the bench with ``performance.cuda_graphs=true``, once that setting exists.

    python benchmarks/gpu_session/graphs.py --preset atari100k --device cuda --out OUT/graphs.json \
        -- BENCH_ARGS

Until the config has the key (or when asked for cuda where torch sees no GPU), it writes
``{"stage_skipped": REASON}`` and exits 0. Otherwise it runs ``python -m jedi_core bench BENCH_ARGS --set
performance.cuda_graphs=true [GRAPHS_SET]`` (GRAPHS_SET: more overrides, e.g. ``performance.precision=bf16``)
in its own process, so the JSON is the bench's, comparable line by line with the fp32 and bf16 bench stages.
On a CPU the setting runs the graph path's buffers eagerly, so the dry run exercises it as well.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from jedi_core.configlib import ConfigError
from jedi_core.presets import make_config

SETTING = "performance.cuda_graphs=true"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="atari100k", help="the preset checked for the setting")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", required=True)
    parser.add_argument("bench_args", nargs=argparse.REMAINDER, help="after --: the bench's arguments")
    args = parser.parse_args()
    bench_args = args.bench_args[1:] if args.bench_args[:1] == ["--"] else args.bench_args
    overrides = [SETTING, *os.environ.get("GRAPHS_SET", "").split()]
    out = Path(args.out)
    try:
        make_config(args.preset, [SETTING])
    except ConfigError as error:
        return skip(out, f"not available: the config has no {SETTING.split('=')[0]} yet", detail=str(error))
    make_config(args.preset, overrides)  # a bad GRAPHS_SET fails here, as itself
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            return skip(out, "CUDA graphs need a GPU, and torch sees none")
    command = [sys.executable, "-m", "jedi_core", "bench", *bench_args, "--set", *overrides,
               "--out", str(out)]
    print(" ".join(command), flush=True)
    return subprocess.run(command).returncode


def skip(out: Path, reason: str, detail: str = "") -> int:
    out.write_text(json.dumps({"stage_skipped": reason, **({"detail": detail} if detail else {})}, indent=1))
    print("skipped:", reason)
    return 0


if __name__ == "__main__":
    sys.exit(main())
