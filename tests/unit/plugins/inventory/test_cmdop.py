"""Unit tests of the cmdop.fleet.cmdop inventory plugin, loaded through ansible-core's inventory_loader.

The API is the project's emulator, serving real HTTP in a thread: nothing is mocked
but ansible-core's Display (to collect warnings).
"""

from __future__ import annotations

import json
import os
import stat
import time
import typing as t
from pathlib import Path

import pytest

from ansible import constants as C
from ansible_collections.cmdop.fleet.plugins.module_utils._inventory import CONTROLLER_NAMES
from ansible.errors import AnsibleError
from ansible.template import Templar

try:  # ansible-core 2.19+: data tagging; text is a template only when trusted
    from ansible.template import is_trusted_as_template, trust_as_template
except ImportError:  # ansible-core < 2.19: text is a template unless it is AnsibleUnsafe
    from ansible.utils.unsafe_proxy import AnsibleUnsafe

    def is_trusted_as_template(value: t.Any) -> bool:
        return isinstance(value, str) and not isinstance(value, AnsibleUnsafe)

    def trust_as_template(value: str) -> str:
        return value

from ansible_collections.cmdop.fleet.plugins.module_utils._reconcile import reconcile

FA = "0f000000-0000-4000-8000-0000000000a1"
FB = "0f000000-0000-4000-8000-0000000000b2"
FC = "0f000000-0000-4000-8000-0000000000c3"
FD = "0f000000-0000-4000-8000-0000000000d4"
KEY_A = "cmdop_live_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1"
KEY_A2 = "cmdop_live_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa2"
KEY_B = "cmdop_live_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb1"
KEY_C = "cmdop_live_ccccccccccccccccccccccccccccccc1"
KEY_D = "cmdop_live_ddddddddddddddddddddddddddddddd1"
ALICE = "cmdop_access_alice_0123456789abcdefghijklmn"
ALICE_REFRESH = "clitr_refresh_alice_0123456789abcdefghijkl"
ALICE_2 = "cmdop_access_alice_second_0123456789abcdef"
BOB = "cmdop_access_bob_0123456789abcdefghijklmnop"
SECRETS = (KEY_A, KEY_A2, KEY_B, KEY_C, KEY_D, ALICE, ALICE_REFRESH, ALICE_2, BOB)


def machine(fleet: str, number: int, name: t.Optional[str] = None, **fields: t.Any) -> dict:
    """A seed machine whose id sorts by fleet, then number."""
    return dict({"id": "m-%s-%03d" % (fleet[-2:], number), "workspace": fleet, "name": name or "%s-%d" % (fleet[-2:], number)}, **fields)


def make_seed(machines: t.Optional[t.List[dict]] = None) -> dict:
    """Alice in Team A (two API keys), Lab, Staging; Bob alone in his fleet."""
    return {
        "users": [{"id": "u-alice", "email": "alice@example.com"}, {"id": "u-bob", "email": "bob@example.com"}],
        "fleets": [
            {"id": FA, "name": "Team A", "slug": "team-a", "type": "team", "plan": "pro", "members": ["u-alice"], "api_keys": [KEY_A, KEY_A2]},
            {"id": FB, "name": "Lab", "slug": "lab", "type": "team", "plan": "free", "members": ["u-alice"], "api_keys": [KEY_B]},
            {"id": FC, "name": "Staging", "slug": "staging", "members": ["u-alice"], "api_keys": [KEY_C]},
            {"id": FD, "name": "Bob's", "slug": "bobs", "type": "personal", "members": ["u-bob"], "api_keys": [KEY_D]},
        ],
        "machines": machines if machines is not None else [
            machine(FA, 1, "web-1", hostname="web-1.a.example", public_ip="203.0.113.1", local_ips=["10.0.0.1"]),
            machine(FA, 2, "web-2", hostname="web-2.a.example", status="offline", is_online=False),
            machine(FB, 1, "lab-1", hostname="lab-1.b.example"),
            machine(FC, 1, "stg-1"),
            machine(FD, 1, "bob-1"),
        ],
        "tokens": [
            {"access_token": ALICE, "refresh_token": ALICE_REFRESH, "user": "u-alice", "expires_in": 3600},
            {"access_token": ALICE_2, "user": "u-alice", "expires_in": 3600},
            {"access_token": BOB, "user": "u-bob", "expires_in": 3600},
        ],
    }


def entry(name: str, key: str = "", remote_id: str = "", **fields: t.Any) -> dict:
    return dict({"name": name, "api_key": key, "server": "", "remote_id": remote_id, "remote_name": "", "last_synced_at": "2026-11-20T10:00:00Z"},
                **fields)


def groups_of(inventory: t.Any) -> t.Dict[str, t.List[str]]:
    """Group name -> sorted host names, for every group but all and ungrouped."""
    return {name: sorted(host.name for host in group.get_hosts()) for name, group in inventory.groups.items() if name not in ("all", "ungrouped")}


def host_vars(inventory: t.Any, name: str) -> dict:
    return inventory.get_host(name).get_vars()


def paths_requested(emulator: t.Any) -> t.List[t.Tuple[str, str]]:
    return [(entry["path"], entry["query"].get("page", "")) for entry in emulator.requests()]


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


# ---- the plugin as ansible-core sees it ------------------------------------------


