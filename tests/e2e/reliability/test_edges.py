"""The edges an outside test found (issue 13), each through the real CLIs: the fleet_inventory role's options merged in
depth, local names that keep their letters, fleet ids compared without case, numeric options checked where they are
read, and user info in ``api_url``.
"""

from __future__ import annotations

import json
import typing as t
from pathlib import Path

import pytest
import yaml

from cmdop_helpers import write_token_file

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
    return write_token_file(tmp_path / "token_prod.json", TOKEN, REFRESH, ALICE)


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


# ---- local names keep their letters; fleet ids are compared without case -------------------------------------------

PARIS, LYON, ZURI, KOMANDA, OLD = ("ed9e0000-0000-4000-8000-0000000000%s" % suffix for suffix in ("a1", "a2", "b2", "c3", "d4"))
SERVER_FLEETS = [
    {"id": PARIS, "name": "Équipe Paris", "slug": ""},
    {"id": LYON, "name": "Équipe Lyon", "slug": ""},
    {"id": ZURI, "name": "Züri Ops", "slug": "züri-ops"},
    {"id": KOMANDA, "name": "Команда", "slug": ""},
    {"id": OLD, "name": "Old Team", "slug": "old-team"},
]
NAMES_SEED = {
    "users": [{"id": ALICE, "email": "alice@example.com"}],
    "fleets": [dict(fleet, members=[ALICE], api_keys=[]) for fleet in SERVER_FLEETS],
    "machines": [{"id": "m-%s" % fleet["id"][-2:], "workspace": fleet["id"], "name": "box-%s" % fleet["id"][-2:], "local_ips": []}
                 for fleet in SERVER_FLEETS],
    "tokens": [{"access_token": TOKEN, "refresh_token": REFRESH, "user": ALICE, "expires_in": 36000}],
}


@pytest.mark.parametrize("emulator_seed", [NAMES_SEED])
@pytest.mark.case("Local names and fleet ids", "a sync adding fleets named Équipe Lyon (no slug), Züri Ops (slug züri-ops) and "
                  "Команда, beside an entry quipe-paris an older version made for Équipe Paris and a hand-edited upper-case "
                  "remote_id; a second sync given the fleets with upper-case ids (fleets:); the inventory over the file",
                  "new names keep their letters (equipe-lyon, zuri-ops) and a name without Latin letters is fleet- and 8 "
                  "characters of its id; no entry is renamed, deactivated or added twice; ids stay as written; the entry "
                  "with the upper-case id holds its machine in the inventory")
