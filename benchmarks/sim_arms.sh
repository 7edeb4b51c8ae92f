#!/usr/bin/env bash
# The by-hand arms of docs/results.md section 9, by name. Each seed runs one benchmarks/sim_cell.sh cell (the
# `flowft bench sim-recipe` suite's settings plus the arm's flags) from the BC checkpoint that
# `flowft bench sim-recipe --out-dir BENCH` made for that task and seed, into OUT/<task>/<arm>/s<seed>: the layout of
# the published runs (docs/results/runs/operator-sweep). Resumable like sim_cell.sh; seeds run one after another.
# Run from a frozen checkout (a git worktree) so later edits never change a running cell.
#   bash benchmarks/sim_arms.sh BENCH OUT TASK/ARM SEED...   # e.g. ... runs/bench runs/arms can/ogpo-plus-bon 0 1 2
#   bash benchmarks/sim_arms.sh --list                       # every arm and its flags
# DRY=1 prints each cell's sim_cell.sh command instead of running it. FLOWFT is passed on to sim_cell.sh.
# The published cells' BC checkpoints are recorded in each run's config.json (run.bc_checkpoint).
set -uo pipefail
FAST="--algo.actor-lr 3e-4 --algo.actor-lr-floor 1e-4 --algo.lr-warmup 200 --algo.lr-cycle 20000"  # Lift's actor lr
BON="--algo.best-of-n 8 --algo.bon-after-updates 2000"  # act with the critic's best of 8 chains once it has trained
declare -A ARMS=(  # TASK/ARM -> "ALGO FLAGS..." (the commit each was first run at: results.md section 9)
  [door/ogpo-plus-fast]="ogpo-plus $FAST"                      # b4dbc4d
  [door/ogpo-plus-fast-bon]="ogpo-plus $FAST $BON"             # e4c4d14
  [door/ogpo-plus-fast-utd1]="ogpo-plus $FAST --run.utd 1.0"   # e4c4d14
  [door/ogpo-plus-fast-utd1-ae4]="ogpo-plus $FAST --run.utd 1.0 --algo.actor-every 4"  # f3f4520 (unpublished)
  [door/ogpo-plus-fast-utd1-bon]="ogpo-plus $FAST --run.utd 1.0 $BON"  # (not run yet)
  [door/ogpo-plus-fast-utd2]="ogpo-plus $FAST --run.utd 2.0 --run.compile"  # (not run yet): UTD 1 doubled door's gain
  # door's clipped fraction follows the lr's 20k-update cycles (0.70-0.77 at 3e-4, 0.42-0.47 at 1e-4)
  [door/ogpo-plus-fast-utd1-norestart]="ogpo-plus $FAST --run.utd 1.0 --algo.no-lr-restart"  # b7c41de (seed 2 to 100k)
  # paired with the arm above (same BC per seed), only the update-to-data ratio differs
  [door/ogpo-plus-fast-utd2-norestart]="ogpo-plus $FAST --run.utd 2.0 --run.compile --algo.no-lr-restart"  # (session 21)
  [can/ogpo-plus-bon]="ogpo-plus $BON"                         # e4c4d14
  [can/preset-bon]="ogpo-plus-ca $BON"                         # e4c4d14 (seeds 0-1 published)
  [can/preset-bon-utd1]="ogpo-plus-ca $BON --run.utd 1.0 --run.compile"  # e4c4d14 (seeds 0, 2 published; seed 1 to 30k at b7c41de)
  [can/preset-bon-utd1-norestart]="ogpo-plus-ca $BON --run.utd 1.0 --run.compile --algo.no-lr-restart"  # 5154e4c (seed 2 branched at 50k, to 100k)
  [can/preset-bon-lr15]="ogpo-plus-ca $BON --algo.actor-lr 1.5e-4 --algo.actor-lr-floor 6e-5"  # e4c4d14 (seed 0 published)
  [lift/preset-bon]="ogpo-plus-ca $BON"                        # e4c4d14
  # the reference, from the same BC per seed as the Can UTD-1 cells (the suite's DPPO cell, under arms/)
  [can/dppo]="dppo"                                            # (session 21)
  [can/qc]="qc"                                                # (session 21): the partial-finetuning baseline of the suite
  # door's success-buffer cloning loss stays at 0.29-0.31 with the 2x128 policy (112-dim chunk; results.md section 9):
  # the door preset with a 3x256 velocity MLP (mid's; the tiny learner otherwise), from its own BC (ARM_BC below)
  [door/ogpo-plus-fast-utd1-p256x3]="ogpo-plus $FAST --run.utd 1.0 --algo.policy.hidden 256 256 256"  # 886bf5b (seed 2 to 40k)
  # Can's 20-demo BCs end their 15k steps under the 0.45 clip (gates 0.27 / 0.11 / 0.17: starts far below the authors',
  # who clip at >= 0.45); the Can preset from a BC on 40 demos of the same seed (ARM_BC, ARM_DEMOS below)
  [can/preset-n40]="ogpo-plus-ca"                              # (session 25)
  # the Can preset with a 3x256 velocity MLP, from its own BC on the suite's demos (ARM_BC below)
  [can/preset-p256x3]="ogpo-plus-ca --algo.policy.hidden 256 256 256"  # (session 25)
  # the authors' flow-time embedding (sin/cos of raw t, then Linear-GELU-Linear): its Can BCs read higher than the
  # preset's on the gate confirmation's episodes (docs/tasks.md "Time embedding"); the Can preset from such a BC
  [can/preset-te-mlp]="ogpo-plus-ca --algo.policy.time-embed mlp"  # (session 27)
  # QC's best-of-8 read 0.91 on Can seed 1 while its flow's ODE read 0.28: the Can preset plus a flow-matching term on
  # the critic's pick among 8 imagined chunks per actor state (Best-of-N distillation), so the ODE follows the pick
  [can/preset-distill]="ogpo-plus-ca --algo.bon-distill-coeff 1.0"  # (session 29)
  [can/preset]="ogpo-plus-ca"  # the Can preset as it is (Best-of-8 included): preset-distill's control, same BCs (session 29)
  # the distilled flow follows its Best-of-8 pick but still rises ~0.05 per 10k on seeds 1-2 at the authors' actor lr
  # (4.5e-5, EMA 0.005): the distillation arm with Lift's fast actor steps and EMA 0.05 (never run past 31k on Can)
  [can/preset-distill-fast]="ogpo-plus-ca --algo.bon-distill-coeff 1.0 $FAST --algo.tau-actor 0.05"  # (session 30)
  # with coefficient 1 the ODE still read 0.08-0.12 under its Best-of-8 policy on the 100k checkpoints: a 3x pull
  [can/preset-distill3]="ogpo-plus-ca --algo.bon-distill-coeff 3.0"  # (session 30)
  # door acts with one SDE sample, so distillation had no pick to follow: the door preset (OGPO+, fast actor steps,
  # UTD 1) acting with the critic's best of 8 chains and distilling that pick at Can's 3x pull
  [door/preset-bon-distill3]="ogpo-plus $BON --algo.bon-distill-coeff 3.0"  # (session 31)
  # UTD 0.25 -> 1 took door seed 0 from 0.53 to 0.84 at 100k: the door preset at UTD 2 (eager, as the preset runs)
  [door/preset-utd2]="ogpo-plus --run.utd 2.0"  # (session 31)
)
# Arms whose policy differs from the suite's BC: "BC_NAME PRETRAIN_FLAGS...". Their BC is
# BENCH/sim-recipe/TASK/BC_NAME/sSEED, made when missing by `flowft pretrain` (the task's BC preset, the same seed,
# on the suite's demos for that seed: BENCH/sim-recipe/TASK/demos/sSEED-*.hdf5) with these flags.
declare -A ARM_BC=(
  [door/ogpo-plus-fast-utd1-p256x3]="bc-p256x3 --policy.hidden 256 256 256"
  [can/preset-n40]="bc-n40"
  [can/preset-p256x3]="bc-p256x3 --policy.hidden 256 256 256"
  [can/preset-te-mlp]="bc-te-mlp --policy.time-embed mlp"
)
# Arms whose BC trains on a demo file of its own size: episodes per seed. The file is
# BENCH/sim-recipe/TASK/demos/sSEED-nN-default.hdf5, made when missing by `flowft demos` (the task's default style).
declare -A ARM_DEMOS=(
  [can/preset-n40]=40
)
if [ "${1:-}" = "--list" ]; then
  for key in $(printf '%s\n' "${!ARMS[@]}" | sort); do echo "$key: ${ARMS[$key]}"; done; exit 0
