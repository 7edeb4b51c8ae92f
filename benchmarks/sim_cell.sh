#!/usr/bin/env bash
# One simulator cell with the `flowft bench sim-recipe` suite's settings (100k env steps, 64 ODE episodes every 10k,
# 8 eval envs, checkpoints every 10k, 4 sync envs, 1 torch thread) from a given BC checkpoint, plus any extra flags:
# how the by-hand arms of docs/results.md section 9 were run. Resumable: rerunning resumes the cell from its last
# checkpoint (the extra flags are then taken from the run's config.json). Run from a frozen checkout (a git worktree)
# so later edits never change a running cell.
#   bash benchmarks/sim_cell.sh OUT TASK ALGO NAME SEED BC_CHECKPOINT [FLAGS...]
# The section 9 arms by name (their flags, the BC of each task and seed): benchmarks/sim_arms.sh.
# FLOWFT overrides the command (default: flowft; e.g. FLOWFT="python -m flowft" with PYTHONPATH=src).
set -uo pipefail
[ $# -ge 6 ] || { echo "usage: sim_cell.sh OUT TASK ALGO NAME SEED BC_CHECKPOINT [FLAGS...]" >&2; exit 2; }
OUT=$1; TASK=$2; ALGO=$3; NAME=$4; SEED=$5; BC=$6; shift 6
[ -d "$BC" ] || { echo "sim_cell.sh: BC_CHECKPOINT $BC is not a directory" >&2; exit 2; }
mkdir -p "$OUT"
if [ -n "$(ls "$OUT/$NAME/checkpoints" 2>/dev/null)" ]; then
  ${FLOWFT:-flowft} resume "$OUT/$NAME" >> "$OUT/$NAME.log" 2>&1
else
  ${FLOWFT:-flowft} train "$ALGO" --task "$TASK" --run.seed "$SEED" --run.bc-checkpoint "$BC" --run.env-steps 100000 \
    --run.eval-every 10000 --run.eval-episodes 64 --run.eval-envs 8 --run.eval-samplers ode --run.ckpt-every 10000 \
    --run.out-dir "$OUT" --run.run-name "$NAME" --run.threads 1 --run.log.no-progress --run.vectorization sync \
    "$@" > "$OUT/$NAME.log" 2>&1
fi && echo "{}" > "$OUT/$NAME/DONE"