def test_local_names_keep_their_letters_and_fleet_ids_match_without_case(emulator, run_playbook, run_inventory, tmp_path, token_file):
    fleet_file = tmp_path / "ssh_workspaces.json"
    old_paris = {"name": "quipe-paris", "api_key": "", "server": "", "remote_id": PARIS, "remote_name": "Équipe Paris"}
    hand_edited = {"name": "old-name", "api_key": "", "server": "", "remote_id": OLD.upper(), "remote_name": "Old Team"}
    fleet_file.write_text(json.dumps({"active": "", "workspaces": [old_paris, hand_edited]}, indent=2), encoding="utf-8")
    fleet_file.chmod(0o600)
    sync = {"api_url": emulator.url, "path": str(fleet_file), "token_file": str(token_file)}
    upper = [dict(fleet, id=fleet["id"].upper()) for fleet in SERVER_FLEETS]
    result = run_playbook([{"hosts": "localhost", "connection": "local", "gather_facts": False, "tasks": [
        {"name": "sync", "cmdop.fleet.sync": sync},
        {"name": "again", "cmdop.fleet.sync": dict(sync, fleets=upper)},
    ]}], None)
    assert result.rc == 0, result.describe()
    document = json.loads(fleet_file.read_text(encoding="utf-8"))
    komanda = "fleet-%s" % KOMANDA[:8]
    assert [(entry["name"], entry["remote_id"], entry.get("inactive", False)) for entry in document["workspaces"]] == [
        ("quipe-paris", PARIS, False),  # an older version's name: never renamed
        ("old-name", OLD.upper(), False),  # the server's fleet (lower-case id): kept as written, not deactivated
        ("equipe-lyon", LYON, False), ("zuri-ops", ZURI, False), (komanda, KOMANDA, False),
    ], document
    added = (("equipe-lyon", LYON), ("zuri-ops", ZURI), (komanda, KOMANDA))
    assert result.task("sync", "localhost")["added"] == [{"name": name, "remote_id": fleet} for name, fleet in added]
    again = result.task("again", "localhost")
    assert again["changed"] is False and again["added"] == [] and again["deactivated"] == [], again

    source = tmp_path / "file.cmdop.yml"
    source.write_text(yaml.safe_dump({"plugin": "cmdop.fleet.cmdop", "path": str(fleet_file), "token_file": str(token_file),
                                      "api_url": emulator.url}), encoding="utf-8")
    listed = run_inventory(["-i", str(source), "--list"], env={"ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "true", "CMDOP_TOKEN": None})
    assert listed.rc == 0, listed.describe()
    groups = listed.json()
    assert groups["fleet_old_name"]["hosts"] == ["box-d4"], groups
    assert groups["fleet_equipe_lyon"]["hosts"] == ["box-a2"] and groups["fleet_%s" % komanda.replace("-", "_")]["hosts"] == ["box-c3"], groups


# ---- numbers out of range, and user info in api_url: the collection's own one-line message ----------------------------

PASSWORD = "pw-Edges-9f8e7d6c5b4a"
OUT_OF_RANGE = [
    ({"timeout": 0}, "timeout must be more than 0 and at most 3600, not 0.0"),
    ({"timeout": -5.5}, "timeout must be more than 0 and at most 3600, not -5.5"),
    ({"timeout": float("nan")}, "timeout must be more than 0 and at most 3600, not nan"),
    ({"timeout": 1e12}, "timeout must be more than 0 and at most 3600, not 1000000000000.0"),
    ({"retries": -1}, "retries must be at least 0 and at most 100, not -1"),
    ({"retries": 100000}, "retries must be at least 0 and at most 100, not 100000"),
]
INVENTORY_ONLY = [
    ({"page_size": 0}, "page_size must be at least 1 and at most 1000, not 0"),
    ({"page_size": 10 ** 9}, "page_size must be at least 1 and at most 1000, not 1000000000"),
    ({"max_workers": 0}, "max_workers must be at least 1 and at most 64, not 0"),
    ({"max_workers": 100000}, "max_workers must be at least 1 and at most 64, not 100000"),
]
USER_INFO = "api_url must not hold a user name or password (user:password@ before the host)"


def user_info_url(emulator: t.Any) -> str:
    return emulator.url.replace("://", "://alice:%s@" % PASSWORD)


def one_line(message: str, expected: str) -> None:
    assert expected in message, message
    assert "\n" not in message.strip() and "Traceback" not in message and "MODULE FAILURE" not in message, message


@pytest.mark.case("Numbers and URLs", "cmdop.fleet.fleet_info with timeout 0, -5.5, nan or 1e12, retries -1 or 100000, and an api_url "
                  "with user:password@ (through ansible-playbook)",
                  "each fails with the collection's one-line message naming the option, its bounds and the value (no traceback, "
                  "no library's error); the URL with the password is refused and shown nowhere, not even in the invocation")
def test_the_modules_check_every_number_and_refuse_user_info_in_the_url(emulator, run_playbook, tmp_path, token_file):
    cases = [(dict(options, api_url=emulator.url), "fleet_info: " + message) for options, message in OUT_OF_RANGE]
    cases.append(({"api_url": user_info_url(emulator)}, "fleet_info: " + USER_INFO))
    tasks = [{"name": "case %d" % index, "cmdop.fleet.fleet_info": dict(options, token_file=str(token_file)), "ignore_errors": True}
             for index, (options, _message) in enumerate(cases)]
    result = run_playbook([{"hosts": "localhost", "connection": "local", "gather_facts": False, "tasks": tasks}], None, verbosity=1)
    for index, (_options, message) in enumerate(cases):
        outcome = result.task("case %d" % index, "localhost")
        assert result.status("case %d" % index, "localhost") == "failed", outcome
        one_line(outcome["msg"], message)
        assert outcome["msg"].startswith(message), outcome["msg"]
    assert PASSWORD not in result.stdout + result.stderr + json.dumps(result.task_entries())
    assert not [item for item in emulator.admin("GET", "requests") if item["path"].startswith("/api/")]  # nothing was sent


@pytest.mark.case("Numbers and URLs", "cmdop.fleet.sync (given fleets:) with lock_timeout nan, -1 or 10^9 (through ansible-playbook)",
                  "each fails with the collection's one-line message, the fleet file untouched (nan waited forever on a held lock)")
def test_sync_checks_its_lock_timeout(run_playbook, tmp_path):
    path = tmp_path / "ssh_workspaces.json"
    cases = [(float("nan"), "nan"), (-1, "-1.0"), (10 ** 9, "1000000000.0")]
    tasks = [{"name": "case %d" % index, "ignore_errors": True, "cmdop.fleet.sync": {
        "path": str(path), "lock_timeout": value, "fleets": [{"id": FLEET, "name": "Edges"}]}} for index, (value, _shown) in enumerate(cases)]
    result = run_playbook([{"hosts": "localhost", "connection": "local", "gather_facts": False, "tasks": tasks}], None)
    for index, (_value, shown) in enumerate(cases):
        assert result.status("case %d" % index, "localhost") == "failed"
        assert result.task("case %d" % index, "localhost")["msg"] == "sync: lock_timeout must be at least 0 and at most 86400, not %s" % shown
    assert not path.exists()


@pytest.mark.case("Numbers and URLs", "the inventory with timeout 0, -5.5, nan or 1e12, retries -1 or 100000, page_size 0 or 10^9, "
                  "max_workers 0 or 100000, and an api_url with user:password@ (through ansible-inventory)",
                  "each fails with the collection's one-line message naming the option, its bounds and the value; the URL with the "
                  "password is refused and shown nowhere; no request is sent")
def test_the_inventory_checks_every_number_and_refuses_user_info_in_the_url(emulator, run_inventory, tmp_path, token_file):
    base = {"plugin": "cmdop.fleet.cmdop", "fleets_from": "api", "token_file": str(token_file), "api_url": emulator.url}
    for options, message in OUT_OF_RANGE + INVENTORY_ONLY + [({"api_url": user_info_url(emulator)}, USER_INFO)]:
        source = tmp_path / "numbers.cmdop.yml"
        source.write_text(yaml.safe_dump(dict(base, **options)), encoding="utf-8")
        listed = run_inventory(["-i", str(source), "--list"], env={"ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "true", "CMDOP_TOKEN": None})
        assert listed.rc != 0, listed.describe()
        assert "cmdop: " + message in " ".join(listed.stderr.split()), listed.stderr
        assert "Traceback" not in listed.stderr and PASSWORD not in listed.stdout + listed.stderr, listed.stderr
    assert not [item for item in emulator.admin("GET", "requests") if item["path"].startswith("/api/")]
