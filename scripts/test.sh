#!/usr/bin/env bash
# Everything `make test` does, in order:
#   1. scripts/bootstrap.sh   -- Debian packages, .venv, offline get-pip shim
#   2. scripts/sanity.sh      -- ansible-test sanity on the collection, no ignore file
#   3. pytest tests/unit tests/e2e, in ONE run, so the last line printed is
#      pytest's summary. Its exit status is the script's: any failure, error,
#      or exit code 5 ("no tests collected") fails the build.
# Extra arguments go to pytest (e.g. scripts/test.sh -k ping).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd -P)
cd "$root"

section() {
  printf '\n==================== %s ====================\n' "$*"
}

section "[1/3] bootstrap: scripts/bootstrap.sh"
scripts/bootstrap.sh

section "[2/3] ansible-test sanity: scripts/sanity.sh"
start=$SECONDS
scripts/sanity.sh
echo "sanity: passed in $((SECONDS - start))s"
section "lint: scripts/lint.sh (ansible-lint, antsibull-docs, antsibull-changelog)"; scripts/lint.sh
"$root/.venv/bin/python" tests/benchmarks/bench.py --ci  # CI-size benchmark: make bench's code at small sizes, no time asserted

section "[3/3] pytest: tests/unit tests/e2e"
set +e
"$root/.venv/bin/python" -m pytest tests/unit tests/e2e "$@"
rc=$?
set -e
# pytest: 0 all passed, 1 tests failed, 2 interrupted, 3 internal error,
# 4 usage error, 5 no tests collected -- only 0 is a success.
exit "$rc"
