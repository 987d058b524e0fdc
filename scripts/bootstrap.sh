#!/usr/bin/env bash
# Sets up everything the demo and the tests need on a fresh Debian machine:
#  - Debian packages: openssh-server (real SSH targets for the tests) and the
#    distribution's python3-requests / -requests-oauthlib / -jsonschema, which
#    is what a real target host gives the modules; shellcheck, without which
#    `ansible-test sanity` silently skips its shellcheck test; openssl, for the
#    certificate of the TLS tests;
#  - one virtualenv per ansible-core of the matrix (scripts/matrix.sh): .venv
#    for the newest, .venvs/ansible-core-X.Y for the others, each with
#    requirements-dev.txt and that core;
#  - target interpreters with the oldest supported libraries
#    (tests/e2e/target-requirements/*.txt, built in /opt/cmdop-fleet-e2e);
#  - the offline get-pip shim that ansible-test --venv looks for (per core).
# Idempotent: a second run only checks.
#
#   CORES_ONLY="2.19" scripts/bootstrap.sh   only these cores' venvs (and the rest)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
DEB_PACKAGES=(openssh-server openssl python3 python3-requests python3-requests-oauthlib python3-jsonschema python3-venv shellcheck)

missing=()
for pkg in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "bootstrap: need root to install Debian packages: ${missing[*]}" >&2
    exit 1
  fi
  echo "bootstrap: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# shellcheck source=scripts/matrix.sh
. scripts/matrix.sh

# make_venv DIR DESCRIPTION PIP-ARGS...: a virtualenv at DIR with PIP-ARGS
# installed, redone only when what it is built from changed (a stamp in DIR).
make_venv() {
  local dir=$1 what=$2
  shift 2
  local want
  want=$({ printf '%s\n' "$PYTHON" "$@"; cat requirements.txt requirements-dev.txt; } | sha256sum | cut -d' ' -f1)
  if [ -x "$dir/bin/python" ] && [ "$(cat "$dir/.bootstrap.sha256" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  echo "bootstrap: installing $what into $dir"
  [ -x "$dir/bin/python" ] || "$PYTHON" -m venv "$dir"
  "$dir/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
  "$dir/bin/python" -m pip install -q --disable-pip-version-check "$@"
  echo "$want" > "$dir/.bootstrap.sha256"
}

for core in "${CORES[@]}"; do
  case " ${CORES_ONLY:-${CORES[*]}} " in *" $core "*) ;; *) continue ;; esac
  venv=$(core_venv "$core")
  make_venv "$venv" "ansible-core $core and requirements-dev.txt" -r requirements-dev.txt "ansible-core==$core.*"
  # ansible-test --venv bootstraps pip with a get-pip script it would download;
  # it first looks in its cache. This shim does the same job offline.
  scripts/install-get-pip-shim.sh "$venv/bin/python" >/dev/null
  echo "bootstrap: $venv: $("$venv/bin/ansible" --version | sed -n 1p)"
done

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
echo "bootstrap: ready"
