#!/usr/bin/env bash
# Issue 18: the learner's modes at equal env steps. Toy preset (OGPO+CA tiny, 12k env steps, UTD 0.25), 3 seeds,
# 64 ODE + 64 Best-of-N episodes every 1k env steps, the same BC checkpoint per seed for every arm. Arms (MODES,
# default "off on"): off = the default learner, on = --run.overlap-updates, compile = --run.compile,
# bf16 = --run.compile --run.precision bf16.
# Usage: [MODES="off on bf16"] bash benchmarks/overlap_toy.sh [OUT]  (default runs/overlap-toy; ~10 min of one core
# per two arms; finished runs are skipped). Publish with benchmarks/publish_results.sh (results.md section 6).
set -eu
OUT=$(realpath -m "${1:-runs/overlap-toy}")
mkdir -p "$OUT" && cd "$OUT"
for s in 0 1 2; do
  [ -f demos-s$s.hdf5 ] || flowft demos --env toy --episodes 200 --seed $s --out demos-s$s.hdf5 --no-progress
  [ -f bc-s$s/checkpoint/model.safetensors ] || flowft pretrain --task toy --demos demos-s$s.hdf5 --seed $s \
    --out-dir "$OUT" --run-name bc-s$s
  for mode in ${MODES:-off on}; do
    [ -f $mode-s$s/DONE ] && continue
    rm -rf $mode-s$s
    case $mode in
      off) flag="" ;;
      on) flag="--run.overlap-updates" ;;
      compile) flag="--run.compile" ;;
      bf16) flag="--run.compile --run.precision bf16" ;;
      *) echo "overlap_toy.sh: unknown mode '$mode' in MODES (off, on, compile, bf16)" >&2; exit 2 ;;
    esac
    flowft train ogpo-plus-ca --task toy --run.seed $s --run.bc-checkpoint bc-s$s/checkpoint \
      --run.eval-every 1000 --run.eval-episodes 64 --run.threads 1 --run.log.no-progress --run.out-dir "$OUT" \
      --run.run-name $mode-s$s $flag > $mode-s$s.log 2>&1 && touch $mode-s$s/DONE
  done
done