fi
[ $# -ge 4 ] || { echo "usage: sim_arms.sh BENCH OUT TASK/ARM SEED... (or --list)" >&2; exit 2; }
BENCH=$1; OUT=$2; KEY=$3; shift 3
KNOWN=$(printf '%s\n' "${!ARMS[@]}" | sort | tr '\n' ' ')
[ -n "${ARMS[$KEY]+x}" ] || { echo "sim_arms.sh: unknown arm '$KEY' (known: ${KNOWN% })" >&2; exit 2; }
for SEED in "$@"; do
  [[ $SEED =~ ^[0-9]+$ ]] || { echo "sim_arms.sh: SEED '$SEED' is not a non-negative integer" >&2; exit 2; }
done
TASK=${KEY%%/*}; ARM=${KEY#*/}
read -r ALGO FLAGS <<< "${ARMS[$KEY]}"
for SEED in "$@"; do
  BC=$BENCH/sim-recipe/$TASK/bc/s$SEED/checkpoint
  if [ -n "${ARM_BC[$KEY]+x}" ]; then
    read -r BC_NAME BC_FLAGS <<< "${ARM_BC[$KEY]}"
    BC=$BENCH/sim-recipe/$TASK/$BC_NAME/s$SEED/checkpoint
    if [ ! -f "$BC/model.safetensors" ]; then
      if [ -n "${ARM_DEMOS[$KEY]+x}" ]; then
        DEMOS=$BENCH/sim-recipe/$TASK/demos/s$SEED-n${ARM_DEMOS[$KEY]}-default.hdf5
        GEN=(${FLOWFT:-flowft} demos --env "$TASK" --episodes "${ARM_DEMOS[$KEY]}" --seed "$SEED" --out "$DEMOS"
             --no-progress)
        if [ -n "${DRY:-}" ]; then echo "${GEN[*]}"
        elif [ ! -f "$DEMOS" ]; then
          mkdir -p "$(dirname "$DEMOS")"
          "${GEN[@]}" || { echo "sim_arms.sh: demos for $KEY seed $SEED failed" >&2; exit 1; }
        fi
      else
        DEMOS=$(ls "$BENCH/sim-recipe/$TASK/demos/s$SEED"-*.hdf5 2>/dev/null | head -n 1)
      fi
      if [ -z "$DEMOS" ] && [ -z "${DRY:-}" ]; then
        echo "sim_arms.sh: no demos $BENCH/sim-recipe/$TASK/demos/s$SEED-*.hdf5 for $KEY's BC (run flowft bench sim-recipe first)" >&2
        exit 2
      fi
      # shellcheck disable=SC2086  # BC_FLAGS is a list of words
      PRE=(${FLOWFT:-flowft} pretrain --task "$TASK" --demos "${DEMOS:-$BENCH/sim-recipe/$TASK/demos/s$SEED-*.hdf5}"
           --seed "$SEED" --threads 1 --out-dir "$BENCH/sim-recipe/$TASK/$BC_NAME" --run-name "s$SEED" $BC_FLAGS)
      if [ -n "${DRY:-}" ]; then echo "${PRE[*]}"
      else
        [ -d "$BENCH/sim-recipe/$TASK/$BC_NAME/s$SEED" ] && mv "$BENCH/sim-recipe/$TASK/$BC_NAME/s$SEED" \
          "$BENCH/sim-recipe/$TASK/$BC_NAME/s$SEED.aborted-$(date +%Y%m%d-%H%M%S)"  # BC has no resume
        mkdir -p "$BENCH/sim-recipe/$TASK/$BC_NAME"
        "${PRE[@]}" > "$BENCH/sim-recipe/$TASK/$BC_NAME/s$SEED.log" 2>&1 || {
          echo "sim_arms.sh: BC for $KEY seed $SEED failed (log: $BENCH/sim-recipe/$TASK/$BC_NAME/s$SEED.log)" >&2; exit 1; }
      fi
    fi
  fi
  # shellcheck disable=SC2086  # FLAGS is a list of words
  CMD=(bash "$(dirname "$0")/sim_cell.sh" "$OUT/$TASK/$ARM" "$TASK" "$ALGO" "s$SEED" "$SEED" "$BC" $FLAGS)
  if [ -n "${DRY:-}" ]; then echo "${CMD[*]}"; else "${CMD[@]}" || exit $?; fi
done
