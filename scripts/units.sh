#!/usr/bin/env bash
# Runs `ansible-test units` on this collection as a collection reviewer runs it: from a copy laid out as
# ansible_collections/cmdop/fleet, in ansible-test's own virtualenv (--venv --requirements: tests/unit/requirements.txt),
# with ansible-test's pytest configuration (not pytest.ini). scripts/sanity.sh does the copying (see there).
#
#   scripts/units.sh [extra ansible-test args, e.g. tests/unit/plugins/inventory/]
#   VENV=.venvs/ansible-core-2.16 scripts/units.sh    with another ansible-core
set -euo pipefail
exec "$(dirname "$0")/sanity.sh" --units "$@"
