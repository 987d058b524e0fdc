"""API values are data: a machine name, a fleet name or a hostname of ``{{ lookup('pipe', 'id') }}`` (or ``{{ 7*7 }}``,
or ``{% raw %}...{% endraw %}``) that the CMDOP API answers stays that exact string, and no template in it ever runs.

Through the inventory (ansible-inventory --list and --graph, with ``compose`` and ``keyed_groups`` on such fields),
through a play that prints the inventory's host variables (ansible-playbook with the plugin as its source, connection
local), and through a play that prints what ``cmdop.fleet.fleet_info`` returned (over SSH to t1). ``id`` must never have
run: no output holds ``uid=``; ``{{ 7*7 }}`` never became ``49``.

ansible-core 2.19 marks every untrusted string in ansible-inventory's JSON (``{"__ansible_unsafe": ...}``); older cores
mark what the plugin wrapped (every text with a ``{``): either way the value is the literal once the marker is read
(``plain()``), and a value that could be a template must carry the marker.
"""

from __future__ import annotations

import json
import re
import typing as t
from pathlib import Path

import pytest
import yaml

from cmdop_helpers import TOKEN_FILE, controller_home, plain, token_document, write_as

AREA = "API values are data"
ALICE = "u-alice"
PIPE = "{{ lookup('pipe', 'id') }}"
SEVEN = "{{ 7*7 }}"
RAW = "{% raw %}{{ lookup('pipe', 'id') }}{% endraw %}"
FLEET = "5ec0e7a1-0000-4000-8000-0000000da7a1"
FLEET_NAME = "%s and %s" % (PIPE, SEVEN)  # the fleet's name on the server
MACHINE_NAMES = {"m-data-01": PIPE, "m-data-02": SEVEN, "m-data-03": RAW}
HOSTNAMES = {"m-data-01": "%s.example.invalid" % PIPE, "m-data-02": "%s.example.invalid" % SEVEN, "m-data-03": RAW}
TOKEN = "cmdop_data_suite_access_Lk4Jh7Gf2Ds9Ap3Qw8Er5Ty1"
REFRESH = "clitr_data_suite_refresh_Zx4Cv7Bn2Mq9Wl3Ek8Rj5Th1"
SEED = {
    "users": [{"id": ALICE, "email": "alice@example.com"}],
    "fleets": [{"id": FLEET, "name": FLEET_NAME, "slug": "data", "members": [ALICE], "api_keys": []}],
    "machines": [{"id": machine_id, "workspace": FLEET, "name": name, "hostname": HOSTNAMES[machine_id], "local_ips": ["10.8.0.%d" % number]}
                 for number, (machine_id, name) in enumerate(sorted(MACHINE_NAMES.items()), start=1)],
    "tokens": [{"access_token": TOKEN, "refresh_token": REFRESH, "user": ALICE, "expires_in": 36000}],
}
LITERALS = [PIPE, SEVEN, RAW, FLEET_NAME] + list(HOSTNAMES.values())


@pytest.fixture
def emulator_seed() -> dict:
    return SEED


def safe_group(name: str) -> str:
    """A group name as ansible-core sanitizes it (every character but letters, digits and _ becomes _)."""
    return re.sub(r"[^\w]", "_", name)


def never_ran(*texts: str) -> None:
    for text in texts:
        assert "uid=" not in text, text[-3000:]  # id's output: the lookup ran
        assert "Traceback" not in text, text[-3000:]


