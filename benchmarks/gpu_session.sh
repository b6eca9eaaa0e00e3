#!/usr/bin/env bash
# Every GPU measurement the project needs, in one command that fits a short slot on a GPU machine (under 9
# minutes of wall time by default), plus a CPU dry run of the same code paths, which CI runs
# (tests/test_gpu_session.py).
#
#   bash benchmarks/gpu_session.sh [--cpu-dry-run] [OUT_DIR]         # OUT_DIR default: runs/gpu_session
#
# Stages, the decisive ones first (each its own Python process under `timeout`, so one that fails or hangs
# never costs the others; those the time budget does not reach are recorded as skipped):
#   ceilings     a tiny kernel's cost launched eagerly and replayed from a CUDA graph; copy bandwidth; matmul
#   graphs_check 20 updates of each kind graphed against eager on the same draws (logs and weights within the
#                device's own spread), fresh draws at every replay, device time per replay
#   graphs       `python -m jedi_core bench`, atari100k (JEDI) against diamond (pixel), with
#                performance.cuda_graphs=true (each imagined world-model step and each whole update one graph)
#   graphs_bf16  the same with performance.precision=bf16
#   bench_fp32   the bench eagerly in fp32: the same card's baseline
#   run_probe    a real atari100k run on Breakout with CUDA graphs, every phase timed, projected to the whole
#                schedule
#   profile      benchmarks/profile_step.py on atari100k: kernels and host time per imagined step
#   bench_bf16   the eager bench with performance.precision=bf16
#   compile      performance.compile=default: compile time and rate of the actor-critic update, errors kept
# OUT_DIR receives four files, whatever happens (each rewritten after every stage, so a run cut short keeps
# what it finished): gpu_session.tar.gz (every stage's <stage>.json and logs/<stage>.log, environment.json,
# stages.json, summary.md), summary.md (also printed last: each stage's status and key numbers, the JEDI/pixel
# tables), stages.json (each stage's status: ok, skipped, failed, timed out) and environment.json (the
# device, versions and commit). The files are made in WORK (default: a new temporary folder), then packed.
#
# Settings (environment variables):
#   STAGES="ceilings bench_fp32 ..."   run only these (in the fixed order above)
#   BUDGET_<STAGE>=SECONDS             one stage's time limit, e.g. BUDGET_RUN_PROBE=200 ("rest": all that is
#                                      left of TOTAL_BUDGET, compile's default on a GPU)
#   TOTAL_BUDGET=SECONDS               the whole script's (500 on a GPU; a stage gets at most what is left)
#   PYTHON=python3                     the interpreter that has torch
#   WHEELS=build/wheels                wheels for a machine without gymnasium/ale-py and without a network
#                                      (made by benchmarks/fetch_wheels.sh; build/ is ignored by git, so copy
#                                      the folder along explicitly): installed into a temporary folder on
#                                      PYTHONPATH when gymnasium or ale-py cannot be imported
#   GIT_COMMIT=SHA                     the commit measured (not needed: without git metadata, environment.json
#                                      records a hash of the sources, and unpack.py finds their commit)
#   WORK=DIR                           where the stages write before packing (default: a temporary folder)
# The repository runs from PYTHONPATH (it need not be pip-installed). On a GPU machine without a network:
# `bash benchmarks/fetch_wheels.sh` on a connected machine first, then
# `bash benchmarks/gpu_session.sh OUT_DIR` on the GPU machine with build/wheels copied along, allowing it
# 10 minutes (benchmarks/README.md gives the exact call). To keep the results,
# `python benchmarks/gpu_session/unpack.py OUT_DIR` unpacks them into benchmarks/results/gpu_<device>_<commit>/;
# copy the tables into benchmarks/RESULTS.md with the device and versions that environment.json records.
set -uo pipefail  # no -e: a failing stage is recorded and the next one runs

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HERE=$ROOT/benchmarks/gpu_session
DRY=0
if [[ ${1:-} == -h || ${1:-} == --help ]]; then
  sed -n '2,/^set /p' "${BASH_SOURCE[0]}" | grep '^#'
  exit 0
