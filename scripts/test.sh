#!/usr/bin/env bash
# Everything `make test` does (the ansible-core versions are scripts/matrix.sh's):
#   1. scripts/bootstrap.sh: Debian packages, a venv per ansible-core, the target interpreters
#   2. then these steps, side by side (at most TEST_JOBS, default 2, at once, the longest first; each pytest run on
#      TEST_WORKERS pytest-xdist workers, each worker with its own SSH target users, see tests/e2e/harness.py):
#      - pytest tests/e2e with every ansible-core, and tests/unit with the older ones (the reliability suite's slow
#        files with the newest core only); the tests marked core_independent (tests/conftest.py: checked not to use
#        ansible) with the newest core only
#      - ansible-test units (scripts/units.sh): tests/unit as a collection reviewer runs it, newest core
#      - ansible-test sanity (scripts/sanity.sh) with the oldest and with the newest ansible-core
#      - lint (scripts/lint.sh), the benchmarks at CI size
#      - scripts/mutations.py (each guarantee broken on purpose must fail its named test)
#      - pytest of the module e2e tests with each target interpreter of tests/e2e/target-requirements/ (the oldest
#        supported libraries), newest core
#   3. docs/reliability.md checked against this run (scripts/reliability_table.py)
# A failed step does not stop the others. The exit status is non-zero if any step failed; the last line printed
# sums up every pytest run as "N passed, N failed" (a step that is not pytest and fails counts as one failure).
# Each step's output is in build/test-logs/<step>.log; a failed step's end is printed when it ends.
#
#   scripts/test.sh [pytest args]   extra arguments go to every pytest run (e.g. -k ping)
#   TEST_CORES="2.19" scripts/test.sh   only these cores (a quicker local run; make test runs all)
#   TEST_JOBS=1 TEST_WORKERS=1 scripts/test.sh   one step at a time, one test at a time (as before issue 15)
#
# To add a step: `step "<name>" <command...>` (or `pytest_step` for a pytest run) in the list below; a step
# that needs another's output goes after `run_steps`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd -P)
cd "$root"
# shellcheck source=scripts/matrix.sh
. scripts/matrix.sh
read -r -a cores <<<"${TEST_CORES:-${CORES[*]}}"
jobs_max=${TEST_JOBS:-2}
workers=${TEST_WORKERS:-2}
logs="$root/build/test-logs"
rm -rf "$logs"
mkdir -p "$logs"
export CMDOP_E2E_SLOTS=${CMDOP_E2E_SLOTS:-32}  # target slots (harness.py): enough for every worker of every step

passed=0
failed=0
skipped=0
summary=()
section() {
  printf '\n==================== %s ====================\n' "$*"
}
slug() { echo "$1" | tr -c 'A-Za-z0-9.\n' '-' | cut -c1-120; }
clock() { printf '%d:%02d' $(($1 / 60)) $(($1 % 60)); }

# The steps to run side by side, in the order they start: names and commands (NUL-separated words).
step_names=()
step_cmds=()

# step NAME COMMAND...: a step; ok when the command exits 0.
step() {
  local name=$1
  shift
  step_names+=("$name")
  step_cmds+=("$(printf '%s\0' plain "$@" | base64 -w0)")
}

# pytest_step NAME PYTHON [ENV=VALUE...] -- PYTEST-ARGS...: a pytest run whose counts go into the total.
# Only exit status 0 is a success (1 failures, 2 interrupted, 3 internal error, 4 usage, 5 nothing collected).
pytest_step() {
  local name=$1
  shift
  step_names+=("$name")
  step_cmds+=("$(printf '%s\0' pytest "$@" | base64 -w0)")
}

# counted_step NAME [ENV=VALUE...] -- COMMAND...: a command that runs pytest (e.g. ansible-test units); its counts
# (pytest's summary line in its output) go into the total.
counted_step() {
  local name=$1
  shift
  step_names+=("$name")
  step_cmds+=("$(printf '%s\0' counted "$@" | base64 -w0)")
}

