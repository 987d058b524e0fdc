# shellcheck shell=bash disable=SC2034  # (sourced: the variables are used by the scripts that source it)
# The test matrix, sourced by scripts/bootstrap.sh and scripts/test.sh (one place).
#
# ansible-core versions the collection is tested with, oldest first: every
# minor that meta/runtime.yml's requires_ansible (>=2.16.0) admits. Each has
# its own virtualenv with requirements-dev.txt; the newest keeps the historic
# .venv (what `make demo`, `make bench` and the README's commands use).
CORES=(2.16 2.17 2.18 2.19)
OLDEST_CORE=${CORES[0]}
NEWEST_CORE=${CORES[${#CORES[@]}-1]}

# core_venv 2.17 -> .venvs/ansible-core-2.17 (relative to the repo root)
core_venv() {
  if [ "$1" = "$NEWEST_CORE" ]; then echo .venv; else echo ".venvs/ansible-core-$1"; fi
}

# Target interpreters with the oldest libraries the README names, one per file
# in tests/e2e/target-requirements/. The e2e targets are other Unix users, who
# cannot read a venv in a root-only checkout, so these live machine-wide (like
# the target users) in TARGET_PYTHONS_DIR, named <file stem>-<first 12 hex of
# the file's sha256> (tests/e2e/harness.py computes the same name).
TARGET_PYTHONS_DIR=/opt/cmdop-fleet-e2e
# What they are made from: Debian's Python, which a target user can run (a
# python3 earlier on root's PATH, e.g. pyenv's under /root, may not be).
TARGET_BASE_PYTHON=/usr/bin/python3
target_python_dir() {
  local file=$1
  echo "$TARGET_PYTHONS_DIR/$(basename "$file" .txt)-$(sha256sum "$file" | cut -c1-12)"
}
