#!/usr/bin/env bash
# Copy the small files of every finished benchmark run (config.json, metrics.csv, provenance.jsonl, DONE) from
# runs/bench into docs/results/runs (unfinished cells are skipped), then rebuild every report and claims table of
# docs/results.md from those copies. Run from the repository root after the grids of docs/results.md ("How these
# numbers were made"); tests/test_results.py then checks that the committed tables follow from the committed CSVs.
set -euo pipefail
SRC=${1:-runs/bench}
DST=docs/results/runs
copy_run() {  # copy_run RUN_DIR DEST: the small files of one run
  mkdir -p "$2"
  for f in config.json metrics.csv provenance.jsonl DONE; do [ -f "$1/$f" ] && cp "$1/$f" "$2/"; done
  return 0
}
for suite in cpu-small cpu-lift cpu-can-door; do
  [ -d "$SRC/$suite" ] || continue
  find "$SRC/$suite" -name metrics.csv -not -path '*.aborted-*' | while read -r m; do
    d=$(dirname "$m"); rel=${d#"$SRC"/}
    # finished cells only: a training run with its DONE marker, a BC run with its checkpoint
    [ -f "$d/DONE" ] || [ -f "$d/checkpoint/model.safetensors" ] || { echo "skipped (unfinished): $d" >&2; continue; }
    copy_run "$d" "$DST/$rel"
  done
  cp "$SRC/$suite/suite.json" "$SRC/$suite/sittings.jsonl" "$DST/$suite/" 2>/dev/null || true
done
# single-cell diagnostics run outside the suites (python -m flowft.bench.runner SPEC, results.md §3): runs/diag next
# to runs/bench
DIAG=$(dirname "$SRC")/diag
if [ -d "$DIAG" ]; then
  find "$DIAG" -name DONE | while read -r f; do
    d=$(dirname "$f"); copy_run "$d" "$DST/diag/${d#"$DIAG"/}"
  done
fi
# the Lift recipe sweep of issue 17 (benchmarks/recipe_sweep.sh; results.md section 8): runs/recipe-sweep next to
# runs/bench, same layout (lift/<arm>/s<seed>, lift/bc/s<seed>)
SWEEP=$(dirname "$SRC")/recipe-sweep
if [ -d "$SWEEP" ]; then
  find "$SWEEP" -name metrics.csv | while read -r m; do
    d=$(dirname "$m"); [ -f "$d/DONE" ] || [ -f "$d/checkpoint/model.safetensors" ] || continue
    copy_run "$d" "$DST/recipe-sweep/${d#"$SWEEP"/}"
  done
fi

# the honest-start cells of issue 17 (results.md section 9): runs/operator-sweep next to runs/bench, layout
# <task>/<arm>/s<seed> (BC: <task>/bc/s<seed>); arms stopped by hand carry a STOPPED note and are published as such,
# arms branched from another cell's checkpoint a BRANCHED note
# (Lift preset seeds 1-2, Can ogpo-plus, door's preset and door dppo are `flowft bench sim-recipe` cells, door ogpo-plus s0 a
# `flowft train` run with the suite's settings; all copied into this layout by hand)
OPS=$(dirname "$SRC")/operator-sweep
if [ -d "$OPS" ]; then
  find "$OPS" -name metrics.csv | while read -r m; do
    d=$(dirname "$m"); rel=${d#"$OPS"/}; copy_run "$d" "$DST/operator-sweep/$rel"
    for f in STOPPED BRANCHED gate.json attempts.json; do [ ! -f "$d/$f" ] || cp "$d/$f" "$DST/operator-sweep/$rel/"; done
    # a BC's weights too (~130 KB, safetensors with its sha256 manifest): a later arm, on any machine, can then start
    # from the very policy a published row started from (BC weights differ in their last bits across CPUs)
    if [ -f "$d/checkpoint/model.safetensors" ]; then
      mkdir -p "$DST/operator-sweep/$rel/checkpoint"
      cp "$d"/checkpoint/{config.json,manifest.json,model.safetensors} "$DST/operator-sweep/$rel/checkpoint/"
    fi
  done
fi
# issue 18: the learner modes (off, on = --run.overlap-updates, compile, bf16) at equal env steps on toy
# (benchmarks/overlap_toy.sh, results.md section 6): runs/overlap-toy/<mode>-s<seed> next to runs/bench, published as
# overlap-toy/<mode>/s<seed>
OVL=$(dirname "$SRC")/overlap-toy
if [ -d "$OVL" ]; then
  for f in "$OVL"/*-s*/DONE; do
    [ -f "$f" ] || continue
    d=$(dirname "$f"); n=$(basename "$d"); copy_run "$d" "$DST/overlap-toy/${n%-s*}/s${n##*-s}"
  done
fi

# door's BC loss with the tiny and mid policies (results.md section 9): runs/door-capacity/<size> next to runs/bench,
# each `flowft pretrain --task door --size <size> --demos <door seed-0 demos> --steps 10000 --no-clip`
CAP=$(dirname "$SRC")/door-capacity
if [ -d "$CAP" ]; then
  for d in "$CAP"/*/; do [ ! -f "$d/metrics.csv" ] || copy_run "$d" "$DST/door-capacity/$(basename "$d")"; done
fi
R=docs/results
flowft report $DST/cpu-small --label parent --out $R/toy-main --title "Toy: OGPO variants and the baselines" \
    --methods ogpo ogpo-plus ogpo-ca ogpo-plus-ca dppo dsrl qc bon-sft expo residual
flowft report $DST/cpu-small --label parent --out $R/toy-extraction --title "Toy: policy extraction (OGPO+)" \
    --methods ogpo-plus ogpo-awr ogpo-awr-fm ogpo-fpo ogpo-bptt \
    --metrics train/actor/var_along_gradq:train/actor/var_orth_gradq
flowft report $DST/cpu-small --label parent --out $R/toy-ablations --title "Toy: OGPO+CA ablations" \
    --methods ogpo-plus-ca ogpo-plus-ca-min-target ogpo-plus-ca-group-std ogpo-plus-ca-no-sde-correction \
              ogpo ogpo-ca ogpo-plus
# Lift: the issue-6 methods, the extraction presets and Best-of-N SFT (3 seeds each)
flowft report $DST/cpu-lift --out $R/lift --title "Lift: the issue-6 methods" \
    --methods ogpo ogpo-plus ogpo-plus-ca dppo dsrl qc expo residual
flowft report $DST/cpu-lift --out $R/lift-extraction --title "Lift: policy extraction and Best-of-N SFT" \
    --methods ogpo-plus ogpo-plus-ca bon-sft ogpo-awr ogpo-awr-fm ogpo-fpo ogpo-bptt
# Can: evaluated at 0 and 12k only; the extra panel is the rollout (data-collecting) policy's episode success,
# logged every 1k env steps, which on Can parts from the ODE evaluation (results.md §3)
flowft report $DST/cpu-can-door/can --out $R/can --title "Can: the issue-6 methods" \
    --methods ogpo ogpo-plus ogpo-plus-ca dppo dsrl qc expo residual --metrics train/episode_success
# Can diagnostic (seeds 0 and 1): OGPO+CA with the authors' actor step sizes (lr 4.5e-5 -> 2e-5 floor, actor EMA
# 0.005) against the same seeds' cpu-can-door cells (lr 3e-4 -> 1e-4, EMA 0.05)
flowft report $DST/cpu-can-door/can/ogpo-plus-ca/s0 $DST/cpu-can-door/can/ogpo-plus-ca/s1 $DST/diag/can \
    --label parent --out $R/can-diag \
    --title "Can seeds 0-1: OGPO+CA with the CPU preset's and the authors' actor step sizes" \
    --metrics train/episode_success train/critic/q_mean train/actor/clip_frac
flowft report $DST/recipe-sweep/lift --label parent --out $R/recipe-sweep \
    --title "Lift recipe sweep (50k env steps): OGPO+CA with the fast CPU actor steps (seeds 0, 1) vs the authors' recipe (seed 1), both M = 10" \
    --metrics train/episode_success train/critic/q_mean train/actor/clip_frac train/actor/adv_zero_frac
flowft report $DST/operator-sweep/lift $DST/operator-sweep/can $DST/operator-sweep/door --label parent --out $R/operator-sweep \
    --title "Honest starts (operator demos, flat-loss BC, 64-episode ODE gate): the OGPO+CA preset, OGPO+ and DPPO on Lift, Can and Adroit door (seeds per arm in the tables)" \
    --metrics train/episode_success train/critic_diag/spearman train/actor/clip_frac
[ -d $DST/overlap-toy ] && flowft report $DST/overlap-toy --label parent --out $R/overlap-toy \
    --title "Toy, OGPO+CA preset, learner modes at equal env steps: off (default), on (--run.overlap-updates), compile (--run.compile), bf16 (--run.compile --run.precision bf16)"
flowft report $DST/cpu-can-door/door --out $R/door --title "Adroit door: the issue-6 methods, evaluated every 1k env steps"
python benchmarks/claims.py $DST/cpu-small --switch 2000 --window 4000 --out $R/claims-toy.md \
    --methods ogpo ogpo-ca ogpo-plus ogpo-plus-ca ogpo-plus-ca-min-target ogpo-plus-ca-group-std \
              ogpo-plus-ca-no-sde-correction ogpo-bptt ogpo-awr-fm ogpo-awr ogpo-fpo
# Lift is evaluated at 0 and 12k only: its table gives the per-seed start and final (the window columns read "no eval");
# methods without finished cells are left out of the table
python benchmarks/claims.py $DST/cpu-lift --switch 6000 --window 4000 --out $R/claims-lift.md \
    --methods ogpo ogpo-plus ogpo-plus-ca dppo dsrl qc expo residual bon-sft ogpo-awr ogpo-awr-fm ogpo-fpo ogpo-bptt
python benchmarks/claims.py $DST/cpu-can-door/can --switch 6000 --window 4000 --out $R/claims-can.md \
    --methods ogpo ogpo-plus ogpo-plus-ca dppo dsrl qc expo residual
# door: the actor starts at 6k (2k warm-up steps + 1000 critic-only updates at UTD 0.25)
python benchmarks/claims.py $DST/cpu-can-door/door --switch 6000 --window 4000 --out $R/claims-door.md \
    --methods ogpo ogpo-plus ogpo-plus-ca dppo dsrl qc expo residual