def test_loaded_by_inventory_loader_and_accepts_only_cmdop_yml(run: t.Any) -> None:
    assert type(run.plugin).__module__ == "ansible_collections.cmdop.fleet.plugins.inventory.cmdop"
    for name, accepted in (("fleets.cmdop.yml", True), ("x.cmdop.yaml", True), ("cmdop.yml", True), ("fleets.yml", False), ("cmdop.yml.bak", False)):
        path = run.folder / name
        path.write_text("plugin: cmdop.fleet.cmdop\n", encoding="utf-8")
        assert run.plugin.verify_file(str(path)) is accepted, name


def test_through_the_inventory_manager(run: t.Any, start_emulator: t.Any) -> None:
    emulator = start_emulator(make_seed())
    fleets = run.fleet_file([entry("team-a", KEY_A, FA)])
    manager = run.manager(run.config(path=str(fleets), api_url=emulator.url))
    assert sorted(host.name for host in manager.get_hosts("fleet_team_a")) == ["web-1", "web-2"]
    assert sorted(host.name for host in manager.get_hosts("cmdop")) == ["web-1", "web-2"]


# ---- grouping ----------------------------------------------------------------------


def test_file_fleets_become_groups_with_their_data(run: t.Any, start_emulator: t.Any) -> None:
    emulator = start_emulator(make_seed())
    fleets = run.fleet_file([entry("team-a", KEY_A, FA, remote_name="Team A"), entry("lab", "", FB, remote_name="Lab")])
    inventory = run.parse(run.config(path=str(fleets), api_url=emulator.url, token=ALICE))
    assert groups_of(inventory) == {"cmdop": ["lab-1", "web-1", "web-2"], "fleet_team_a": ["web-1", "web-2"], "fleet_lab": ["lab-1"]}
    assert inventory.groups["fleet_team_a"].vars == {
        "cmdop_fleet_id": FA, "cmdop_fleet_name": "team-a", "cmdop_fleet_remote_name": "Team A", "cmdop_fleet_inactive": False,
    }
    web = host_vars(inventory, "web-1")
    assert web["cmdop_id"] == "m-a1-001" and web["cmdop_workspace"] == FA and web["cmdop_status"] == "online"
    assert web["cmdop_public_ip"] == "203.0.113.1" and web["cmdop_local_ips"] == ["10.0.0.1"]
    assert web["cmdop_fleet"] == "team-a" and web["cmdop_fleets"] == ["team-a"]
    assert "ansible_host" not in web  # connect_with: none
    assert host_vars(inventory, "lab-1")["cmdop_fleet"] == "lab"
    assert_no_secret(json.dumps({name: host_vars(inventory, name) for name in inventory.hosts}))
    assert_no_secret(json.dumps({name: group.vars for name, group in inventory.groups.items()}))


def test_fleets_without_a_key_share_one_oauth_listing_and_take_their_machines_by_workspace(run: t.Any, start_emulator: t.Any) -> None:
    emulator = start_emulator(make_seed())
    fleets = run.fleet_file([entry("lab", "", FB), entry("staging", "", FC)])
    inventory = run.parse(run.config(path=str(fleets), api_url=emulator.url, token=ALICE))
    # Alice's token lists Team A's machines too, but no file entry shows Team A.
    assert groups_of(inventory) == {"cmdop": ["lab-1", "stg-1"], "fleet_lab": ["lab-1"], "fleet_staging": ["stg-1"]}
    assert paths_requested(emulator) == [("/api/machines/machines/", "1")]
    assert [entry["credential_kind"] for entry in emulator.requests()] == ["oauth"]


def test_a_machine_in_two_fleets_is_one_host_in_both_groups(run: t.Any, start_emulator: t.Any) -> None:
    emulator = start_emulator(make_seed())
    # Two local handles for Team A, each with its own key: the same machines under two credentials.
    fleets = run.fleet_file([entry("team-a", KEY_A, FA), entry("team-a-ops", KEY_A2, FA), entry("lab", KEY_B, FB)])
    inventory = run.parse(run.config(path=str(fleets), api_url=emulator.url))
    assert groups_of(inventory) == {
        "cmdop": ["lab-1", "web-1", "web-2"], "fleet_team_a": ["web-1", "web-2"], "fleet_team_a_ops": ["web-1", "web-2"], "fleet_lab": ["lab-1"],
    }
    assert host_vars(inventory, "web-1")["cmdop_fleets"] == ["team-a", "team-a-ops"]
    assert len(emulator.requests()) == 3  # one listing per credential


def test_inactive_fleets_are_left_out_unless_asked_for(run: t.Any, start_emulator: t.Any) -> None:
    emulator = start_emulator(make_seed())
    fleets = run.fleet_file([entry("team-a", KEY_A, FA), entry("staging", KEY_C, FC, inactive=True)])
    inventory = run.parse(run.config(path=str(fleets), api_url=emulator.url))
    assert set(groups_of(inventory)) == {"cmdop", "fleet_team_a"}
    assert len(emulator.requests()) == 1  # the inactive fleet's key was not even used
    inventory = run.parse(run.config(path=str(fleets), api_url=emulator.url, include_inactive=True))
    assert groups_of(inventory)["fleet_staging"] == ["stg-1"]
    assert inventory.groups["fleet_staging"].vars["cmdop_fleet_inactive"] is True


