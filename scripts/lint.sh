#!/usr/bin/env bash
# The linters a reviewer of collections runs, with no skip list and no ignore file:
#   1. ansible-lint --profile production (strict: a warning fails too)
#   2. antsibull-docs lint-collection-docs --plugin-docs (the docs as docs.ansible.com would build them)
#   3. antsibull-changelog: the fragments and changelogs/changelog.yaml are valid, and CHANGELOG.md is exactly
#      what `antsibull-changelog generate` writes from changelog.yaml (never edited by hand)
# Run after scripts/bootstrap.sh (make test does both). Exits non-zero on the first finding.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd -P)
cd "$root"
VENV=${VENV:-$root/.venv}
export PATH="$VENV/bin:$PATH"

fail() { echo "lint: $*" >&2; exit 1; }

# No skip list, no warn list, no inline suppressions: a finding is fixed, not hidden.
for config in .ansible-lint .ansible-lint.yml .ansible-lint.yaml .config/ansible-lint.yml .config/ansible-lint.yaml .ansible-lint-ignore .config/ansible-lint-ignore.txt; do
  [ ! -e "$config" ] || fail "$config exists; this collection lints with ansible-lint's defaults and no skip list"
done
if git ls-files -z -- '*.yml' '*.yaml' '*.j2' | xargs -0 -r grep -n '#[[:space:]]*noqa'; then
  fail "the lines above silence ansible-lint with noqa"
fi

# ansible-lint and antsibull-docs look the collection up by name: run them from the collection layout,
# with a HOME of their own so that no other copy of cmdop.fleet (~/.ansible/collections) is found first.
ANSIBLE_COLLECTIONS_PATH=$(scripts/collection-layout.sh)
export ANSIBLE_COLLECTIONS_PATH
lint_home=$(mktemp -d "${TMPDIR:-/tmp}/cmdop-lint-home.XXXXXX")
trap 'rm -rf "$lint_home"' EXIT
layout="$ANSIBLE_COLLECTIONS_PATH/ansible_collections/cmdop/fleet"

echo "lint: ansible-lint --profile production"
(cd "$layout" && HOME="$lint_home" ANSIBLE_HOME="$lint_home/.ansible" \
  ansible-lint --profile production --strict --offline --nocolor)

echo "lint: antsibull-docs lint-collection-docs --plugin-docs"
(cd "$layout" && HOME="$lint_home" antsibull-docs lint-collection-docs --plugin-docs --validate-collection-refs all .)

echo "lint: antsibull-changelog"
antsibull-changelog lint
antsibull-changelog lint-changelog-yaml changelogs/changelog.yaml
antsibull-changelog generate --output "$lint_home/CHANGELOG.md" --output-format md
if ! diff -u CHANGELOG.md "$lint_home/CHANGELOG.md"; then
  fail "CHANGELOG.md is not what changelogs/changelog.yaml gives: run antsibull-changelog generate (or release), do not edit it by hand"
fi
echo "lint: passed"
