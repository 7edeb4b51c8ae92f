#!/usr/bin/env bash
# Mutation testing of OGPO's core (issue 22) with mutmut 3 (PyPI), over the fast tests of each target. Not part of
# CI (tens of minutes per target on 2 busy cores). Never touches this working tree: the tree (tracked + untracked,
# not ignored files; docs/results/ left out) is copied to a scratch directory and mutmut runs there; the results
# land in OUT.
#
#   bash benchmarks/mutation.sh OUT [TARGET ...]
#
# TARGET: a file or directory under src/flowft (default: the five below). Run one target at a time on a busy
# machine (nice -n 19). Each target writes OUT/<name>/{status.txt (one line per mutant), survivors.txt,
# survivors.diff (`mutmut show` of each survivor), results.txt} and appends its score to OUT/summary.txt.
# Environment:
#   MUTATION_JOBS   parallel test processes (default 1; mutmut's own default is the CPU count)
#   MUTATION_TESTS  pytest files for every target (default: the target's fast tests, `tests_for` below)
#   MUTATION_TIMEOUT_MULTIPLIER, MUTATION_TIMEOUT_CONSTANT  a mutant times out after multiplier x its tests' clean
#                   duration + constant seconds (default 50 x + 30 s: a busy machine's durations vary a lot)
#   KEEP_SCRATCH=1  keep the scratch copy (its mutants/ dir: `mutmut show NAME` / `mutmut apply NAME` there)
# Needs: pip install 'mutmut==3.8.1'. docs/testing.md records the last score and what each survivor means.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: bash benchmarks/mutation.sh OUT [TARGET ...]}
shift || true
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
  TARGETS=(src/flowft/objectives src/flowft/critics src/flowft/policies/sde.py src/flowft/data/buffer.py
           src/flowft/algos/ogpo.py)
fi

tests_for() {  # the fast tests that exercise a target (mutmut then runs, per mutant, those that cover its function)
  case "$1" in
    src/flowft/objectives*) echo tests/test_objectives.py tests/test_mechanisms.py tests/test_extraction.py \
                                 tests/test_gaussian_sac.py tests/test_dppo.py tests/test_mutants_objectives.py ;;
    src/flowft/critics*) echo tests/test_critic.py tests/test_td_targets.py tests/test_critic_diag.py \
                              tests/test_mechanisms.py tests/test_mutants_critics.py ;;
    src/flowft/policies/sde.py) echo tests/test_sde.py tests/test_dppo.py tests/test_mechanisms.py \
                                     tests/test_mutants_sde.py ;;
    src/flowft/data/buffer.py) echo tests/test_buffer.py tests/test_misc.py tests/test_critic_diag.py \
                                    tests/test_mechanisms.py tests/test_mutants_buffer.py ;;
    src/flowft/algos/ogpo.py) echo tests/test_mechanisms.py tests/test_objectives.py tests/test_ogpo_acting.py \
                                   tests/test_extraction.py tests/test_mutants_ogpo.py ;;
    *) echo tests/test_mechanisms.py tests/test_objectives.py ;;
  esac
}
# the toy training runs (smoke + resume) and the compiled / reduced-precision variants are not fast tests: minutes
# each, and mutmut would rerun them for every mutant they cover
DESELECT="not smoke and not resume and not training_logs and not every_precision"
JOBS=${MUTATION_JOBS:-1}
python -c "import mutmut" 2>/dev/null || { echo "mutmut is not installed: pip install 'mutmut==3.8.1'" >&2; exit 2; }
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
SRC=$(pwd)

