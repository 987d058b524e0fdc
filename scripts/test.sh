#!/usr/bin/env bash
# Everything `make test` does (the ansible-core versions are scripts/matrix.sh's):
#   1. scripts/bootstrap.sh: Debian packages, a venv per ansible-core, the target interpreters
#   2. ansible-test sanity (scripts/sanity.sh) with the oldest and with the newest ansible-core
#   3. pytest tests/unit tests/e2e with every ansible-core (the reliability suite's slow files with the newest only)
#   3b. scripts/mutations.py, then docs/reliability.md checked against this run (scripts/reliability_table.py)
#   4. pytest of the module e2e tests with each target interpreter of
#      tests/e2e/target-requirements/ (the oldest supported libraries), newest core
# A failed step does not stop the later ones. The exit status is non-zero if any
# step failed; the last line printed sums up every pytest run as
# "N passed, N failed" (a step that is not pytest and fails counts as one failure).
#
#   scripts/test.sh [pytest args]   extra arguments go to every pytest run (e.g. -k ping)
#   TEST_CORES="2.19" scripts/test.sh   only these cores (a quicker local run; make test runs all)
#
# To add a step: `step "<name>" <command...>` (or `pytest_step` for a pytest run) below.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd -P)
cd "$root"
# shellcheck source=scripts/matrix.sh
. scripts/matrix.sh
read -r -a cores <<<"${TEST_CORES:-${CORES[*]}}"
logs="$root/build/test-logs"
rm -rf "$logs"
mkdir -p "$logs"

passed=0
failed=0
skipped=0
summary=()
section() {
  printf '\n==================== %s ====================\n' "$*"
}

# step NAME COMMAND...: run it, record ok/FAILED and its time.
step() {
  local name=$1 start=$SECONDS rc=0
  shift
  section "$name"
  "$@" || rc=$?
  if [ "$rc" -eq 0 ]; then
    summary+=("ok      $(printf '%5ss' $((SECONDS - start)))  $name")
  else
    summary+=("FAILED  $(printf '%5ss' $((SECONDS - start)))  $name (exit status $rc)")
    failed=$((failed + 1))
  fi
  return 0
}

# pytest_step NAME PYTHON [ENV=VALUE...] -- PYTEST-ARGS...: a pytest run whose counts go into the total.
# Only exit status 0 is a success (1 failures, 2 interrupted, 3 internal error, 4 usage, 5 nothing collected).
pytest_step() {
  local name=$1 python=$2 start=$SECONDS rc=0 log counts
  shift 2
  local env=()
  while [ "$1" != "--" ]; do env+=("$1"); shift; done
  shift
  log="$logs/$(echo "$name" | tr -c 'A-Za-z0-9.\n' '-').log"
  section "$name"
  env "${env[@]}" "$python" -m pytest "$@" "${extra_args[@]}" 2>&1 | tee "$log" || rc=$?
  counts=$(tail -n 1 "$log")
  local p f e s
  p=$(grep -Eo '[0-9]+ passed' <<<"$counts" | cut -d' ' -f1 || true)
  f=$(grep -Eo '[0-9]+ failed' <<<"$counts" | cut -d' ' -f1 || true)
  e=$(grep -Eo '[0-9]+ errors?' <<<"$counts" | cut -d' ' -f1 || true)
  s=$(grep -Eo '[0-9]+ skipped' <<<"$counts" | cut -d' ' -f1 || true)
  passed=$((passed + ${p:-0}))
  skipped=$((skipped + ${s:-0}))
  local bad=$((${f:-0} + ${e:-0}))
  if [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then bad=1; fi  # no test failed, yet pytest did not pass
  failed=$((failed + bad))
  if [ "$rc" -eq 0 ]; then
    summary+=("ok      $(printf '%5ss' $((SECONDS - start)))  $name: ${p:-0} passed")
  else
    summary+=("FAILED  $(printf '%5ss' $((SECONDS - start)))  $name (exit status $rc): $counts")
  fi
}

extra_args=("$@")
started=$SECONDS

step "bootstrap: scripts/bootstrap.sh" scripts/bootstrap.sh

for core in "$OLDEST_CORE" "$NEWEST_CORE"; do
  case " ${cores[*]} " in *" $core "*) ;; *) continue ;; esac
  step "ansible-test sanity, ansible-core $core" env VENV="$root/$(core_venv "$core")" scripts/sanity.sh
  [ "$OLDEST_CORE" != "$NEWEST_CORE" ] || break
done

step "lint: scripts/lint.sh (ansible-lint, antsibull-docs, antsibull-changelog)" scripts/lint.sh
step "bench at CI size (make bench's code at small sizes, no time asserted)" "$root/.venv/bin/python" tests/benchmarks/bench.py --ci

# The reliability suite (tests/e2e/reliability, docs/reliability.md) runs whole with the newest core; its slow files
# (server faults, hostile files, file system, concurrency, secrets: each a real run per case) are left out for the
# older cores, which still run its API-values-are-data cases (templating differs by core) and everything else.
reliability="$root/build/reliability"
rm -rf "$reliability"
newest_only=()
for file in tests/e2e/reliability/test_*.py; do
  [ "$file" = tests/e2e/reliability/test_api_values.py ] || newest_only+=("--ignore=$file")
done
for core in "${cores[@]}"; do
  if [ "$core" = "$NEWEST_CORE" ]; then
    pytest_step "pytest tests/unit tests/e2e, ansible-core $core" "$root/$(core_venv "$core")/bin/python" \
      CMDOP_RELIABILITY_RESULTS="$reliability/results.json" -- tests/unit tests/e2e
  else
    pytest_step "pytest tests/unit tests/e2e (reliability: API values only), ansible-core $core" "$root/$(core_venv "$core")/bin/python" \
      -- tests/unit tests/e2e "${newest_only[@]}"
  fi
done

# Each guarantee broken on purpose must fail its named test; then docs/reliability.md must be what this run gives.
if [ ${#extra_args[@]} -eq 0 ] && [ -f "$reliability/results.json" ]; then
  step "mutations: scripts/mutations.py (each guarantee broken on purpose fails its test)" \
    "$root/.venv/bin/python" scripts/mutations.py "$reliability/mutations.json"
  step "docs/reliability.md matches this run (scripts/reliability_table.py --check)" \
    "$root/.venv/bin/python" scripts/reliability_table.py "$reliability/results.json" "$reliability/mutations.json" --core "$NEWEST_CORE" \
    --check docs/reliability.md
else
  echo "(docs/reliability.md not checked: this run was filtered or did not run ansible-core $NEWEST_CORE)"
fi

# The modules with the oldest libraries on the targets (their controller side does not change with them).
for requirements in tests/e2e/target-requirements/*.txt; do
  libs=$(basename "$requirements" .txt)
  pytest_step "pytest module e2e tests, targets with $libs libraries" "$root/$(core_venv "$NEWEST_CORE")/bin/python" \
    CMDOP_E2E_TARGET_LIBS="$libs" -- tests/e2e/test_target_libraries.py tests/e2e/test_sync.py tests/e2e/test_tls.py
done

section "summary ($((SECONDS - started))s; logs in build/test-logs)"
printf '%s\n' "${summary[@]}"
line="$passed passed, $failed failed"
[ "$skipped" -eq 0 ] || line="$line, $skipped skipped"
echo "$line in $((SECONDS - started))s"
[ "$failed" -eq 0 ]
