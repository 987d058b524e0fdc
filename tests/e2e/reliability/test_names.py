"""Names a fleet member chooses: a machine named like a group (``cmdop``, its fleet's group, ``all``), like the controller
(``localhost``), or with a final newline, through the real ``ansible-inventory`` and ``ansible`` with the plugin as the
source (fleets from the API, ``connect_with: public_ip``, and ``keyed_groups`` on the machine's name, unprefixed).

Every machine stays a host (``ansible all --list-hosts`` lists each); none takes a group's name or the controller's, so
``localhost`` is still the controller and no machine's variable lands on a group (or the group's on another machine); a
keyed group named like a host or like the controller is not made; each renaming and each refused group is warned about.
"""

from __future__ import annotations

import json
import re
import typing as t
from pathlib import Path

import pytest
import yaml

from cmdop_helpers import controller_home, plain

AREA = "Host names"
ALICE = "u-alice"
FLEET = "7a3e0000-0000-4000-8000-0000000000a1"
TOKEN = "cmdop_names_suite_access_Qw8Er5Ty1Lk4Jh7Gf2Ds9Ap3"
REFRESH = "clitr_names_suite_refresh_Ek8Rj5Th1Zx4Cv7Bn2Mq9Wl3"


def machine(number: int, name: str, **fields: t.Any) -> dict:
    return dict({"id": "m-%02d" % number, "workspace": FLEET, "name": name, "local_ips": []}, **fields)


MACHINES = [
    machine(1, "web", hostname="web.example.net"),  # no public IP: it must get no ansible_host, least of all another's
    machine(2, "db", public_ip="192.0.2.62"),
    machine(3, "cmdop", hostname="cmdop-box", public_ip="192.0.2.66"),  # the collection's group
    machine(4, "all", public_ip="192.0.2.67"),
    machine(5, "localhost", hostname="localhost", public_ip="192.0.2.68"),  # the controller, both ways
    machine(6, "evil\n", hostname="evil.example.net", public_ip="192.0.2.69"),
    machine(7, "fleet_team_a", public_ip="192.0.2.70"),  # its fleet's group
    machine(8, "127.0.0.1", public_ip="192.0.2.71"),
]
# machine id -> the host it must be: its name when that is free, else its next usable preference (hostname), else its id
HOSTS = {"m-01": "web", "m-02": "db", "m-03": "cmdop-box", "m-04": "m-04", "m-05": "m-05", "m-06": "evil.example.net",
         "m-07": "m-07", "m-08": "m-08"}
ADDRESSES = {machine_["id"]: machine_.get("public_ip") for machine_ in MACHINES}
SEED = {
    "users": [{"id": ALICE, "email": "alice@example.com"}],
    "fleets": [{"id": FLEET, "name": "Team A", "slug": "team-a", "members": [ALICE], "api_keys": []}],
    "machines": MACHINES,
    "tokens": [{"access_token": TOKEN, "refresh_token": REFRESH, "user": ALICE, "expires_in": 36000}],
}


@pytest.fixture
def emulator_seed() -> dict:
    return SEED


