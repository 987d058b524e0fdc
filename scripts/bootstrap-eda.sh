#!/usr/bin/env bash
# Sets up what the Event-Driven Ansible source (extensions/eda) needs to be tested with the real engine:
#  - a JDK 17 (Debian's openjdk-17-jre-headless) for ansible-rulebook's Drools engine (drools_jpy), installed with
#    apt only when there is no java 17 yet;
#  - a virtualenv of its own, .venvs/rulebook: ansible-rulebook (with drools_jpy) from PyPI, the ansible-core its
#    run_playbook actions start, and the collection's controller libraries (requirements.txt), so its pins never
#    meet the core venvs' ones.
# Idempotent: redone only when what the venv is built from changed (a stamp in the venv). tests/e2e/test_events*.py
# find the venv at .venvs/rulebook and fail when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venvs/rulebook
RULEBOOK_PACKAGES=("ansible-rulebook==1.3.2" "ansible-core>=2.16,<2.20")

java_major() {
  command -v java >/dev/null 2>&1 || return 0
  java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n 1
}

packages=(python3-venv)
[ "$(java_major)" = "17" ] || packages+=(openjdk-17-jre-headless)
scripts/debian-packages.sh bootstrap-eda "${packages[@]}"

want=$({ printf '%s\n' "$PYTHON" "${RULEBOOK_PACKAGES[@]}"; cat requirements.txt; } | sha256sum | cut -d' ' -f1)
if [ -x "$VENV/bin/ansible-rulebook" ] && [ "$(cat "$VENV/.bootstrap.sha256" 2>/dev/null)" = "$want" ]; then
  echo "bootstrap-eda: $VENV is ready"
  exit 0
fi
echo "bootstrap-eda: installing ansible-rulebook into $VENV"
mkdir -p "$(dirname "$VENV")"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "${RULEBOOK_PACKAGES[@]}" -r requirements.txt
echo "$want" > "$VENV/.bootstrap.sha256"
echo "bootstrap-eda: $VENV: $("$VENV/bin/ansible-rulebook" --version | head -n 1)"
