#!/usr/bin/env bash
# Every GPU measurement the project still owes, in one call (about 25 minutes on one H100). Usage, from the
# repository root on a GPU machine with the package installed:  OUT=benchmarks/results bash benchmarks/gpu_measurements.sh
# Then copy the tables into benchmarks/RESULTS.md with the device and versions the JSON files record.
set -euo pipefail
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$OUT/gpu.txt"

# 1. JEDI against pixel diffusion at paper scale, same batch sizes (world model 32; imagination 32 and 128).
python -m jedi_core bench --pair paper --device cuda --imagination-batches 32 128 512 \
  --out "$OUT/bench_paper_cuda.json" | tee "$OUT/bench_paper_cuda.txt"

# 2. Ten minutes of a real Atari100k run per method; Ctrl-C (SIGINT) checkpoints, so both can be resumed.
for preset in atari100k diamond; do
  timeout -s INT 600 python -m jedi_core train --game Breakout --preset "$preset" --seed 0 --quiet \
    --run-dir "$OUT/run_${preset}_Breakout" || true
  python benchmarks/project_run_hours.py "$OUT/run_${preset}_Breakout" | tee "$OUT/projection_${preset}.json"
done
