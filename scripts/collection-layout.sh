#!/usr/bin/env bash
# Makes this checkout reachable as an Ansible collection and prints the
# collections root to use (for ANSIBLE_COLLECTIONS_PATH or for ansible-test).
#
#   build/collections/ansible_collections/cmdop/fleet -> <repo root>  (symlink)
#
# Why a symlink inside the repo: build/ is git-ignored (.gitignore) and listed in
# galaxy.yml's build_ignore, so ansible-test (which lists files with
# `git ls-files --cached --others --exclude-standard`), ansible-galaxy and pytest
# (default norecursedirs contains "build") never walk into it, so the loop
# <repo>/build/collections/ansible_collections/cmdop/fleet/build/... is never followed.
#
# ansible-test takes its content root from os.getcwd(), which resolves symlinks
# (it would see /path/to/repo, not .../ansible_collections/cmdop/fleet), so
# scripts/sanity.sh sets ANSIBLE_TEST_CONTENT_ROOT to the symlinked path as well
# as cd-ing into it.
#
# Idempotent; prints the absolute path of build/collections on stdout.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd -P)
collections="$root/build/collections"
ns_dir="$collections/ansible_collections/cmdop"
link="$ns_dir/fleet"
mkdir -p "$ns_dir"
if [ -L "$link" ]; then
  [ "$(readlink "$link")" = "$root" ] || ln -sfn "$root" "$link"
elif [ -e "$link" ]; then
  echo "collection-layout: $link exists and is not a symlink; remove it" >&2
  exit 1
else
  # another process (a pytest-xdist worker, a side-by-side run) may make it at the same moment
  ln -s "$root" "$link" 2>/dev/null || [ "$(readlink "$link")" = "$root" ]
fi
echo "$collections"
