#!/usr/bin/env bash
# Sets up everything the demo and the tests need on a fresh Debian machine:
#  - Debian packages: openssh-server (real SSH targets for the tests) and the
#    distribution's python3-requests / -requests-oauthlib / -jsonschema, which
#    is what a real target host gives the modules; shellcheck, without which
#    `ansible-test sanity` silently skips its shellcheck test; openssl, for the
#    certificate of the TLS tests;
#  - .venv with ansible-core and the test tools (requirements-dev.txt);
#  - the offline get-pip shim that ansible-test --venv looks for.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
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

if [ ! -x "$VENV/bin/python" ]; then
  echo "bootstrap: creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.requirements-dev.sha256"
want=$(cat requirements.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "bootstrap: installing Python packages into $VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -r requirements-dev.txt
  echo "$want" > "$stamp"
fi

# ansible-test --venv bootstraps pip with a get-pip script it would download;
# it first looks in its cache. This shim does the same job offline.
scripts/install-get-pip-shim.sh "$VENV/bin/python"
echo "bootstrap: ready ($("$VENV/bin/ansible" --version | head -n1))"