def test_only_entries_of_the_mode_count(run: t.Any, start_emulator: t.Any) -> None:
    emulator = start_emulator(make_seed())
    fleets = run.fleet_file([
        entry("team-a", KEY_A, FA),  # prod (server empty)
        entry("lab", KEY_B, FB, server="https://dev.cmdop.com"),  # dev
        entry("staging", KEY_C, FC, server="https://relay.example.net"),  # another server
        entry("bobs", KEY_D, FD, server=emulator.url + "/"),  # the server in use
    ])
    inventory = run.parse(run.config(path=str(fleets), api_url=emulator.url))
    assert set(groups_of(inventory)) == {"cmdop", "fleet_team_a", "fleet_bobs"}
    inventory = run.parse(run.config(path=str(fleets), api_url=emulator.url, mode="dev"))
    assert set(groups_of(inventory)) == {"cmdop", "fleet_lab", "fleet_bobs"}


def test_fleets_from_api_names_groups_like_sync(run: t.Any, start_emulator: t.Any) -> None:
    emulator = start_emulator(make_seed())
    inventory = run.parse(run.config(fleets_from="api", api_url=emulator.url, token=ALICE))
    assert groups_of(inventory) == {
        "cmdop": ["lab-1", "stg-1", "web-1", "web-2"], "fleet_team_a": ["web-1", "web-2"], "fleet_lab": ["lab-1"], "fleet_staging": ["stg-1"],
    }
    assert inventory.groups["fleet_lab"].vars == {
        "cmdop_fleet_id": FB, "cmdop_fleet_name": "lab", "cmdop_fleet_remote_name": "Lab",
        "cmdop_fleet_slug": "lab", "cmdop_fleet_type": "team", "cmdop_fleet_plan": "free",
    }
    assert sorted(path for path, _page in paths_requested(emulator)) == ["/api/machines/machines/", "/api/workspaces/workspaces/"]


def test_fleets_from_api_names_colliding_fleets_exactly_as_sync_does(run: t.Any, start_emulator: t.Any) -> None:
    """Two fleets with one slug: the older keeps it (whatever the ids), the same rule as cmdop.fleet.sync's."""
    seed = make_seed(machines=[machine(FA, 1, "web-1"), machine(FB, 1, "lab-1")])
    seed["fleets"][0].update(slug="dup", created_at="2026-06-01T00:00:00Z")
    seed["fleets"][1].update(slug="dup", created_at="2026-01-01T00:00:00Z")
    emulator = start_emulator(seed)
    inventory = run.parse(run.config(fleets_from="api", api_url=emulator.url, token=ALICE))
    synced = reconcile({"workspaces": []}, emulator.admin("GET", "state")["fleets"][:3], "prod", "2026-11-23T00:00:00Z").document
    by_id = {item["remote_id"]: item["name"] for item in synced["workspaces"]}
    assert by_id[FB] == "dup" and by_id[FA] == "dup-" + FA[:8]
    assert inventory.groups["fleet_dup"].vars["cmdop_fleet_id"] == FB
    assert inventory.groups["fleet_dup_" + FA[:8]].vars["cmdop_fleet_id"] == FA


def test_an_api_key_alone_gives_its_single_fleet(run: t.Any, start_emulator: t.Any, monkeypatch: pytest.MonkeyPatch) -> None:
    emulator = start_emulator(make_seed())
    monkeypatch.setenv("CMDOP_API_KEY", KEY_B)
    monkeypatch.setenv("CMDOP_API_URL", emulator.url)
    inventory = run.parse(run.config(path=str(run.folder / "missing.json")))
    assert groups_of(inventory) == {"cmdop": ["lab-1"], "fleet_lab": ["lab-1"]}
    assert inventory.groups["fleet_lab"].vars["cmdop_fleet_id"] == FB
    inventory = run.parse(run.config(fleets_from="api"))  # no OAuth token at all
    assert groups_of(inventory) == {"cmdop": ["lab-1"], "fleet_lab": ["lab-1"]}


def test_nothing_to_list_with_is_an_error_not_an_empty_inventory(run: t.Any, start_emulator: t.Any, monkeypatch: pytest.MonkeyPatch) -> None:
    emulator = start_emulator(make_seed())
    with pytest.raises(AnsibleError, match="there is no fleet file .*missing.json"):
        run.parse(run.config(path=str(run.folder / "missing.json"), api_url=emulator.url))
    with pytest.raises(AnsibleError, match="fleets_from=api needs an OAuth token"):
        run.parse(run.config(fleets_from="api", api_url=emulator.url))
    assert emulator.requests() == []
    monkeypatch.setenv("CMDOP_API_KEY", "cmdop_live_revoked_0000000000000000000")
    with pytest.raises(AnsibleError, match="cannot list the machines of the api_key's fleet: .*401") as caught:
        run.parse(run.config(path=str(run.folder / "missing.json"), api_url=emulator.url))
    assert "cmdop_live_revoked" not in str(caught.value)


def test_a_file_without_fleets_of_the_mode_warns(run: t.Any, start_emulator: t.Any) -> None:
    emulator = start_emulator(make_seed())
    fleets = run.fleet_file([entry("lab", KEY_B, FB, server="https://dev.cmdop.com")])
    inventory = run.parse(run.config(path=str(fleets), api_url=emulator.url))
    assert groups_of(inventory) == {"cmdop": []}
    assert run.warnings == ["cmdop: there is no fleet to show (no prod fleet in %s)" % fleets]
    assert emulator.requests() == []


