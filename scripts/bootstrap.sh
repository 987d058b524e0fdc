#!/usr/bin/env bash
# Sets up everything the demo and the tests need on a fresh Debian machine:
#  - Debian packages: openssh-server (real SSH targets for the tests) and the
#    distribution's python3-requests / -requests-oauthlib / -jsonschema, which
#    is what a real target host gives the modules; shellcheck, without which
#    `ansible-test sanity` silently skips its shellcheck test; openssl, for the
#    certificate of the TLS tests;
#  - one virtualenv per ansible-core of the matrix (scripts/matrix.sh): .venv
#    for the newest, .venvs/ansible-core-X.Y for the others, each with
#    requirements-dev.txt and that core; .venv also with the lint tools
#    (scripts/requirements-lint.txt); built side by side;
#  - target interpreters with the oldest supported libraries
#    (tests/e2e/target-requirements/*.txt, built in /opt/cmdop-fleet-e2e);
#  - the offline get-pip shim that ansible-test --venv looks for (per core);
#  - ansible-rulebook's venv and a JDK 17, for the event source's tests (scripts/bootstrap-eda.sh), beside the
#    core venvs.
# Idempotent: a second run only checks.
#
#   scripts/bootstrap.sh                   everything make test needs
#   scripts/bootstrap.sh --demo            only what make demo needs: .venv with the newest core and
#                                          requirements.txt (no test, lint or packaging tools, no other core)
#   CORES_ONLY="2.19" scripts/bootstrap.sh   only these cores' venvs (and the rest)
#
# To add a piece: a line below (a script of its own for anything long), run for make test, or for both.
set -euo pipefail
cd "$(dirname "$0")/.."

demo=false
[ "${1:-}" != "--demo" ] || demo=true

PYTHON=${PYTHON:-python3}
if $demo; then
  DEB_PACKAGES=(python3 python3-venv)
else
  DEB_PACKAGES=(openssh-server openssl python3 python3-requests python3-requests-oauthlib python3-jsonschema python3-venv shellcheck)
fi

scripts/debian-packages.sh bootstrap "${DEB_PACKAGES[@]}"

# shellcheck source=scripts/matrix.sh
. scripts/matrix.sh

# stamp PIP-ARGS...: what a venv is built from (the args and the requirement files they name).
stamp() {
  { printf '%s\n' "$PYTHON" "$@"; cat requirements.txt requirements-dev.txt scripts/requirements-lint.txt; } | sha256sum | cut -d' ' -f1
}

# make_venv DIR DESCRIPTION ACCEPTED-STAMP -- PIP-ARGS...: a virtualenv at DIR with PIP-ARGS installed, redone only
# when what it is built from changed (a stamp in DIR). A venv stamped ACCEPTED-STAMP (one built for more) is kept too.
make_venv() {
  local dir=$1 what=$2 accepted=$3
  shift 4
  local want
  want=$(stamp "$@")
  if [ -x "$dir/bin/python" ]; then
    case "$(cat "$dir/.bootstrap.sha256" 2>/dev/null)" in "$want" | "$accepted") return 0 ;; esac
  fi
  echo "bootstrap: installing $what into $dir"
  [ -x "$dir/bin/python" ] || "$PYTHON" -m venv "$dir"
  "$dir/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
  "$dir/bin/python" -m pip install -q --disable-pip-version-check "$@"
  echo "$want" > "$dir/.bootstrap.sha256"
}

newest_full=(-r requirements-dev.txt -r scripts/requirements-lint.txt "ansible-core==$NEWEST_CORE.*")
if $demo; then
  # make demo: the newest core and the collection's requirements; a venv that make test built is kept as it is.
  make_venv .venv "ansible-core $NEWEST_CORE and requirements.txt (make demo)" "$(stamp "${newest_full[@]}")" -- \
    -r requirements.txt "ansible-core==$NEWEST_CORE.*"
  echo "bootstrap: ready (demo)"
  exit 0
fi

# The venvs of the cores and ansible-rulebook's, side by side (each logs to build/bootstrap/, shown when it fails).
mkdir -p build/bootstrap
pids=()
names=()
logs=()
for core in "${CORES[@]}"; do
  case " ${CORES_ONLY:-${CORES[*]}} " in *" $core "*) ;; *) continue ;; esac
  venv=$(core_venv "$core")
  if [ "$core" = "$NEWEST_CORE" ]; then
    args=("${newest_full[@]}") what="ansible-core $core, requirements-dev.txt and the lint tools"
  else
    args=(-r requirements-dev.txt "ansible-core==$core.*") what="ansible-core $core and requirements-dev.txt"
  fi
  (
    make_venv "$venv" "$what" none -- "${args[@]}"
    # ansible-test --venv bootstraps pip with a get-pip script it would download;
    # it first looks in its cache. This shim does the same job offline.
    scripts/install-get-pip-shim.sh "$venv/bin/python" >/dev/null
    echo "bootstrap: $venv: $("$venv/bin/ansible" --version | sed -n 1p)"
  ) >"build/bootstrap/$core.log" 2>&1 &
  pids+=($!)
  names+=("ansible-core $core")
  logs+=("build/bootstrap/$core.log")
done
# The event source's engine (ansible-rulebook in .venvs/rulebook, a JDK 17) for tests/e2e/test_events*.py, meanwhile.
scripts/bootstrap-eda.sh >build/bootstrap/rulebook.log 2>&1 &
pids+=($!)
names+=("ansible-rulebook (scripts/bootstrap-eda.sh)")
logs+=(build/bootstrap/rulebook.log)

# Target interpreters: machine-wide (the target users must be able to run
# them), shared by every checkout on this machine, so built under a lock.
mkdir -p "$TARGET_PYTHONS_DIR"
exec 9>"$TARGET_PYTHONS_DIR/.lock"
flock 9
for requirements in tests/e2e/target-requirements/*.txt; do
  dir=$(target_python_dir "$requirements")
  if [ ! -f "$dir/.bootstrap.done" ] || ! grep -qx "home = $(dirname "$TARGET_BASE_PYTHON")" "$dir/pyvenv.cfg"; then
    echo "bootstrap: building the target interpreter $dir"
    rm -rf "$dir"
    "$TARGET_BASE_PYTHON" -m venv "$dir"
    "$dir/bin/python" -m pip install -q --disable-pip-version-check -r "$requirements"
    chmod -R a+rX "$dir"
    touch "$dir/.bootstrap.done"
  fi
done
exec 9>&-

failed=0
for i in "${!pids[@]}"; do
  if wait "${pids[$i]}"; then
    cat "${logs[$i]}"
  else
    echo "bootstrap: the venv of ${names[$i]} failed:" >&2
    cat "${logs[$i]}" >&2
    failed=1
  fi
done
[ "$failed" -eq 0 ] || exit 1
echo "bootstrap: ready"
