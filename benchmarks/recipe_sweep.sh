#!/usr/bin/env bash
# The Lift recipe sweep of issue 17 (docs/results.md section 8): OGPO+CA from one clipped BC checkpoint, two arms,
# 50k env steps, 64 ODE episodes every 10k. Run from the repository root of a frozen checkout (a git worktree, so
# later edits never change a running cell); resumable: rerunning resumes a cell from its last checkpoint. Each arm
# is one benchmarks/sim_cell.sh cell (log: OUT/lift/<arm>/s<seed>.log).
#   bash benchmarks/recipe_sweep.sh OUT SEED        # e.g. OUT=runs/recipe-sweep SEED=1; arms run two at a time
# The arms as run (commit 8b2d5ae, the preset of that commit + these flags):
#   fast-actor-M10 : the earlier CPU preset (actor lr 3e-4 -> 1e-4, EMA 0.05, critic lr 3e-4, learning from 2k env
#                    steps, 1000 critic-only updates) with M = 10 critic heads
#   authors-M10    : the authors' actor lr 4.5e-5 -> 2e-5 (2k-update warm-up, 50k cycle), EMA 0.005, critic lr 4.5e-5,
#                    learning from 10k env steps, no critic-only warm-up, M = 10
set -euo pipefail
OUT=${1:?usage: recipe_sweep.sh OUT SEED}; SEED=${2:?usage: recipe_sweep.sh OUT SEED}
mkdir -p "$OUT/lift"
DEMOS=$OUT/lift/demos-s$SEED-n50.hdf5; BC=$OUT/lift/bc/s$SEED
[ -f "$DEMOS" ] || flowft demos --env lift --episodes 50 --seed "$SEED" --action-noise 0.1 --style clean --out "$DEMOS"
[ -f "$BC/checkpoint/model.safetensors" ] || flowft pretrain --task lift --size tiny --demos "$DEMOS" --seed "$SEED" \
    --gate first-check --clip-sampler sde --steps 2000 --eval-every 50 --eval-episodes 16 --eval-envs 8 \
    --out-dir "$OUT/lift/bc" --run-name "s$SEED"  # the BC preset of 8b2d5ae (first 16-episode SDE check >= 0.45)
cell() {  # cell LABEL FLAGS...: train (or resume) one arm through sim_cell.sh, at this sweep's 50k budget
  local label=$1; shift
  bash "$(dirname "$0")/sim_cell.sh" "$OUT/lift/$label" lift ogpo-plus-ca "s$SEED" "$SEED" "$BC/checkpoint" \
    --run.env-steps 50000 --run.ckpt-every 5000 "$@"  # the last value of a repeated flag wins
}
cell fast-actor-M10 --algo.critic.num-heads 10 --algo.actor-lr 3e-4 --algo.actor-lr-floor 1e-4 --algo.lr-warmup 200 \
    --algo.lr-cycle 20000 --algo.tau-actor 0.05 --algo.critic-lr 3e-4 --run.start-training 2000 \
    --algo.critic-warmup 1000 &
cell authors-M10 --algo.critic.num-heads 10 --algo.actor-lr 4.5e-5 --algo.actor-lr-floor 2e-5 --algo.lr-warmup 2000 \
    --algo.lr-cycle 50000 --algo.tau-actor 0.005 --algo.critic-lr 4.5e-5 --run.start-training 10000 \
    --algo.critic-warmup 0 &
wait