fi
if [[ ${1:-} == --cpu-dry-run ]]; then DRY=1; shift; fi
RESULTS=${1:-$ROOT/runs/gpu_session}  # the few files that come back from a remote machine
mkdir -p "$RESULTS"
RESULTS=$(cd "$RESULTS" && pwd)
OUT=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/gpu_session.XXXXXX")}  # every stage's files, packed into RESULTS
mkdir -p "$OUT/logs"
OUT=$(cd "$OUT" && pwd)
cd "$ROOT" || exit 1
PYTHON=${PYTHON:-python3}
ALL_STAGES="ceilings graphs_check graphs graphs_bf16 bench_fp32 run_probe profile bench_bf16 compile"
STAGES=${STAGES:-$ALL_STAGES}
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 MPLBACKEND=Agg
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}

if ((DRY)); then
  # Tiny sizes on the CPU: the same scripts, flags and JSON as on a GPU, in one to two minutes on two cores.
  MODE=cpu-dry-run DEVICE=cpu
  # One thread per process: on a small machine doing other work too, torch's thread pool contends with the
  # other processes' and slows a tiny update ten times.
  export OMP_NUM_THREADS=1
  TOTAL_BUDGET=${TOTAL_BUDGET:-480}
  : "${BUDGET_CEILINGS:=60}" "${BUDGET_GRAPHS_CHECK:=120}" "${BUDGET_BENCH_FP32:=90}" "${BUDGET_PROFILE:=90}" "${BUDGET_RUN_PROBE:=120}"
  : "${BUDGET_BENCH_BF16:=90}" "${BUDGET_GRAPHS:=60}" "${BUDGET_GRAPHS_BF16:=90}" "${BUDGET_COMPILE:=150}"
  BENCH_ARGS=(--pair smoke --device cpu --batch 2 --imagination-batches 2 4 --horizon 2
              --warmup 0 --repeats 1 --iterations 1 --threads 1)
  PROFILE_ARGS=(smoke cpu --batch 2)
  # Breakout when ale-py is there (it is wherever the package is installed), shrunk to seconds.
  PROBE_ARGS=(--preset smoke --device cpu --toy-if-no-ale --random-steps 60 --epochs 3 --world-model-updates 2
              --actor-critic-updates 2 --warmup-world-model-updates 1 --warmup-actor-critic-updates 1
              --eval-episodes 2 --eval-max-steps 20
              --set env.max_episode_frames=400 world_model.batch_size=2 actor_critic.batch_size=2
                    actor_critic.horizon=2 training.env_steps_per_epoch=10 performance.cuda_graphs=true)
  # aot_eager traces the same graphs as inductor without generating kernels (inductor's C++ build would take
  # minutes on a CPU), so the dry run checks the Dynamo path, not the compiler.
  COMPILE_ARGS=(--preset smoke --device cpu --backend aot_eager --batch 2 --horizon 2 --calls 1 --repeats 1
                --warm-calls 1 --replay-steps 300)
  GRAPHS_ARGS=(--preset smoke --device cpu)
  # Nothing is captured on a CPU, so one warm-up call does (bf16 convolutions are slow on CPUs without bf16).
  GRAPHS_BENCH_ARGS=(--warmup 1)
  CHECK_ARGS=(--preset smoke --device cpu --updates 3 --replay-steps 300
              --set world_model.batch_size=2 actor_critic.batch_size=2 actor_critic.horizon=2)
