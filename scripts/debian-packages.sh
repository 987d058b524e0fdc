#!/usr/bin/env bash
# Installs those of the Debian packages named that are not installed yet (apt-get, as root); the bootstrap scripts'.
#
#   scripts/debian-packages.sh WHO PACKAGE...   WHO names the caller in messages (e.g. bootstrap)
set -euo pipefail
who=$1
shift
missing=()
for pkg in "$@"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -gt 0 ] || exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "$who: need root to install Debian packages: ${missing[*]}" >&2
  exit 1
fi
echo "$who: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