# ---- host names -------------------------------------------------------------------


def test_host_names_follow_the_preference_and_skip_unusable_values(run: t.Any, start_emulator: t.Any) -> None:
    emulator = start_emulator(make_seed([
        machine(FA, 1, "Alice's MacBook Pro", hostname="alice-mbp.local"),
        machine(FA, 2, "web 2", hostname="bad host"),
        machine(FA, 3, "db-1", hostname="db-1.a.example"),
    ]))
    fleets = run.fleet_file([entry("team-a", KEY_A, FA)])
    inventory = run.parse(run.config(path=str(fleets), api_url=emulator.url))
    assert sorted(inventory.hosts) == ["alice-mbp.local", "db-1", "m-a1-002"]
    assert run.warnings == []  # no duplicate: skipping unusable values is the rule, not a conflict
    inventory = run.parse(run.config(path=str(fleets), api_url=emulator.url, hostnames=["hostname", "name"]))
    assert sorted(inventory.hosts) == ["alice-mbp.local", "db-1.a.example", "m-a1-002"]


def test_a_duplicate_name_never_replaces_a_host(run: t.Any, start_emulator: t.Any) -> None:
    emulator = start_emulator(make_seed([
        machine(FB, 1, "web", hostname="web.b.example"),  # m-b2-001
        machine(FA, 1, "web", hostname="web.a.example"),  # m-a1-001: the smallest id, keeps "web"
        machine(FA, 2, "web", hostname="db"),  # m-a1-002: its next preference is another machine's preferred name
        machine(FA, 3, "db"),  # m-a1-003: keeps "db"
    ]))
    fleets = run.fleet_file([entry("lab", KEY_B, FB), entry("team-a", KEY_A, FA)])
    inventory = run.parse(run.config(path=str(fleets), api_url=emulator.url))
    names = {host_vars(inventory, name)["cmdop_id"]: name for name in inventory.hosts}
    assert names == {"m-a1-001": "web", "m-a1-003": "db", "m-a1-002": "m-a1-002", "m-b2-001": "web.b.example"}
    assert len(run.warnings) == 1
    assert "2 machine(s) prefer a host name an earlier machine (by id) has" in run.warnings[0]
    assert "m-a1-002" in run.warnings[0] and "m-b2-001" in run.warnings[0]


def test_the_duplicate_rule_does_not_depend_on_the_order_of_the_answers(run: t.Any, start_emulator: t.Any) -> None:
    machines = [machine(FA, number, "same", hostname="h%d" % (number % 3)) for number in range(1, 8)]
    results = []
    for ordered in (machines, list(reversed(machines))):
        emulator = start_emulator(make_seed(ordered))
        fleets = run.fleet_file([entry("team-a", KEY_A, FA)])
        inventory = run.parse(run.config(path=str(fleets), api_url=emulator.url, page_size=2))
        results.append({name: host_vars(inventory, name)["cmdop_id"] for name in inventory.hosts})
    assert results[0] == results[1]
    assert len(results[0]) == 7
    assert results[0]["same"] == "m-a1-001"


# ---- group names -------------------------------------------------------------------


def test_group_names_are_sanitized_the_ansible_core_way_and_never_merged(run: t.Any, start_emulator: t.Any) -> None:
    emulator = start_emulator(make_seed())
    fleets = run.fleet_file([entry("team-a", KEY_A, FA), entry("team a", KEY_A2, FA), entry("Lab.Ü", KEY_B, FB), entry("9lives", KEY_C, FC)])
    inventory = run.parse(run.config(path=str(fleets), api_url=emulator.url))
    assert set(groups_of(inventory)) == {"cmdop", "fleet_team_a", "fleet_team_a_2", "fleet_Lab_Ü", "fleet_9lives"}
    assert inventory.groups["fleet_team_a_2"].vars["cmdop_fleet_name"] == "team a"
    assert run.warnings == ["cmdop: fleets whose group name another fleet already has: 'team a' is fleet_team_a_2 (not fleet_team_a)"]
    # Without a prefix, a fleet cannot take a reserved group's name either.
    fleets = run.fleet_file([entry("all", KEY_A, FA), entry("cmdop", KEY_B, FB), entry("9lives", KEY_C, FC)])
    inventory = run.parse(run.config(path=str(fleets), api_url=emulator.url, group_prefix=""))
    assert set(groups_of(inventory)) == {"cmdop", "all_2", "cmdop_2", "_lives"}
    assert groups_of(inventory)["cmdop"] == ["lab-1", "stg-1", "web-1", "web-2"]


# ---- untrusted values ----------------------------------------------------------------


