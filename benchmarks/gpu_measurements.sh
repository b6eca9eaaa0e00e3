#!/usr/bin/env bash
# Every GPU measurement the project still owes, in stages that each take under 10 minutes on one H100.
# From the repository root on a GPU machine with the package installed:
#   OUT=benchmarks/results bash benchmarks/gpu_measurements.sh precision   # fast path vs fp32 (~3 min)
#   OUT=benchmarks/results bash benchmarks/gpu_measurements.sh bench       # JEDI vs pixel, fp32 eager (~5 min)
#   OUT=benchmarks/results bash benchmarks/gpu_measurements.sh fast        # the same with bf16 / compile (~8 min)
#   OUT=benchmarks/results PRESET=atari100k bash benchmarks/gpu_measurements.sh runs  # 9 min of a real run
#   (no argument: all four, one after the other)
# Then copy the tables into benchmarks/RESULTS.md with the device and versions the JSON files record, and turn
# on (in the atari100k preset) each fast-path setting that is faster and within tolerance.
set -euo pipefail
OUT=${OUT:-benchmarks/results}
RUN_SECONDS=${RUN_SECONDS:-540}
mkdir -p "$OUT"
stage=${1:-all}
BENCH=(python -m jedi_core bench --pair paper --device cuda --imagination-batches 32 128 512)

if [[ $stage == all || $stage == precision ]]; then
  { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"; } | tee "$OUT/gpu.txt"
  # 1. How far bf16 and compiled graphs move the outputs from fp32 eager, at paper scale.
  for preset in atari100k diamond; do
    python benchmarks/precision_check.py --preset "$preset" --device cuda --out "$OUT/precision_${preset}_cuda.json"
  done
fi

if [[ $stage == all || $stage == bench ]]; then
  # 2. JEDI against pixel diffusion at paper scale, same batch sizes, the reference path (fp32, eager).
  "${BENCH[@]}" --out "$OUT/bench_paper_cuda.json" | tee "$OUT/bench_paper_cuda.txt"
fi

if [[ $stage == all || $stage == fast ]]; then
  # 3. Each fast-path setting on its own and together; keep what beats the reference.
  for setting in "performance.precision=bf16" "performance.compile=reduce-overhead" \
                 "performance.precision=bf16 performance.compile=reduce-overhead"; do
    name=$(echo "$setting" | sed 's/performance\.//g; s/=/-/g; s/ /_/g')
    # shellcheck disable=SC2086
    "${BENCH[@]}" --set $setting --out "$OUT/bench_paper_cuda_${name}.json" | tee "$OUT/bench_paper_cuda_${name}.txt"
  done
fi

if [[ $stage == all || $stage == runs ]]; then
  # 4. A real Atari100k run of PRESET (atari100k, then diamond) for RUN_SECONDS; SIGINT checkpoints, and the
  #    same command resumes, so call this stage again until the projection has the 3 epochs it needs (the
  #    first epoch alone holds 10,000 world-model updates). RUN_OVERRIDES (e.g. "performance.precision=bf16")
  #    applies to the run.
  preset=${PRESET:-atari100k}
  # shellcheck disable=SC2086
  timeout -s INT "$RUN_SECONDS" python -m jedi_core train --game Breakout --preset "$preset" --seed 0 --quiet \
    --run-dir "$OUT/run_${preset}_Breakout" ${RUN_OVERRIDES:-} || true
  python benchmarks/project_run_hours.py "$OUT/run_${preset}_Breakout" | tee "$OUT/projection_${preset}.json" || true
fi
