"""The roles end to end: fleet_sync on real SSH targets is covered in test_sync.py; here fleet_inventory
writes an inventory source that cmdop.fleet.cmdop then reads against the emulator."""

from __future__ import annotations

import json
import time
from pathlib import Path

import yaml

ALICE = "u-alice"


def test_fleet_inventory_role_writes_a_source_the_plugin_reads(emulator, run_playbook, run_inventory, tmp_path):
    token = emulator.admin("POST", "tokens", {"user": ALICE, "expires_in": 3600})
    token["expires_at"] = time.time() + 3600
    token_file = tmp_path / "token_prod.json"
    token_file.write_text(json.dumps(token), encoding="utf-8")
    fleet_file = tmp_path / "ssh_workspaces.json"
    sync = [{"hosts": "localhost", "connection": "local", "gather_facts": False,
             "tasks": [{"name": "sync", "cmdop.fleet.sync": {"api_url": emulator.url, "path": str(fleet_file), "token_file": str(token_file)}}]}]
    assert run_playbook(sync, None).rc == 0

    source = tmp_path / "inventory" / "fleets.cmdop.yml"
    role = [{"hosts": "localhost", "connection": "local", "gather_facts": False, "roles": [{"role": "cmdop.fleet.fleet_inventory"}],
             "vars": {"fleet_inventory_file": str(source), "fleet_inventory_api_url": emulator.url, "fleet_inventory_path": str(fleet_file),
                      "fleet_inventory_token_file": str(token_file), "fleet_inventory_extra_options": {"hostnames": ["hostname", "id"]}}}]
    written = run_playbook(role, None)
    assert written.rc == 0, written.describe()
    config = yaml.safe_load(source.read_text(encoding="utf-8"))
    assert config["plugin"] == "cmdop.fleet.cmdop" and config["hostnames"] == ["hostname", "id"]
    assert token["access_token"] not in source.read_text(encoding="utf-8")
    again = run_playbook(role, None)
    assert again.stats["localhost"]["changed"] == 0

    listed = run_inventory(["-i", str(source), "--list"], env={"ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "true"})
    assert listed.rc == 0, listed.stderr
    groups = listed.json()
    assert {"fleet_team_a", "fleet_lab", "fleet_staging"} <= set(groups)
    assert all("." in host for host in groups["fleet_team_a"]["hosts"])  # named by hostname


def test_wrong_file_name_is_refused(run_playbook, tmp_path):
    role = [{"hosts": "localhost", "connection": "local", "gather_facts": False, "roles": [{"role": "cmdop.fleet.fleet_inventory"}],
             "vars": {"fleet_inventory_file": str(tmp_path / "fleets.yml")}}]
    result = run_playbook(role, None)
    assert result.rc != 0
    assert "must end in cmdop.yml or cmdop.yaml" in result.stdout
    assert not Path(tmp_path / "fleets.yml").exists()