def test_api_values_are_data_never_templates(run: t.Any, start_emulator: t.Any, tmp_path: Path) -> None:
    canary = tmp_path / "templated"
    evil = "{{ lookup('ansible.builtin.pipe', 'touch %s') }}" % canary
    emulator = start_emulator(make_seed([
        machine(FA, 1, evil, hostname="evil.example", os="{{ 7 * 7 }}", kernel_version="{% raw %}x"),
    ]))
    fleets = run.fleet_file([entry("team-a", KEY_A, FA)])
    config = run.config(
        path=str(fleets), api_url=emulator.url, strict=True,
        compose={"shown": "cmdop_name", "kernel": "cmdop_kernel_version"},
        keyed_groups=[{"key": "cmdop_os", "prefix": "os"}],
        groups={"named": "cmdop_name is string"},
        filters={"include": ["cmdop_name is string"]},
    )
    inventory = run.parse(config)
    variables = host_vars(inventory, "evil.example")
    assert variables["cmdop_name"] == evil and variables["shown"] == evil and variables["kernel"] == "{% raw %}x"
    assert variables["cmdop_os"] == "{{ 7 * 7 }}"
    assert "os____7___7___" in inventory.groups and "named" in inventory.groups
    assert not any(is_trusted_as_template(value) for value in (variables["cmdop_name"], variables["shown"], variables["cmdop_os"]))
    # Templating a play's expression over these variables shows the text; nothing runs.
    assert Templar(loader=None, variables=variables).template(trust_as_template("{{ cmdop_name }} {{ shown }}")) == evil + " " + evil
    assert not canary.exists()


def test_a_secret_option_is_templated_only_when_it_is_a_template(run: t.Any, start_emulator: t.Any, monkeypatch: pytest.MonkeyPatch) -> None:
    emulator = start_emulator(make_seed())
    monkeypatch.setenv("MY_CMDOP_TOKEN", ALICE)
    inventory = run.parse(run.config(fleets_from="api", api_url=emulator.url, token="{{ lookup('ansible.builtin.env', 'MY_CMDOP_TOKEN') }}"))
    assert "fleet_lab" in inventory.groups
    inventory = run.parse(run.config(fleets_from="api", api_url=emulator.url, token=ALICE))
    assert "fleet_lab" in inventory.groups
    monkeypatch.setenv("CMDOP_TOKEN", ALICE)  # the environment, as the cmdop SDK uses it
    inventory = run.parse(run.config(fleets_from="api", api_url=emulator.url))
    assert "fleet_lab" in inventory.groups
    # The fleet file's values are data: an api_key that looks like a template is sent as it is (and refused).
    fleets = run.fleet_file([entry("lab", "{{ lookup('ansible.builtin.env', 'MY_CMDOP_TOKEN') }}", FB)])
    with pytest.raises(AnsibleError, match="fleet 'lab': .*401"):
        run.parse(run.config(path=str(fleets), api_url=emulator.url))


def test_prefixes(run: t.Any, start_emulator: t.Any) -> None:
    emulator = start_emulator(make_seed())
    fleets = run.fleet_file([entry("team-a", KEY_A, FA)])
    inventory = run.parse(run.config(path=str(fleets), api_url=emulator.url, hostvar_prefix="cf_", group_prefix="cmdop-"))
    assert set(groups_of(inventory)) == {"cmdop", "cmdop_team_a"}
    assert inventory.groups["cmdop_team_a"].vars["cf_fleet_id"] == FA
    assert host_vars(inventory, "web-1")["cf_id"] == "m-a1-001" and host_vars(inventory, "web-1")["cf_fleets"] == ["team-a"]
    assert not any(name.startswith("cmdop_") for name in host_vars(inventory, "web-1"))
    with pytest.raises(AnsibleError, match="hostvar_prefix must start a valid variable name"):
        run.parse(run.config(path=str(fleets), api_url=emulator.url, hostvar_prefix="1-"))


def test_constructed_strict(run: t.Any, start_emulator: t.Any) -> None:
    emulator = start_emulator(make_seed())
    fleets = run.fleet_file([entry("team-a", KEY_A, FA)])
    compose = {"ansible_user": "cmdop_username", "broken": "no_such_var.x"}
    inventory = run.parse(run.config(path=str(fleets), api_url=emulator.url, compose=compose, keyed_groups=[{"key": "cmdop_status", "prefix": "status"}]))
    assert host_vars(inventory, "web-1")["ansible_user"] == "root" and "broken" not in host_vars(inventory, "web-1")
    assert groups_of(inventory)["status_online"] == ["web-1"] and groups_of(inventory)["status_offline"] == ["web-2"]
    with pytest.raises(AnsibleError, match="Could not set broken for host"):
        run.parse(run.config(path=str(fleets), api_url=emulator.url, compose=compose, strict=True))


# ---- filters and connect_with ------------------------------------------------------------


def test_filters(run: t.Any, start_emulator: t.Any) -> None:
    emulator = start_emulator(make_seed())
    fleets = run.fleet_file([entry("team-a", KEY_A, FA), entry("lab", KEY_B, FB)])
    inventory = run.parse(run.config(path=str(fleets), api_url=emulator.url, filters={"online_only": True}))
    assert sorted(inventory.hosts) == ["lab-1", "web-1"]
    inventory = run.parse(run.config(path=str(fleets), api_url=emulator.url, filters={"include": ["'team-a' in cmdop_fleets"]}))
    assert sorted(inventory.hosts) == ["web-1", "web-2"]
    inventory = run.parse(run.config(path=str(fleets), api_url=emulator.url, filters={"exclude": ["cmdop_name is match('web-')"]}))
    assert sorted(inventory.hosts) == ["lab-1"]
    # A machine that is filtered out does not take a name, and its fleet's group is still there.
    assert groups_of(inventory)["fleet_team_a"] == []
    with pytest.raises(AnsibleError, match=r"filters.include\[0\] \(nosuchvar == 1\) cannot be evaluated"):
        run.parse(run.config(path=str(fleets), api_url=emulator.url, filters={"include": ["nosuchvar == 1"]}))
    with pytest.raises(AnsibleError, match="filters: unknown key"):
        run.parse(run.config(path=str(fleets), api_url=emulator.url, filters={"online": True}))


