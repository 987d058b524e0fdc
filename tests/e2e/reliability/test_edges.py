"""The edges an outside test found (issue 13), each through the real CLIs: the fleet_inventory role's options merged in
depth, local names that keep their letters, fleet ids compared without case, numeric options checked where they are
read, and user info in ``api_url``.
"""

from __future__ import annotations

import json
import time
import typing as t
from pathlib import Path

import pytest
import yaml

ALICE = "u-alice"
FLEET = "ed9e0000-0000-4000-8000-0000000000e1"
TOKEN = "cmdop_edges_suite_access_Hn4Bv8Cx2Zl6Kj1Mq9Wp3Ty7"
REFRESH = "clitr_edges_suite_refresh_Rf5Gt1Yh8Uj3Ik6Ol9Pz2Xc4"


def machine(number: int, name: str, os_name: str, online: bool) -> dict:
    return {"id": "m-%02d" % number, "workspace": FLEET, "name": name, "os": os_name, "is_online": online,
            "status": "online" if online else "offline", "local_ips": []}


SEED = {
    "users": [{"id": ALICE, "email": "alice@example.com"}],
    "fleets": [{"id": FLEET, "name": "Edges", "slug": "edges", "members": [ALICE], "api_keys": []}],
    "machines": [machine(1, "web-on", "linux", True), machine(2, "web-off", "linux", False), machine(3, "mac-on", "macos", True)],
    "tokens": [{"access_token": TOKEN, "refresh_token": REFRESH, "user": ALICE, "expires_in": 36000}],
}


@pytest.fixture
def emulator_seed() -> dict:
    return SEED


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token_prod.json"
    token = {"access_token": TOKEN, "refresh_token": REFRESH, "token_type": "Bearer", "user_id": ALICE, "expires_at": time.time() + 36000}
    path.write_text(json.dumps(token), encoding="utf-8")
    path.chmod(0o600)
    return path


def role_play(source: Path, emulator: t.Any, token_file: Path, **variables: t.Any) -> list:
    base = {"fleet_inventory_file": str(source), "fleet_inventory_fleets_from": "api", "fleet_inventory_api_url": emulator.url,
            "fleet_inventory_token_file": str(token_file)}
    return [{"hosts": "localhost", "connection": "local", "gather_facts": False, "roles": [{"role": "cmdop.fleet.fleet_inventory"}],
             "vars": dict(base, **variables)}]


@pytest.mark.case("The fleet_inventory role", "fleet_inventory_online_only true with fleet_inventory_extra_options "
                  "{filters: {include: [cmdop_os == 'linux']}}; then extra_options filters.online_only false",
                  "the written source keeps online_only beside include (merged in depth), so the offline machine stays out; "
                  "where both set a key, extra_options wins")
def test_the_roles_extra_options_are_merged_in_depth_with_its_filters(emulator, run_playbook, run_inventory, tmp_path, token_file):
    source = tmp_path / "inventory" / "edges.cmdop.yml"
    include = {"filters": {"include": ["cmdop_os == 'linux'"]}}
    written = run_playbook(role_play(source, emulator, token_file, fleet_inventory_online_only=True, fleet_inventory_extra_options=include), None)
    assert written.rc == 0, written.describe()
    config = yaml.safe_load(source.read_text(encoding="utf-8"))
    assert config["filters"] == {"online_only": True, "include": ["cmdop_os == 'linux'"]}, config
    listed = run_inventory(["-i", str(source), "--list"], env={"ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "true"})
    assert listed.rc == 0, listed.describe()
    assert sorted(listed.json()["_meta"]["hostvars"]) == ["web-on"]  # not web-off (offline), not mac-on (macos)
    assert TOKEN not in source.read_text(encoding="utf-8")

    both = {"filters": {"online_only": False, "include": ["cmdop_os == 'linux'"]}, "connect_with": "local_ip"}
    written = run_playbook(role_play(source, emulator, token_file, fleet_inventory_online_only=True, fleet_inventory_extra_options=both,
                                     fleet_inventory_connect_with="public_ip"), None)
    assert written.rc == 0, written.describe()
    config = yaml.safe_load(source.read_text(encoding="utf-8"))
    assert config["filters"] == {"online_only": False, "include": ["cmdop_os == 'linux'"]} and config["connect_with"] == "local_ip", config
