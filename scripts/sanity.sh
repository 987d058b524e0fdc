#!/usr/bin/env bash
# Runs `ansible-test sanity` on this collection, with no ignore file
# (tests/sanity/ignore-*.txt must not exist).
#
#   scripts/sanity.sh [extra ansible-test args, e.g. --test pep8]
#   scripts/sanity.sh --units [extra ansible-test args]   ansible-test units instead, the same way
#                                                        (scripts/units.sh; tests/unit/requirements.txt)
#
# How and why:
# - ansible-test needs its content root at .../ansible_collections/cmdop/fleet.
#   A symlink (scripts/collection-layout.sh) is not enough for --venv: the
#   delegated ansible-test run inside the venv takes its content root from
#   os.getcwd(), which resolves symlinks. So this script copies the files
#   ansible-test would lint in the checkout -- `git ls-files --cached --others
#   --exclude-standard`, i.e. tracked AND untracked-but-not-ignored files, the
#   same list ansible-test's git source provider uses -- into a real directory
#   ${TMPDIR:-/tmp}/cmdop-sanity-<ansible-core version>-<N>/ansible_collections/cmdop/fleet,
#   and runs ansible-test there with ANSIBLE_TEST_CONTENT_ROOT set. Modes and
#   symlinks are preserved. That folder is kept between runs (its files are
#   replaced each run; its tests/output is kept), so that ansible-test finds the
#   virtualenvs it made there last time (the delegated controller's, under
#   tests/output/.tmp) instead of building them again; N is the first of a few
#   such folders that no other run holds (a lock each), so runs at the same time
#   (other checkouts, other people) each have their own.
#   Paths ignored by .gitignore (.venv/, build/, tests/output/) are not linted.
# - --venv --python X.Y --requirements: the controller runs in a fresh
#   virtualenv, each sanity test in its own cached virtualenv under
#   ~/.ansible/test/venv, requirements from the package registry. The get-pip
#   download ansible-test would do is replaced by the offline shim
#   scripts/bootstrap.sh installs in ~/.ansible/test/cache.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd -P)
cd "$root"
VENV=${VENV:-$root/.venv}
SANITY_PYTHON=${SANITY_PYTHON:-$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')}

command=sanity
if [ "${1:-}" = "--units" ]; then
  command=units
  shift
fi

shopt -s nullglob
ignores=(tests/sanity/ignore-*.txt)
if [ "$command" = sanity ] && [ ${#ignores[@]} -gt 0 ]; then
  echo "sanity: ignore files are not allowed: ${ignores[*]}" >&2
  exit 1
fi

# A copy of the checkout that only this run uses, in a folder kept for the next run of the same ansible-core (see
# above). A short path outside the checkout: ansible-test creates virtualenvs under <content root>/tests/output, and
# entry-point shebangs must stay under Linux's 127-character limit.
core_version=$("$VENV/bin/python" -c 'import ansible.release; print(ansible.release.__version__)')
for n in 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15; do
  run_dir="${TMPDIR:-/tmp}/cmdop-sanity-$core_version-$n"
  exec 8>"$run_dir.lock"
  if flock -n 8; then break; fi
  exec 8>&-
  [ "$n" -lt 15 ] || { echo "sanity: every folder ${TMPDIR:-/tmp}/cmdop-sanity-$core_version-* is in use" >&2; exit 1; }
done
content_root="$run_dir/ansible_collections/cmdop/fleet"
mkdir -p "$content_root/tests"
# the last run's files go, its tests/output stays
find "$content_root" -mindepth 1 -maxdepth 1 ! -name tests -exec rm -rf {} +
find "$content_root/tests" -mindepth 1 -maxdepth 1 ! -name output -exec rm -rf {} +

list_files() {
  if git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git -C "$root" ls-files -z --cached --others --exclude-standard
  else
    find . \( -path ./.git -o -path ./.venv -o -path ./build -o -path ./tests/output \
              -o -name __pycache__ -o -name .pytest_cache \) -prune -o \( -type f -o -type l \) -printf '%P\0'
  fi
}
# skip files deleted from the work tree but still in the index
list_files | while IFS= read -r -d '' f; do
  if [ -e "$f" ] || [ -L "$f" ]; then printf '%s\0' "$f"; fi
done | tar --null -T - -cf - | tar -xpf - -C "$content_root"
echo "sanity: $(find "$content_root" -path "$content_root/tests/output" -prune -o -type f -print | wc -l) files copied to $content_root"

export ANSIBLE_TEST_CONTENT_ROOT="$content_root"
export PATH="$VENV/bin:$PATH"
cd "$content_root"
"$VENV/bin/ansible-test" "$command" --venv --python "$SANITY_PYTHON" --requirements --color no "$@"