# run_one INDEX: runs step INDEX (in the background), writing its log and, at the end, its result line:
# "<exit status> <seconds> <passed> <failed+errors> <skipped> <pytest's last line>".
run_one() {
  local index=$1 name=${step_names[$1]} start=$SECONDS rc=0 log result
  local -a words
  mapfile -d '' -t words < <(base64 -d <<<"${step_cmds[$index]}")
  log="$logs/$(slug "$name").log"
  result="$logs/.$(slug "$name").result"
  if [ "${words[0]}" = plain ]; then
    "${words[@]:1}" >"$log" 2>&1 </dev/null || rc=$?
    echo "$rc $((SECONDS - start)) 0 0 0" >"$result"
    return
  fi
  local env=() i=1 cmd
  if [ "${words[0]}" = pytest ]; then i=2; fi
  while [ "${words[$i]}" != "--" ]; do env+=("${words[$i]}"); i=$((i + 1)); done
  if [ "${words[0]}" = pytest ]; then
    cmd=("${words[1]}" -m pytest "${words[@]:$((i + 1))}" "${extra_args[@]}")
  else
    cmd=("${words[@]:$((i + 1))}")
  fi
  env "${env[@]}" "${cmd[@]}" >"$log" 2>&1 </dev/null || rc=$?
  # pytest's summary lines ("N passed, N failed in Xs"; ansible-test units runs pytest once per test context): summed
  local counts p f e s
  counts=$(grep -E '^=* ?[0-9]+ (passed|failed|errors?|skipped)\b.* in [0-9.]+s' "$log" | tr -d '=' | sed 's/^ *//; s/ *$//' || true)
  sum() { { grep -Eo "[0-9]+ $1" <<<"$counts" || true; } | awk '{n += $1} END {print n + 0}'; }
  p=$(sum passed) f=$(sum failed) e=$(sum 'errors?') s=$(sum skipped)
  counts=$(tr '\n' ';' <<<"$counts" | sed 's/;$//; s/;/; /g')
  local bad=$((${f:-0} + ${e:-0}))
  if [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then bad=1; fi  # no test failed, yet pytest did not pass
  echo "$rc $((SECONDS - start)) ${p:-0} $bad ${s:-0} $counts" >"$result"
}

# finish INDEX: takes in the result of a step that ended, prints its line (and the end of its log if it failed).
finish() {
  local index=$1 name=${step_names[$1]} rc secs p bad s counts log
  log="$logs/$(slug "$name").log"
  read -r rc secs p bad s counts <"$logs/.$(slug "$name").result" || { rc=255 secs=0 p=0 bad=1 s=0 counts="(no result)"; }
  passed=$((passed + p))
  skipped=$((skipped + s))
  local line at
  at="started $(clock "${step_started[$index]}")"
  if [ "$rc" -eq 0 ]; then
    line="ok      $(printf '%5ss' "$secs")  $name${counts:+: $p passed}  ($at)"
  else
    failed=$((failed + (bad > 0 ? bad : 1)))
    line="FAILED  $(printf '%5ss' "$secs")  $name (exit status $rc)${counts:+: $counts}  ($at)"
  fi
  summary+=("$line")
  echo "[$(clock $((SECONDS - started)))] $line"
  if [ "$rc" -ne 0 ]; then
    echo "----- the end of build/test-logs/$(basename "$log") -----"
    tail -n 60 "$log"
    echo "-----"
  fi
}

# run_steps: runs every step listed so far, at most jobs_max at once, in the order listed; returns when all ended.
declare -A running=()
step_started=()
run_steps() {
  local next=0 total=${#step_names[@]} pid
  section "$total steps, at most $jobs_max at once, $workers pytest workers each (logs in build/test-logs)"
  while [ "$next" -lt "$total" ] || [ ${#running[@]} -gt 0 ]; do
    while [ "$next" -lt "$total" ] && [ ${#running[@]} -lt "$jobs_max" ]; do
      step_started[next]=$((SECONDS - started))
      echo "[$(clock $((SECONDS - started)))] start   ${step_names[$next]}"
      run_one "$next" &
      running[$!]=$next
      next=$((next + 1))
    done
    wait -n -p pid "${!running[@]}" || true
    finish "${running[$pid]}"
    unset "running[$pid]"
  done
  step_names=()
  step_cmds=()
}

extra_args=("$@")
started=$SECONDS

section "bootstrap: scripts/bootstrap.sh"
start=$SECONDS
if scripts/bootstrap.sh; then
  summary+=("ok      $(printf '%5ss' $((SECONDS - start)))  bootstrap: scripts/bootstrap.sh")
else
  summary+=("FAILED  $(printf '%5ss' $((SECONDS - start)))  bootstrap: scripts/bootstrap.sh")
  failed=$((failed + 1))
fi
scripts/collection-layout.sh >/dev/null

has_core() { case " ${cores[*]} " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
xdist=(-n "$workers")
[ "$workers" -gt 1 ] || xdist=(-p no:xdist)

# The reliability suite (tests/e2e/reliability, docs/reliability.md) runs whole with the newest core; its slow files
# (server faults, hostile files, file system, concurrency, secrets: each a real run per case) are left out for the
# older cores, which still run its API-values-are-data cases (templating differs by core) and everything else.
reliability="$root/build/reliability"
rm -rf "$reliability"
newest_only=()
for file in tests/e2e/reliability/test_*.py; do
  [ "$file" = tests/e2e/reliability/test_api_values.py ] || newest_only+=("--ignore=$file")
done
# The event source runs in its own venv (ansible-rulebook's, scripts/bootstrap-eda.sh), whatever core runs pytest: once.
newest_only+=("--ignore=tests/e2e/test_events.py" "--ignore=tests/e2e/test_events_source.py")

# The longest first: the newest core's pytest run, then the sanity runs, the other cores, and the rest.
if has_core "$NEWEST_CORE"; then
  pytest_step "pytest tests/e2e, ansible-core $NEWEST_CORE" "$root/$(core_venv "$NEWEST_CORE")/bin/python" \
    CMDOP_RELIABILITY_RESULTS="$reliability/results.json" -- "${xdist[@]}" --durations=10 tests/e2e
fi
for core in "$NEWEST_CORE" "$OLDEST_CORE"; do
  has_core "$core" || continue
  step "ansible-test sanity, ansible-core $core" env VENV="$root/$(core_venv "$core")" scripts/sanity.sh
  [ "$OLDEST_CORE" != "$NEWEST_CORE" ] || break
done
# Each guarantee broken on purpose must fail its named test (checked in docs/reliability.md below).
if [ ${#extra_args[@]} -eq 0 ] && has_core "$NEWEST_CORE"; then
  step "mutations: scripts/mutations.py (each guarantee broken on purpose fails its test)" \
    "$root/.venv/bin/python" scripts/mutations.py "$reliability/mutations.json" --jobs "$workers"
fi
for core in "${cores[@]}"; do
  [ "$core" != "$NEWEST_CORE" ] || continue
  pytest_step "pytest tests/unit tests/e2e (not core_independent; reliability: API values only), ansible-core $core" \
    "$root/$(core_venv "$core")/bin/python" -- "${xdist[@]}" --durations=10 -m "not core_independent" tests/unit tests/e2e "${newest_only[@]}"
done
if has_core "$NEWEST_CORE"; then
  # The modules with the oldest libraries on the targets (their controller side does not change with them).
  for requirements in tests/e2e/target-requirements/*.txt; do
    libs=$(basename "$requirements" .txt)
    pytest_step "pytest module e2e tests, targets with $libs libraries" "$root/$(core_venv "$NEWEST_CORE")/bin/python" \
      CMDOP_E2E_TARGET_LIBS="$libs" -- "${xdist[@]}" --durations=10 tests/e2e/test_target_libraries.py tests/e2e/test_sync.py tests/e2e/test_tls.py
  done
  # tests/unit as a collection reviewer runs it (with the newest core: the older ones run it in their pytest run)
  counted_step "ansible-test units (scripts/units.sh), ansible-core $NEWEST_CORE" \
    VENV="$root/$(core_venv "$NEWEST_CORE")" -- scripts/units.sh --num-workers "$workers"
  step "lint: scripts/lint.sh (ansible-lint, antsibull-docs, antsibull-changelog)" scripts/lint.sh
  step "bench at CI size (make bench's code at small sizes, no time asserted)" "$root/.venv/bin/python" tests/benchmarks/bench.py --ci
fi
run_steps

# docs/reliability.md must be what this run gives (the newest core's cases and the mutations).
if [ ${#extra_args[@]} -eq 0 ] && [ -f "$reliability/results.json" ] && [ -f "$reliability/mutations.json" ]; then
  step "docs/reliability.md matches this run (scripts/reliability_table.py --check)" \
    "$root/.venv/bin/python" scripts/reliability_table.py "$reliability/results.json" "$reliability/mutations.json" --core "$NEWEST_CORE" \
    --check docs/reliability.md
  run_steps
else
  echo "(docs/reliability.md not checked: this run was filtered or did not run ansible-core $NEWEST_CORE)"
fi

section "summary ($((SECONDS - started))s; logs in build/test-logs)"
printf '%s\n' "${summary[@]}"
slowest=$(cat "$logs"/*.log 2>/dev/null | grep -E '^[0-9.]+s (call|setup|teardown) ' | sort -rn | head -n 10 || true)
if [ -n "$slowest" ]; then
  echo "slowest 10 (of every pytest run's 10 slowest):"
  echo "$slowest"
fi
line="$passed passed, $failed failed"
[ "$skipped" -eq 0 ] || line="$line, $skipped skipped"
echo "$line in $((SECONDS - started))s"
[ "$failed" -eq 0 ]