@pytest.mark.parametrize("filters, kept", [
    ({"include": ["true"]}, ["lab-1", "web-1", "web-2"]),
    ({"include": ["cmdop_name is string"]}, ["lab-1", "web-1", "web-2"]),
    ({"include": ["false"]}, []),
    ({"include": ["false", "cmdop_name == 'lab-1'"]}, ["lab-1"]),
    ({"exclude": ["true"]}, []),
    ({"exclude": ["false"]}, ["lab-1", "web-1", "web-2"]),
    ({"exclude": ["cmdop_name != 'lab-1'"]}, ["lab-1"]),
    ({"include": ["cmdop_name is match('web-')"], "exclude": ["cmdop_name == 'web-2'"]}, ["web-1"]),
])
def test_filters_keep_what_the_conditions_say(run: t.Any, start_emulator: t.Any, filters: dict, kept: t.List[str]) -> None:
    # On every core: before 2.19 the templated condition comes back as the boolean True, not the text "True".
    emulator = start_emulator(make_seed())
    fleets = run.fleet_file([entry("team-a", KEY_A, FA), entry("lab", KEY_B, FB)])
    inventory = run.parse(run.config(path=str(fleets), api_url=emulator.url, filters=filters))
    assert sorted(inventory.hosts) == kept


@pytest.mark.parametrize("connect_with, expected", [
    ("public_ip", {"web-1": "203.0.113.1"}),
    ("local_ip", {"web-1": "10.0.0.1"}),
    ("hostname", {"web-1": "web-1.a.example", "web-2": "web-2.a.example"}),
    ("none", {}),
])
def test_connect_with(run: t.Any, start_emulator: t.Any, connect_with: str, expected: dict) -> None:
    emulator = start_emulator(make_seed())
    fleets = run.fleet_file([entry("team-a", KEY_A, FA)])
    inventory = run.parse(run.config(path=str(fleets), api_url=emulator.url, connect_with=connect_with))
    assert {name: host_vars(inventory, name)["ansible_host"] for name in inventory.hosts if "ansible_host" in host_vars(inventory, name)} == expected
    if connect_with in ("public_ip", "local_ip"):
        assert run.warnings == ["cmdop: 1 host(s) have no value for connect_with, so no ansible_host: web-2"]


# ---- errors --------------------------------------------------------------------------


def test_a_refused_key_fails_the_inventory_with_the_fleet_name_and_no_secret(run: t.Any, start_emulator: t.Any) -> None:
    emulator = start_emulator(make_seed())
    wrong = "cmdop_live_revoked_0000000000000000000"
    fleets = run.fleet_file([entry("team-a", KEY_A, FA), entry("lab", wrong, FB)])
    with pytest.raises(AnsibleError) as caught:
        run.parse(run.config(path=str(fleets), api_url=emulator.url))
    message = str(caught.value)
    assert "fleet 'lab'" in message and "401" in message and "no inventory was made" in message
    assert "team-a" not in message
    assert wrong not in message
    assert_no_secret(message)


def test_on_error_warn_shows_the_other_fleets(run: t.Any, start_emulator: t.Any) -> None:
    emulator = start_emulator(make_seed())
    fleets = run.fleet_file([entry("team-a", KEY_A, FA), entry("lab", "cmdop_live_revoked_0000000000000000000", FB), entry("nowhere")])
    inventory = run.parse(run.config(path=str(fleets), api_url=emulator.url, on_error="warn"))
    assert set(groups_of(inventory)) == {"cmdop", "fleet_team_a"}
    assert len(run.warnings) == 2
    assert run.warnings[0].startswith("cmdop: fleet 'lab' left out: ") and "401" in run.warnings[0]
    assert run.warnings[1] == "cmdop: fleet 'nowhere' left out: it has neither an api_key nor a remote_id, so nothing can list its machines"
    assert "cmdop_live_revoked_0000000000000000000" not in "".join(run.warnings)


def test_on_error_warn_still_fails_when_no_fleet_could_be_listed(run: t.Any, start_emulator: t.Any) -> None:
    emulator = start_emulator(make_seed())
    fleets = run.fleet_file([entry("lab", "cmdop_live_revoked_0000000000000000000", FB)])
    with pytest.raises(AnsibleError, match="fleet 'lab'"):
        run.parse(run.config(path=str(fleets), api_url=emulator.url, on_error="warn"))


def test_a_server_error_after_retries_fails_the_inventory(run: t.Any, start_emulator: t.Any) -> None:
    emulator = start_emulator(make_seed())
    emulator.admin("POST", "faults", {"path": "/api/machines/", "status": 503, "count": 10})
    fleets = run.fleet_file([entry("team-a", KEY_A, FA)])
    with pytest.raises(AnsibleError, match="fleet 'team-a': .* answered 503.*, and still did after retrying"):
        run.parse(run.config(path=str(fleets), api_url=emulator.url, retries=2))
    assert [entry["status"] for entry in emulator.requests()] == [503, 503, 503]