else
  MODE=gpu DEVICE=cuda
  TOTAL_BUDGET=${TOTAL_BUDGET:-500}
  # Sized from the H100 measurements in benchmarks/RESULTS.md (JEDI ~10 world-model and ~2.6 actor-critic
  # updates/s, pixel ~5.5 and ~0.8/s): each stage is expected to need one half to two thirds of its budget.
  # The first six (the decisive ones) add up to the 500 s; profile, bench_bf16 and compile run as far as
  # the time allows (compile gets whatever is left: inductor needs minutes for the actor-critic update).
  : "${BUDGET_CEILINGS:=20}" "${BUDGET_GRAPHS_CHECK:=70}" "${BUDGET_GRAPHS:=80}" "${BUDGET_GRAPHS_BF16:=80}"
  : "${BUDGET_BENCH_FP32:=100}" "${BUDGET_RUN_PROBE:=150}" "${BUDGET_PROFILE:=40}" "${BUDGET_BENCH_BF16:=90}" "${BUDGET_COMPILE:=rest}"
  BENCH_ARGS=(--pair paper --device cuda --imagination-batches 32 128 512 --warmup 1 --repeats 3
              --iterations 1)
  PROFILE_ARGS=(atari100k cuda)
  PROBE_ARGS=(--preset atari100k --device cuda --set performance.cuda_graphs=true)
  COMPILE_ARGS=(--preset atari100k --device cuda --backend inductor)
  GRAPHS_ARGS=(--preset atari100k --device cuda)
  # An update runs eagerly 3 times, then is captured: 4 warm-up calls. Imagination at batch 512 would take
  # half the stage's budget for the pixel model, and the per-path projection needs only the update rates.
  GRAPHS_BENCH_ARGS=(--warmup 4 --imagination-batches 32 128)
  CHECK_ARGS=(--preset atari100k --device cuda)
fi

# environment.json records them
export TOTAL_BUDGET STAGES BUDGET_CEILINGS BUDGET_GRAPHS_CHECK BUDGET_BENCH_FP32 BUDGET_PROFILE BUDGET_RUN_PROBE \
  BUDGET_BENCH_BF16 BUDGET_GRAPHS BUDGET_GRAPHS_BF16 BUDGET_COMPILE
START=$SECONDS
say() { echo "=== [$((SECONDS - START)) s] $*"; }
left() { echo $((TOTAL_BUDGET - (SECONDS - START))); }
selected() { [[ " $STAGES " == *" $1 "* ]]; }

# -- wheels: what the stages import beyond torch and numpy, where the machine lacks it (and has no network) --
WHEELS=${WHEELS:-$ROOT/build/wheels}
missing_modules() {
  "$PYTHON" -c 'import importlib.util as u
print(" ".join(m for m in ("gymnasium", "ale_py", "cv2", "tqdm") if u.find_spec(m) is None))'
}
MISSING=$(missing_modules)
if [[ -n $MISSING ]]; then
  if compgen -G "$WHEELS/*.whl" >/dev/null; then
    SITE=$(mktemp -d "${TMPDIR:-/tmp}/jedi_wheels.XXXXXX")
    trap 'rm -rf "$SITE"' EXIT
    say "missing: $MISSING; installing the wheels of $WHEELS into $SITE (offline, no dependency resolution)"
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" \
      "$WHEELS"/*.whl && export PYTHONPATH=$PYTHONPATH:$SITE
    MISSING=$(missing_modules)
  fi
  if [[ -n $MISSING ]]; then
    # A stage that imports one of them fails with its import error, and the others still run.
    say "still missing: $MISSING (benchmarks/fetch_wheels.sh makes their wheels; cv2 needs --with-opencv)"
  fi
fi

say "environment ($MODE)"
if ! timeout -k 5 60 "$PYTHON" "$HERE/environment.py" --mode "$MODE" --device "$DEVICE" \
    --out "$OUT/environment.json" > "$OUT/logs/environment.log" 2>&1; then
  echo "environment.py failed:"
  tail -n 20 "$OUT/logs/environment.log"
fi

# -- stages ------------------------------------------------------------------------------------------------
STATUS_LINES=$OUT/logs/stages.tsv
: > "$STATUS_LINES"
record() {  # stage, rc, seconds, budget, reason
  printf '%s\t%s\t%s\t%s\t%s\n' "$@" >> "$STATUS_LINES"
}