def controller(tmp_path: Path, emulator: t.Any) -> t.Tuple[Path, dict]:
    """A controller HOME with the token file, and the environment for the inventory."""
    home = controller_home(tmp_path / "home", TOKEN, REFRESH, ALICE)
    env = {"HOME": str(home), "CMDOP_API_URL": emulator.url, "CMDOP_TOKEN": None, "CMDOP_API_KEY": None,
           "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "true"}
    return home, env


def config(tmp_path: Path) -> Path:
    path = tmp_path / "data.cmdop.yml"
    path.write_text(yaml.safe_dump({
        "plugin": "cmdop.fleet.cmdop", "fleets_from": "api", "strict": True,
        "compose": {"shown": "cmdop_name", "shown_hostname": "cmdop_hostname", "shown_fleet": "cmdop_workspace_name"},
        "keyed_groups": [{"key": "cmdop_name", "prefix": "name"}, {"key": "cmdop_workspace_name", "prefix": "remote"}],
    }), encoding="utf-8")
    return path


@pytest.mark.case(AREA, "machine names, a hostname and a fleet name of %s, %s and %s from the API, through ansible-inventory --list and "
                  "--graph with compose and keyed_groups on them" % (PIPE, SEVEN, RAW),
                  "each host variable (and each composed one) is the exact string, marked as data; the keyed groups are the "
                  "sanitized literal; no template ran (no uid=, no 49)")
def test_api_values_stay_text_in_the_inventory(emulator, run_inventory, tmp_path):
    _home, env = controller(tmp_path, emulator)
    source = config(tmp_path)
    listed = run_inventory(["-i", str(source), "--list"], env=env)
    graph = run_inventory(["-i", str(source), "--graph"], env=env)
    assert listed.rc == 0 and graph.rc == 0, (listed.describe(), graph.describe())
    never_ran(listed.stdout, listed.stderr, graph.stdout, graph.stderr)
    unsafe: t.List[t.Any] = []
    document = plain(listed.json(), unsafe)
    hostvars = document["_meta"]["hostvars"]
    by_id = {variables["cmdop_id"]: variables for variables in hostvars.values()}
    assert sorted(by_id) == sorted(MACHINE_NAMES), hostvars
    for machine_id, name in MACHINE_NAMES.items():
        variables = by_id[machine_id]
        assert variables["cmdop_name"] == name and variables["shown"] == name, variables
        assert variables["cmdop_hostname"] == HOSTNAMES[machine_id] and variables["shown_hostname"] == HOSTNAMES[machine_id], variables
        assert variables["cmdop_fleet_remote_name"] == FLEET_NAME, variables  # the fleet group's variable
        assert variables["cmdop_workspace_name"] == FLEET_NAME and variables["shown_fleet"] == FLEET_NAME, variables
    for literal in LITERALS:  # marked as data, so no later templating (a play's) can run it
        assert literal in unsafe, (literal, unsafe)
    groups = set(document) - {"_meta"}
    for name in MACHINE_NAMES.values():
        assert safe_group("name_" + name) in groups, sorted(groups)
    assert safe_group("remote_" + FLEET_NAME) in groups, sorted(groups)
    assert not [group for group in groups if "49" in group or "uid" in group or "root" in group], sorted(groups)
    for group in groups:
        assert group in graph.stdout, (group, graph.stdout)


@pytest.mark.case(AREA, "a play (connection local, gather_facts false) with the inventory as its source printing cmdop_name, "
                  "cmdop_hostname, cmdop_fleet_remote_name, a composed variable and group_names",
                  "each printed value is the exact string from the API; id never ran (no uid= in any output)")
def test_a_play_prints_the_inventorys_api_values_as_text(emulator, run_playbook, tmp_path):
    _home, env = controller(tmp_path, emulator)
    play = [{"hosts": "cmdop", "gather_facts": False, "connection": "local", "tasks": [
        {"name": "name", "ansible.builtin.debug": {"msg": "{{ cmdop_name }}"}},
        {"name": "hostname", "ansible.builtin.debug": {"msg": "{{ cmdop_hostname }}"}},
        {"name": "fleet", "ansible.builtin.debug": {"msg": "{{ cmdop_fleet_remote_name }}"}},
        {"name": "composed", "ansible.builtin.debug": {"msg": "{{ shown }}"}},
        {"name": "joined", "ansible.builtin.debug": {"msg": "[{{ cmdop_name }}] in [{{ cmdop_fleet_remote_name }}]"}},
        {"name": "groups", "ansible.builtin.debug": {"msg": "{{ group_names }}"}},
    ]}]
    result = run_playbook(play, config(tmp_path), env=env)
    assert result.rc == 0, result.describe()
    never_ran(result.stdout, result.stderr)
    hosts = sorted(result.stats)
    assert len(hosts) == len(MACHINE_NAMES), result.describe()
    seen = set()
    for host in hosts:
        name = result.task("name", host)["msg"]
        machine_id = {value: key for key, value in MACHINE_NAMES.items()}[name]  # a KeyError: the name is not the literal
        seen.add(machine_id)
        assert result.task("composed", host)["msg"] == name
        assert result.task("hostname", host)["msg"] == HOSTNAMES[machine_id]
        assert result.task("fleet", host)["msg"] == FLEET_NAME
        assert result.task("joined", host)["msg"] == "[%s] in [%s]" % (name, FLEET_NAME)
        assert safe_group("name_" + name) in result.task("groups", host)["msg"]
        assert name in result.stdout
    assert seen == set(MACHINE_NAMES)
    assert "49" not in result.stdout.replace(FLEET, "")


@pytest.mark.case(AREA, "cmdop.fleet.fleet_info (machines: true, over SSH) answering such names; a play prints the fleet's name, the "
                  "machines' names and hostnames from its result, and builds a string of them",
                  "each printed value is the exact string from the API; id never ran (no uid= in any output)")
def test_fleet_info_values_stay_text(emulator, targets, inventory, run_playbook, api):
    write_as(targets, "t1", TOKEN_FILE, json.dumps(token_document(TOKEN, REFRESH, ALICE)))
    play = [{"hosts": "t1", "gather_facts": False, "tasks": [
        {"name": "info", "cmdop.fleet.fleet_info": dict(api, machines=True), "register": "info"},
        {"name": "fleet", "ansible.builtin.debug": {"msg": "{{ info.fleets[0].name }}"}},
        {"name": "names", "ansible.builtin.debug": {"msg": "{{ info.machines | map(attribute='name') | sort | list }}"}},
        {"name": "hostnames", "ansible.builtin.debug": {"msg": "{{ info.machines | map(attribute='hostname') | sort | list }}"}},
        {"name": "each", "ansible.builtin.debug": {"msg": "{{ item.name }}"}, "loop": "{{ info.machines }}", "loop_control": {"label": "{{ item.id }}"}},
        {"name": "fact", "ansible.builtin.set_fact": {"first_name": "{{ info.machines[0].name }}"}},
        {"name": "again", "ansible.builtin.debug": {"msg": "{{ first_name }}"}},
    ]}]
    result = run_playbook(play, inventory)
    assert result.rc == 0, result.describe()
    never_ran(result.stdout, result.stderr)
    info = result.task("info", "t1")
    assert info["fleets"][0]["name"] == FLEET_NAME
    assert result.task("fleet", "t1")["msg"] == FLEET_NAME
    assert result.task("names", "t1")["msg"] == sorted(MACHINE_NAMES.values())
    assert result.task("hostnames", "t1")["msg"] == sorted(HOSTNAMES.values())
    assert sorted(item["msg"] for item in result.task("each", "t1")["results"]) == sorted(MACHINE_NAMES.values())
    again = result.task("again", "t1")["msg"]
    assert again == info["machines"][0]["name"] and again in MACHINE_NAMES.values()