def test_429_with_retry_after_then_success(run: t.Any, start_emulator: t.Any) -> None:
    emulator = start_emulator(make_seed())
    emulator.admin("POST", "faults", {"path": "/api/machines/", "status": 429, "count": 1, "retry_after": 1})
    fleets = run.fleet_file([entry("team-a", KEY_A, FA)])
    started = time.monotonic()
    inventory = run.parse(run.config(path=str(fleets), api_url=emulator.url))
    assert time.monotonic() - started >= 1.0  # Retry-After was honoured
    assert sorted(inventory.hosts) == ["web-1", "web-2"]
    assert [entry["status"] for entry in emulator.requests()] == [429, 200]


def test_an_expired_token_is_refreshed_and_saved(run: t.Any, start_emulator: t.Any, clean_env: Path) -> None:
    emulator = start_emulator(make_seed())
    emulator.admin("POST", "tokens/expire", {"access_token": ALICE})
    token_file = clean_env / ".cmdop" / "token_prod.json"
    token_file.parent.mkdir()
    token_file.write_text(json.dumps({"access_token": ALICE, "refresh_token": ALICE_REFRESH, "user_id": "u-alice", "expires_at": time.time() - 10}))
    fleets = run.fleet_file([entry("lab", "", FB)])
    inventory = run.parse(run.config(path=str(fleets), api_url=emulator.url))
    assert sorted(inventory.hosts) == ["lab-1"]
    saved = json.loads(token_file.read_text())
    assert saved["access_token"] != ALICE and saved["refresh_token"] != ALICE_REFRESH
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600


# ---- pagination and listings ---------------------------------------------------------------


def test_every_page_is_read_and_each_credential_is_listed_once(run: t.Any, start_emulator: t.Any) -> None:
    machines = [machine(FA, number) for number in range(23)] + [machine(FB, number) for number in range(4)] + [machine(FC, number) for number in range(5)]
    emulator = start_emulator(make_seed(machines))
    fleets = run.fleet_file([
        entry("team-a", KEY_A, FA), entry("team-a-again", KEY_A, FA),  # one key for two entries: one listing
        entry("lab", "", FB), entry("staging", "", FC),  # no key: one OAuth listing for both
    ])
    inventory = run.parse(run.config(path=str(fleets), api_url=emulator.url, token=ALICE, page_size=5, max_workers=3))
    assert len(groups_of(inventory)["fleet_team_a"]) == 23 and groups_of(inventory)["fleet_team_a"] == groups_of(inventory)["fleet_team_a_again"]
    assert len(groups_of(inventory)["fleet_lab"]) == 4 and len(groups_of(inventory)["fleet_staging"]) == 5
    assert len(inventory.hosts) == 32
    requested = sorted((entry["credential_kind"], int(entry["query"]["page"])) for entry in emulator.requests())
    # Team A's key: 23 machines in 5 pages; Alice's token sees all 32 machines: 7 pages.
    assert requested == sorted([("api_key", page) for page in range(1, 6)] + [("oauth", page) for page in range(1, 8)])


def test_listings_of_different_credentials_run_concurrently(run: t.Any, start_emulator: t.Any) -> None:
    """Eight fleets with their own keys, 0.4 s per request: compared with max_workers 1 in the same test, not with a fixed time."""
    keys = ["cmdop_live_parallel_%02d_000000000000000000" % number for number in range(8)]
    seed = make_seed([machine(FA, 1, "web-1")])
    seed["fleets"][0]["api_keys"] = keys
    emulator = start_emulator(seed)
    emulator.admin("POST", "latency", {"seconds": 0.4})
    fleets = run.fleet_file([entry("f%d" % number, key, FA) for number, key in enumerate(keys)])
    elapsed = {}
    for workers in (1, 8):
        started = time.monotonic()
        inventory = run.parse(run.config(path=str(fleets), api_url=emulator.url, max_workers=workers))
        elapsed[workers] = time.monotonic() - started
        assert groups_of(inventory)["fleet_f7"] == ["web-1"]
    assert elapsed[1] >= 8 * 0.4
    assert elapsed[8] < elapsed[1] / 2, elapsed


# ---- the cache -----------------------------------------------------------------------------


def cache_config(run: t.Any, emulator: t.Any, fleets: Path, **options: t.Any) -> Path:
    return run.config(path=str(fleets), api_url=emulator.url, cache=True, cache_plugin="ansible.builtin.jsonfile",
                      cache_connection=str(run.folder / "cache"), **options)


def cache_files(run: t.Any, valid: bool = False) -> t.Dict[str, str]:
    """The cache's payload entries (or, with ``valid``, its entries of digests of the files found valid)."""
    folder = run.folder / "cache"
    paths = [path for path in folder.iterdir() if path.name.endswith("_valid") == valid] if folder.exists() else []
    return {path.name: path.read_text(encoding="utf-8") for path in paths}


def test_a_cache_hit_makes_no_request_and_a_refresh_does(run: t.Any, start_emulator: t.Any) -> None:
    emulator = start_emulator(make_seed())
    fleets = run.fleet_file([entry("team-a", KEY_A, FA), entry("lab", "", FB)])
    config = cache_config(run, emulator, fleets, token=ALICE)
    first = run.parse(config)
    assert len(emulator.requests()) == 2
    emulator.clear_requests()
    second = run.parse(config)
    assert emulator.requests() == []
    assert groups_of(second) == groups_of(first)
    assert {name: host_vars(second, name) for name in second.hosts} == {name: host_vars(first, name) for name in first.hosts}
    run.parse(config, cache=False)  # ansible-inventory --flush-cache, meta: refresh_inventory
    assert len(emulator.requests()) == 2