for target in "${TARGETS[@]}"; do
  [ -e "$target" ] || { echo "no such target: $target" >&2; exit 2; }
  name=$(echo "${target#src/flowft/}" | tr '/' '_' | sed 's/\.py$//')
  scratch=$(mktemp -d "${TMPDIR:-/tmp}/flowft-mutation-XXXXXX")
  # tracked files deleted in the working tree are listed too: copy only what exists
  git ls-files -co --exclude-standard -z | grep -zv '^docs/results/' \
    | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done | xargs -0 cp --parents -t "$scratch"
  # mutmut forks each mutant's test run from a process that has run torch: with an intra-op thread pool there
  # (tests/conftest.py asks for 2 threads) a forked child can hang on it, so the scratch copy runs single-threaded
  sed -i 's/^torch.set_num_threads(.*)$/torch.set_num_threads(1)/' "$scratch/tests/conftest.py"
  if [ -d "$target" ]; then pattern="$target/*"; else pattern="$target"; fi
  tests=${MUTATION_TESTS:-$(tests_for "$target")}
  cat > "$scratch/setup.cfg" <<CFG
[mutmut]
source_paths = src
only_mutate = $pattern
pytest_add_cli_args_test_selection =
$(for t in $tests; do printf '    %s\n' "$t"; done)
pytest_add_cli_args =
    -p
    no:cacheprovider
    -m
    not slow and not gpu and not sim
    -k
    $DESELECT
use_git_change_detection = False
# a busy machine's tests vary a lot in duration: mutmut's default (15x the clean run) reports spurious timeouts
timeout_multiplier = ${MUTATION_TIMEOUT_MULTIPLIER:-50}
timeout_constant = ${MUTATION_TIMEOUT_CONSTANT:-30}
CFG
  echo "== $target: mutmut in $scratch over $tests ($(date -u +%FT%TZ))"
  start=$(date +%s)
  (cd "$scratch" && OMP_NUM_THREADS=1 mutmut run --max-children "$JOBS" > "$OUT/$name.run.log" 2>&1) || true
  mkdir -p "$OUT/$name"
  (cd "$scratch" && mutmut results --all true > "$OUT/$name/results.txt" 2>&1) || true
  grep -E '^\s*\S+: ' "$OUT/$name/results.txt" | sed 's/^ *//' > "$OUT/$name/status.txt" || true
  total=$(wc -l < "$OUT/$name/status.txt")
  checked=$(grep -vc ': not checked$' "$OUT/$name/status.txt" || true)
  killed=$(grep -Ec ': killed$' "$OUT/$name/status.txt" || true)
  timeouts=$(grep -Ec ': timeout$' "$OUT/$name/status.txt" || true)
  if [ "$checked" -eq 0 ]; then
    echo "$target: mutmut checked no mutant; the end of $OUT/$name.run.log:" >&2
    tr '\r' '\n' < "$OUT/$name.run.log" | grep -v '^\s*$' | tail -20 >&2
  fi
  grep -Ev ': (killed|timeout|not checked)$' "$OUT/$name/status.txt" > "$OUT/$name/survivors.txt" || true
  # the diff of every survivor from one process (`mutmut show` per mutant costs a start-up each: minutes)
  (cd "$scratch" && python - "$OUT/$name/survivors.txt" > "$OUT/$name/survivors.diff" 2>&1 <<'PY'
import sys
from mutmut.mutation.diff_apply import find_mutant, get_diff_for_mutant
for line in open(sys.argv[1]):
    name, status = line.rstrip("\n").rsplit(": ", 1)
    print(f"## {name}: {status}")
    try:
        print(get_diff_for_mutant(name, path=find_mutant(name).path))
    except Exception as e:  # noqa: BLE001 - one unreadable mutant must not hide the others
        print(f"(no diff: {type(e).__name__}: {e})")
PY
  ) || true
  elapsed=$(( $(date +%s) - start ))
  printf '%s: %s killed / %s mutants (%s checked; %s timed out), %s survive, %s s (%s)\n' "$target" "$killed" \
    "$total" "$checked" "$timeouts" "$(wc -l < "$OUT/$name/survivors.txt")" "$elapsed" "$(date -u +%FT%TZ)" \
    | tee -a "$OUT/summary.txt"
  if [ "${KEEP_SCRATCH:-0}" = 1 ]; then echo "kept $scratch"; else rm -rf "$scratch"; fi
done
