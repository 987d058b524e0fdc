#!/usr/bin/env bash
# The demo: from a fresh clone, set everything up, start the bundled CMDOP
# emulator, and run demo/site.yml against localhost twice (the first run
# changes the fleet file, the second reports ok), with the diff; then let the
# server change (a fleet renamed, the user removed from one) and sync again.
# Nothing outside build/demo is written: the demo user's home is build/demo/home.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd -P)

section() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

section "Setting up (scripts/bootstrap.sh --demo: the newest ansible-core and requirements.txt)"
scripts/bootstrap.sh --demo
PY="$root/.venv/bin/python"
export PATH="$root/.venv/bin:$PATH"
export ANSIBLE_COLLECTIONS_PATH
ANSIBLE_COLLECTIONS_PATH=$(scripts/collection-layout.sh)
export ANSIBLE_HOST_KEY_CHECKING=False ANSIBLE_RETRY_FILES_ENABLED=0 ANSIBLE_FORCE_COLOR=${ANSIBLE_FORCE_COLOR:-0}
export ANSIBLE_PYTHON_INTERPRETER=auto_silent

work="$root/build/demo"
rm -rf "$work"
mkdir -p "$work/home/.cmdop"
chmod 700 "$work/home/.cmdop"

section "Starting the CMDOP emulator"
"$PY" tests/emulator/cmdop_emulator.py --seed tests/emulator/seed-demo.json --port 0 >"$work/emulator.out" 2>"$work/emulator.log" &
emulator_pid=$!
trap 'kill "$emulator_pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  grep -q "listening on" "$work/emulator.out" 2>/dev/null && break
  kill -0 "$emulator_pid" 2>/dev/null || { cat "$work/emulator.log" >&2; exit 1; }
  sleep 0.1
done
url=$(grep -o 'http://[0-9.:]*' "$work/emulator.out" | head -n1)
[ -n "$url" ] || { echo "demo: the emulator did not start" >&2; cat "$work/emulator.log" >&2; exit 1; }
echo "emulator at $url"

# What `cmdop login` would have left on the host: a token file (the emulator
# mints one for the demo user, alice) and a fleet file with a fleet of alice's
# own that only has an API key, and the active pointer on it.
"$PY" demo/prepare.py "$url" "$work/home/.cmdop"

run() {
  ansible-playbook -i demo/inventory.yml demo/site.yml --diff \
    -e "fleet_sync_api_url=$url" \
    -e "fleet_sync_path=$work/home/.cmdop/ssh_workspaces.json" \
    -e "fleet_sync_token_file=$work/home/.cmdop/token_prod.json" \
    -e "fleet_sync_install_requirements=false" | tee "$work/last-run.txt"
}
changed_count() { grep -Eo 'changed=[0-9]+' "$work/last-run.txt" | head -n1 | cut -d= -f2; }

section "First run: the fleets are added (the diff shows API keys redacted)"
run
[ "$(changed_count)" -gt 0 ] || { echo "demo: the first run should have changed the file" >&2; exit 1; }
checksum=$(sha256sum "$work/home/.cmdop/ssh_workspaces.json")

section "Second run: nothing to do, so ok and changed=0"
run
[ "$(changed_count)" -eq 0 ] || { echo "demo: the second run should report changed=0" >&2; exit 1; }
[ "$checksum" = "$(sha256sum "$work/home/.cmdop/ssh_workspaces.json")" ] || { echo "demo: the file changed on the second run" >&2; exit 1; }
echo "the fleet file is byte-for-byte the same"

section "On the server: Team A is renamed, alice leaves Staging; sync again"
"$PY" demo/prepare.py "$url" "$work/home/.cmdop" --server-changes
run

section "The fleet file now (API keys redacted)"
"$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); [e.update(api_key="********") for e in d["workspaces"] if e.get("api_key")]; print(json.dumps(d, indent=2))' \
  "$work/home/.cmdop/ssh_workspaces.json"
section "The fleets as an Ansible inventory: the fleet_inventory role writes the source, cmdop.fleet.cmdop reads it"
ansible-playbook demo/write-inventory.yml \
  -e "fleet_inventory_file=$work/fleets.cmdop.yml" \
  -e "fleet_inventory_path=$work/home/.cmdop/ssh_workspaces.json" \
  -e "fleet_inventory_token_file=$work/home/.cmdop/token_prod.json" \
  -e "fleet_inventory_api_url=$url"
cat "$work/fleets.cmdop.yml"
ansible-inventory -i "$work/fleets.cmdop.yml" --graph
section "Demo done"