summarize() {  # summary.md and stages.json from what the stages have written so far
  "$PYTHON" "$HERE/summary.py" "$OUT" --stage-order "$ALL_STAGES" --mode "$MODE" \
    --total-budget "$TOTAL_BUDGET" --elapsed $((SECONDS - START)) "$@"
}
pack() {  # RESULTS: the archive of everything, and the three files to read first; never half written
  tar -czf "$RESULTS/gpu_session.tar.gz.part" -C "$OUT" . &&
    mv "$RESULTS/gpu_session.tar.gz.part" "$RESULTS/gpu_session.tar.gz"
  for file in summary.md stages.json environment.json; do
    [[ -f $OUT/$file ]] && cp "$OUT/$file" "$RESULTS/$file.part" && mv "$RESULTS/$file.part" "$RESULTS/$file"
  done
  return 0
}

run_stage() {  # stage, command...: run it under its budget, keep its log, record how it ended
  local stage=$1; shift
  local var budget limit began rc
  var=BUDGET_$(echo "$stage" | tr '[:lower:]' '[:upper:]')
  budget=${!var}
  if ! selected "$stage"; then record "$stage" "" 0 "$budget" "not selected"; return; fi
  # A stage may not outlast the whole budget; the 5 s after a timeout's TERM are its grace before KILL.
  if (( $(left) - 5 < 10 )); then
    say "$stage: skipped, $(left) s of the total budget left"
    record "$stage" "" 0 "$budget" "no time left of TOTAL_BUDGET=$TOTAL_BUDGET"
    return
  fi
  if [[ $budget == rest ]]; then budget=$(( $(left) - 5 )); fi
  limit=$(( budget < $(left) - 5 ? budget : $(left) - 5 ))
  say "$stage (limit ${limit} s)"
  rm -f "$OUT/$stage.json"  # a result left by an earlier run in this folder must not pass for this one's
  began=$SECONDS
  timeout -k 5 "$limit" "$@" > "$OUT/logs/$stage.log" 2>&1
  rc=$?
  record "$stage" "$rc" $((SECONDS - began)) "$limit" ""
  if (( rc != 0 )); then
    echo "--- $stage ended with rc $rc; the end of logs/$stage.log:"
    tail -n 25 "$OUT/logs/$stage.log"
  fi
  summarize --quiet >/dev/null 2>&1
  pack
}

run_stage ceilings "$PYTHON" "$HERE/ceilings.py" --device "$DEVICE" --out "$OUT/ceilings.json"
run_stage graphs_check "$PYTHON" "$HERE/graphs_check.py" "${CHECK_ARGS[@]}" --out "$OUT/graphs_check.json"
# graphs.py benches performance.cuda_graphs=true (GRAPHS_SET: more settings), or writes {"stage_skipped": WHY}.
run_stage graphs "$PYTHON" "$HERE/graphs.py" "${GRAPHS_ARGS[@]}" --out "$OUT/graphs.json" \
  -- "${BENCH_ARGS[@]}" "${GRAPHS_BENCH_ARGS[@]}"
run_stage graphs_bf16 env GRAPHS_SET=performance.precision=bf16 "$PYTHON" "$HERE/graphs.py" "${GRAPHS_ARGS[@]}" \
  --out "$OUT/graphs_bf16.json" -- "${BENCH_ARGS[@]}" "${GRAPHS_BENCH_ARGS[@]}"
run_stage bench_fp32 "$PYTHON" -m jedi_core bench "${BENCH_ARGS[@]}" --out "$OUT/bench_fp32.json"
run_stage run_probe "$PYTHON" "$HERE/run_probe.py" "${PROBE_ARGS[@]}" --out "$OUT/run_probe.json"
run_stage profile "$PYTHON" "$HERE/profile_stage.py" "${PROFILE_ARGS[@]}" --out "$OUT/profile.json"
run_stage bench_bf16 "$PYTHON" -m jedi_core bench "${BENCH_ARGS[@]}" --set performance.precision=bf16 \
  --out "$OUT/bench_bf16.json"
run_stage compile "$PYTHON" "$HERE/compile_probe.py" "${COMPILE_ARGS[@]}" --mode default \
  --out "$OUT/compile.json"

say "summary (everything: $RESULTS/gpu_session.tar.gz)"
# Exits 1 if a stage failed or timed out; every stage has run and written what it could by then.
summarize
status=$?
pack
exit $status
