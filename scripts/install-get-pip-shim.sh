#!/usr/bin/env bash
# ansible-test's --venv mode bootstraps pip in each new virtualenv by running a
# get-pip script it downloads, unless ~/.ansible/test/cache/get_pip_<ver>.py
# exists. This writes a stand-in there that uses ensurepip and then pip itself
# (the packages come from the package registry as usual).
set -euo pipefail
python=${1:-python3}
ver=$("$python" - <<'PY'
import importlib.util, os, re
spec = importlib.util.find_spec("ansible_test")
path = os.path.join(os.path.dirname(spec.origin), "_internal", "python_requirements.py")
src = open(path).read()
m = re.search(r"\bpip='([^']+)'", src)
print(m.group(1) if m else "24.2")
PY
)
cache="$HOME/.ansible/test/cache"
mkdir -p "$cache"
shim="$cache/get_pip_${ver//./_}.py"
cat > "$shim" <<'PY'
"""Offline stand-in for get-pip.py, written by cmdop.fleet's scripts/install-get-pip-shim.sh."""
import subprocess
import sys

args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade"])
if args:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--disable-pip-version-check"] + args)
PY
echo "bootstrap: get-pip shim at $shim"