def test_the_cache_holds_the_api_payload_only_never_a_secret(run: t.Any, start_emulator: t.Any) -> None:
    emulator = start_emulator(make_seed())
    fleets = run.fleet_file([entry("team-a", KEY_A, FA), entry("lab", "", FB)])
    run.parse(cache_config(run, emulator, fleets, token=ALICE))
    files = cache_files(run)
    assert len(files) == 1
    payload = json.loads(next(iter(files.values())))
    payload = json.loads(payload["__payload__"]) if "__payload__" in payload else payload  # ansible-core 2.19's jsonfile wraps it
    assert set(payload) == {"version", "fetched_at", "fleets", "listings"}
    # Team A's key lists its 2 machines; Alice's token lists the 4 of her fleets.
    assert sorted(len(listing) for listing in payload["listings"].values()) == [2, 4]
    assert_no_secret(next(iter(files.values())))
    assert_no_secret(next(iter(files)))
    # The one other entry: one-way digests of the fleet file and the token file, found valid (no content of them).
    digests = [json.loads(text) for text in cache_files(run, valid=True).values()]
    digests = [json.loads(item["__payload__"]) if isinstance(item, dict) else item for item in digests]
    assert len(digests) == 1 and len(digests[0]) == 1 and all(len(item) == 32 and int(item, 16) >= 0 for item in digests[0])


def test_two_accounts_never_share_a_cache_entry(run: t.Any, start_emulator: t.Any, clean_env: Path) -> None:
    emulator = start_emulator(make_seed())
    token_file = clean_env / "token.json"

    def with_token(access_token: str, user_id: str) -> t.Any:
        token_file.write_text(json.dumps({"access_token": access_token, "user_id": user_id, "expires_at": time.time() + 3600}))
        return run.parse(cache_config(run, emulator, fleets, fleets_from="api", token_file=str(token_file)))

    fleets = run.fleet_file([])
    alice = with_token(ALICE, "u-alice")
    bob = with_token(BOB, "u-bob")
    assert set(groups_of(alice)) == {"cmdop", "fleet_team_a", "fleet_lab", "fleet_staging"}
    assert set(groups_of(bob)) == {"cmdop", "fleet_bobs"}
    assert len(cache_files(run)) == 2
    # Alice again with another access token: the same account, a cache hit.
    emulator.clear_requests()
    again = with_token(ALICE_2, "u-alice")
    assert emulator.requests() == [] and groups_of(again) == groups_of(alice)
    assert len(cache_files(run)) == 2


def test_cache_keys_cover_the_api_url_the_keys_and_the_inventory_file(run: t.Any, start_emulator: t.Any) -> None:
    emulator = start_emulator(make_seed())
    other = start_emulator(make_seed())
    fleets = run.fleet_file([entry("team-a", KEY_A, FA)])
    run.parse(cache_config(run, emulator, fleets))
    run.parse(cache_config(run, other, fleets))  # another server
    assert len(other.requests()) == 1
    run.parse(cache_config(run, emulator, run.fleet_file([entry("team-a", KEY_A2, FA)], name="other.json")))  # another key
    run.parse(run.config("second.cmdop.yml", path=str(fleets), api_url=emulator.url, cache=True, cache_plugin="ansible.builtin.jsonfile",
                         cache_connection=str(run.folder / "cache")))  # another inventory file
    assert len(cache_files(run)) == 4
    # A fleet added to the file with a new key is a miss, not a stale inventory without it.
    emulator.clear_requests()
    inventory = run.parse(cache_config(run, emulator, run.fleet_file([entry("team-a", KEY_A, FA), entry("lab", KEY_B, FB)])))
    assert "fleet_lab" in inventory.groups and len(emulator.requests()) == 2


def test_a_failed_listing_is_not_cached(run: t.Any, start_emulator: t.Any) -> None:
    emulator = start_emulator(make_seed())
    fleets = run.fleet_file([entry("team-a", KEY_A, FA), entry("lab", "cmdop_live_revoked_0000000000000000000", FB)])
    run.parse(cache_config(run, emulator, fleets, on_error="warn"))
    assert cache_files(run) == {}


# ---- no secret at any verbosity ------------------------------------------------------------


def test_no_secret_in_any_output_at_high_verbosity(run: t.Any, start_emulator: t.Any, capfd: pytest.CaptureFixture) -> None:
    emulator = start_emulator(make_seed())
    fleets = run.fleet_file([entry("team-a", KEY_A, FA), entry("lab", "", FB), entry("bad", "cmdop_live_revoked_0000000000000000000", FC)])
    display = run.module.display
    verbosity = display.verbosity
    display.verbosity = 6
    try:
        with pytest.raises(AnsibleError) as caught:
            run.parse(run.config(path=str(fleets), api_url=emulator.url, token=ALICE))
        run.parse(run.config(path=str(fleets), api_url=emulator.url, token=ALICE, on_error="warn"))
    finally:
        display.verbosity = verbosity
    out, err = capfd.readouterr()
    for text in (str(caught.value), out, err, "\n".join(run.warnings)):
        assert_no_secret(text)
        assert "cmdop_live_revoked" not in text


def test_the_controller_names_are_ansible_cores() -> None:
    """The names no machine may take as the controller's are the ones this ansible-core's implicit localhost answers to."""
    assert CONTROLLER_NAMES == frozenset(C.LOCALHOST)