def controller(tmp_path: Path, emulator: t.Any) -> t.Tuple[Path, dict]:
    """The inventory source and the environment: fleets from the API with alice's token file."""
    home = controller_home(tmp_path / "home", TOKEN, REFRESH, ALICE)
    source = tmp_path / "names.cmdop.yml"
    source.write_text(yaml.safe_dump({
        "plugin": "cmdop.fleet.cmdop", "fleets_from": "api", "connect_with": "public_ip", "strict": True,
        "keyed_groups": [{"key": "cmdop_name", "prefix": "", "separator": "", "leading_separator": False}],
    }), encoding="utf-8")
    env = {"HOME": str(home), "CMDOP_API_URL": emulator.url, "CMDOP_TOKEN": None, "CMDOP_API_KEY": None,
           "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "true"}
    return source, env


def flat(text: str) -> str:
    """Text with every run of white space one space: ansible-core before 2.19 wraps warnings at the terminal's width."""
    return " ".join(text.split())


def adhoc(ansible_cli: t.Callable, source: Path, env: dict, pattern: str, var: str) -> t.Dict[str, t.Any]:
    """``ansible PATTERN -m debug -a var=VAR``: host -> the value it printed."""
    result = ansible_cli("ansible", ["-i", str(source), pattern, "-m", "ansible.builtin.debug", "-a", json.dumps({"var": var})], env=env)
    assert result.rc == 0, result.describe()
    printed = re.findall(r"^(\S+) \| SUCCESS => (\{.*?^\})", result.stdout, re.MULTILINE | re.DOTALL)
    return {host: json.loads(body)[var] for host, body in printed}


@pytest.mark.case(AREA, "a fleet whose machines are named web, db, cmdop, all, localhost, 127.0.0.1, fleet_team_a (their fleet's group) "
                  "and evil\\n, with connect_with public_ip (web has none) and keyed_groups of the bare machine name, through "
                  "ansible-inventory --list, ansible all --list-hosts and ansible localhost/web -m debug",
                  "every machine is a host; one named like a group or the controller takes its hostname, else its id, with a "
                  "warning; localhost stays the controller (ansible_connection local, ansible_host 127.0.0.1); web gets no "
                  "ansible_host; no group has a machine's variables; the keyed groups web, db and localhost are not made (warned)")
def test_a_machine_named_like_a_group_or_localhost_takes_nothing_over(emulator, ansible_cli, run_inventory, tmp_path):
    source, env = controller(tmp_path, emulator)
    listed = run_inventory(["-i", str(source), "--list"], env=env)
    assert listed.rc == 0, listed.describe()
    document = plain(listed.json())
    hostvars = document["_meta"]["hostvars"]
    assert {variables["cmdop_id"]: name for name, variables in hostvars.items()} == HOSTS, sorted(hostvars)
    for machine_id, name in HOSTS.items():
        assert hostvars[name].get("ansible_host") == ADDRESSES[machine_id], (name, hostvars[name])
    groups = set(document) - {"_meta"}
    assert not groups & set(HOSTS.values()), sorted(groups)
    assert not groups & {"localhost", "127.0.0.1", "127_0_0_1", "web", "db"}, sorted(groups)
    assert {"all", "cmdop", "fleet_team_a", "evil_"} <= groups, sorted(groups)  # a keyed group merges into an existing group
    for group in groups:  # no group holds a machine's variables
        assert not set(document[group].get("vars") or {}) & {"ansible_host", "cmdop_id", "cmdop_name"}, document[group]
    warnings = flat(listed.stderr)
    assert "5 machine(s) prefer a group's name or one ansible-core reserves" in warnings, listed.stderr
    for machine_id in ("m-03", "m-04", "m-05", "m-07", "m-08"):
        assert "machine %s is %r" % (machine_id, HOSTS[machine_id]) in warnings, listed.stderr
    assert "3 group(s) of keyed_groups or groups not made" in warnings, listed.stderr
    assert "'localhost' (it is a name of the controller (localhost))" in warnings and "'web' (a host has that name)" in warnings

    every = ansible_cli("ansible", ["-i", str(source), "all", "--list-hosts"], env=env)
    assert every.rc == 0, every.describe()
    assert sorted(line.strip() for line in every.stdout.splitlines()[1:] if line.strip()) == sorted(HOSTS.values()), every.stdout

    assert adhoc(ansible_cli, source, env, "localhost", "ansible_host") == {"localhost": "127.0.0.1"}  # the implicit localhost
    assert adhoc(ansible_cli, source, env, "localhost", "ansible_connection") == {"localhost": "local"}
    assert adhoc(ansible_cli, source, env, "localhost", "cmdop_id is defined") == {"localhost": False}
    assert adhoc(ansible_cli, source, env, "web", "ansible_host") == {"web": "web"}  # its own name, not another machine's address
    assert adhoc(ansible_cli, source, env, "cmdop", "cmdop_id") == {name: machine_id for machine_id, name in HOSTS.items()}
    assert TOKEN not in listed.stdout + listed.stderr + every.stdout + every.stderr


@pytest.mark.case(AREA, "a static inventory source (host db with ansible_host 198.51.100.7, group web) before the plugin's source, "
                  "whose machines are named db and web, through ansible-inventory and ansible db -m debug",
                  "the machine named db takes its id and web its hostname, with a warning; the static db keeps its address and "
                  "gets no machine's variables, and the static group web none either")
def test_a_machine_never_takes_over_a_host_or_group_of_an_earlier_source(emulator, ansible_cli, run_inventory, tmp_path):
    source, env = controller(tmp_path, emulator)
    source.write_text(yaml.safe_dump({"plugin": "cmdop.fleet.cmdop", "fleets_from": "api", "connect_with": "public_ip"}), encoding="utf-8")
    static = tmp_path / "static.yml"
    static.write_text(yaml.safe_dump({"all": {"hosts": {"db": {"ansible_host": "198.51.100.7"}},
                                              "children": {"web": {"hosts": {"static-web": {}}, "vars": {"role": "frontend"}}}}}), encoding="utf-8")
    listed = run_inventory(["-i", str(static), "-i", str(source), "--list"], env=env)
    assert listed.rc == 0, listed.describe()
    document = plain(listed.json())
    hostvars = document["_meta"]["hostvars"]
    assert hostvars["db"] == {"ansible_host": "198.51.100.7"}, hostvars["db"]
    assert hostvars["m-02"]["cmdop_name"] == "db" and hostvars["web.example.net"]["cmdop_name"] == "web", sorted(hostvars)
    assert document["web"]["hosts"] == ["static-web"], document["web"]  # the machine named web is not in it, nor gets its role
    assert [name for name, variables in hostvars.items() if "role" in variables] == ["static-web"], hostvars
    assert "machine(s) prefer the name of a host an earlier inventory source made: machine m-02 is 'm-02' (not 'db')" in flat(listed.stderr)
    both = ansible_cli("ansible", ["-i", str(static), "-i", str(source), "db", "-m", "ansible.builtin.debug", "-a", json.dumps({"var": "ansible_host"})],
                       env=env)
    assert both.rc == 0 and '"ansible_host": "198.51.100.7"' in both.stdout, both.describe()
