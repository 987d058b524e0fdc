"""cmdop.fleet.cmdop end to end: the real ansible-inventory and ansible-playbook CLIs, the CMDOP emulator as the API,
real sshd targets. Outputs are compared with the stored files in tests/e2e/inventory_expected/.

The stored files are written and reviewed by hand: after an intended change, read the diff the failing
assertion shows, and edit the file line by line. A test never writes them.
"""

from __future__ import annotations

import json
import os
import re
import time
import typing as t
from pathlib import Path

import pytest
import yaml

import ansible.template

from cmdop_helpers import controller_home, plain

# ansible-core 2.19's data tagging: ansible-inventory marks every untrusted string; before, only AnsibleUnsafe ones
# (the plugin wraps text that could be a template, i.e. holds a "{").
DATA_TAGGING = hasattr(ansible.template, "trust_as_template")

EXPECTED = Path(__file__).resolve().parent / "inventory_expected"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "inventory.md"

ALICE = "u-alice"
TEAM_A = "0e000000-0000-4000-8000-00000000a001"
LAB = "0e000000-0000-4000-8000-00000000b002"
STAGING = "0e000000-0000-4000-8000-00000000c003"
OLD = "0e000000-0000-4000-8000-00000000d004"
KEY_A = "cmdop_live_e2e_team_a_key_1111111111111111"
KEY_A_OPS = "cmdop_live_e2e_team_a_ops_key_22222222222222"
KEY_C = "cmdop_live_e2e_staging_key_333333333333333"
KEY_D = "cmdop_live_e2e_old_key_44444444444444444444"
REVOKED = "cmdop_live_e2e_revoked_key_5555555555555555"
TOKEN = "cmdop_e2e_alice_access_6666666666666666666666"
REFRESH = "clitr_e2e_alice_refresh_77777777777777777777"
SECRETS = (KEY_A, KEY_A_OPS, KEY_C, KEY_D, REVOKED, TOKEN, REFRESH)
MACHINES_PATH = "/api/machines/machines/"


def machine(fleet: str, number: int, name: str, **fields: t.Any) -> dict:
    base = {"id": "m-%s-%02d" % (fleet[-4:], number), "workspace": fleet, "name": name, "hostname": "%s.example.net" % name,
            "local_ips": ["10.%d.0.%d" % (int(fleet[-1]), number)], "last_seen": "2026-11-20T09:59:56Z"}
    base.update(fields)
    return base


SEED = {
    "users": [{"id": ALICE, "email": "alice@example.com"}],
    "fleets": [
        {"id": TEAM_A, "name": "Team A", "slug": "team-a", "type": "team", "plan": "pro", "members": [ALICE], "api_keys": [KEY_A, KEY_A_OPS]},
        {"id": LAB, "name": "Lab", "slug": "lab", "type": "team", "plan": "free", "members": [ALICE], "api_keys": []},
        {"id": STAGING, "name": "Staging", "slug": "staging", "members": [ALICE], "api_keys": [KEY_C]},
        {"id": OLD, "name": "Old", "slug": "old", "members": [ALICE], "api_keys": [KEY_D]},
    ],
    "machines": (
        [machine(TEAM_A, number, "web-%d" % number, public_ip="203.0.113.%d" % number) for number in range(1, 6)]
        + [machine(TEAM_A, 6, "db-1", status="offline", is_online=False), machine(TEAM_A, 7, "{{ lookup('pipe', 'id') }}")]
        + [machine(LAB, 1, "lab-pi", os="linux", architecture="arm64"), machine(LAB, 2, "lab-mac", os="macos"), machine(LAB, 3, "web-1")]
        + [machine(STAGING, 1, "stg-1")]
        + [machine(OLD, 1, "old-1")]
    ),
    "tokens": [{"access_token": TOKEN, "refresh_token": REFRESH, "user": ALICE, "expires_in": 36000}],
}

ENTRIES = {
    "team-a": {"name": "team-a", "api_key": KEY_A, "server": "", "remote_id": TEAM_A, "remote_name": "Team A", "last_synced_at": "2026-11-20T10:00:00Z"},
    "team-a-ops": {"name": "team-a-ops", "api_key": KEY_A_OPS, "server": "", "remote_id": TEAM_A, "remote_name": "Team A"},
    "lab": {"name": "lab", "api_key": "", "server": "", "remote_id": LAB, "remote_name": "Lab", "last_synced_at": "2026-11-20T10:00:00Z"},
    "staging": {"name": "staging", "api_key": KEY_C, "server": "", "remote_id": STAGING, "remote_name": "Staging", "inactive": True},
    "old": {"name": "old", "api_key": REVOKED, "server": "", "remote_id": OLD, "remote_name": "Old"},
    "dev-only": {"name": "dev-only", "api_key": KEY_D, "server": "https://dev.cmdop.com", "remote_id": OLD},
    # a dev entry a sync with dev_server: relay.dev.example:7443 wrote (the value the user's CLI writes)
    "dev-relay": {"name": "dev-relay", "api_key": KEY_D, "server": "relay.dev.example:7443", "remote_id": OLD},
}


@pytest.fixture
def emulator_seed() -> dict:
    return SEED


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A HOME with the OAuth token file cmdop login leaves, and nothing else."""
    return controller_home(tmp_path / "home", TOKEN, REFRESH, ALICE)


class Inventory:
    """Writes the fleet file and the inventory file, runs ansible-inventory, reads the emulator's request log."""

    def __init__(self, emulator: t.Any, run_inventory: t.Callable, home: Path, folder: Path) -> None:
        self.emulator = emulator
        self.run_inventory = run_inventory
        self.home = home
        self.folder = folder

    def fleets(self, *names: str) -> Path:
        path = self.home / ".cmdop" / "ssh_workspaces.json"
        path.write_text(json.dumps({"active": names[0] if names else "", "workspaces": [ENTRIES[name] for name in names]}, indent=2), encoding="utf-8")
        os.chmod(path, 0o600)
        return path

    def config(self, name: str = "fleets.cmdop.yml", **options: t.Any) -> Path:
        path = self.folder / name
        path.write_text(yaml.safe_dump(dict({"plugin": "cmdop.fleet.cmdop"}, **options), sort_keys=False), encoding="utf-8")
        return path

    def env(self, **extra: t.Any) -> dict:
        env = {"HOME": str(self.home), "CMDOP_API_URL": self.emulator.url, "CMDOP_TOKEN": None, "CMDOP_API_KEY": None,
               "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "true"}
        env.update(extra)
        return env

    def run(self, config: Path, *args: str, **env: t.Any) -> t.Any:
        return self.run_inventory(["-i", str(config)] + list(args), env=self.env(**env))

    def requests(self) -> t.List[dict]:
        return [item for item in self.emulator.admin("GET", "requests") if item["path"].startswith("/api/")]

    def clear(self) -> None:
        self.emulator.admin("DELETE", "requests")


@pytest.fixture
def inv(emulator: t.Any, run_inventory: t.Callable, home: Path, tmp_path: Path) -> Inventory:
    return Inventory(emulator, run_inventory, home, tmp_path)


def matches_expected(name: str, actual: t.Any) -> None:
    path = EXPECTED / name
    text = actual if isinstance(actual, str) else json.dumps(actual, indent=2, sort_keys=True) + "\n"
    assert path.exists(), "%s is missing" % path
    assert text == path.read_text(encoding="utf-8"), "output differs from %s" % path


def flat(text: str) -> str:
    """Text with every run of white space one space: ansible-core before 2.19 wraps warnings at the terminal's width."""
    return " ".join(text.split())


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text


def listing_counts(requests: t.List[dict]) -> t.Dict[str, t.List[int]]:
    """Credential kind -> pages requested, sorted."""
    counts: t.Dict[str, t.List[int]] = {}
    for item in requests:
        if item["path"] == MACHINES_PATH:
            counts.setdefault(item["credential_kind"], []).append(int(item["query"]["page"]))
    return {kind: sorted(pages) for kind, pages in counts.items()}


# ---- the synced fleets as groups ------------------------------------------------------------


def test_fleets_across_pages_as_groups(inv: Inventory) -> None:
    """Several fleets over several pages, an inactive fleet left out, a machine in two fleets, a shared OAuth listing."""
    inv.fleets("team-a", "team-a-ops", "lab", "staging", "dev-only")
    config = inv.config(page_size=3, max_workers=4)
    listed = inv.run(config, "--list")
    assert listed.rc == 0, listed.describe()
    unsafe: t.List[t.Any] = []
    matches_expected("fleets.list.json", plain(listed.json(), unsafe))
    # Every API value that could be a template is marked as data, the "{{ lookup('pipe', 'id') }}" machine name included;
    # 2.19 marks every untrusted string, plain names too.
    assert "{{ lookup('pipe', 'id') }}" in unsafe
    assert ("web-1.example.net" in unsafe) is DATA_TAGGING
    graph = inv.run(config, "--graph")
    assert graph.rc == 0, graph.describe()
    matches_expected("fleets.graph.txt", graph.stdout)
    # Team A's two keys: 7 machines in 3 pages each; the token (for lab) sees all 12 of Alice's machines: 4 pages.
    inv.clear()
    inv.run(config, "--graph")
    assert listing_counts(inv.requests()) == {"api_key": [1, 1, 2, 2, 3, 3], "oauth": [1, 2, 3, 4]}
    assert_no_secret(listed.stdout, listed.stderr, graph.stdout, graph.stderr)


def test_include_inactive(inv: Inventory) -> None:
    inv.fleets("team-a", "lab", "staging")
    graph = inv.run(inv.config(include_inactive=True), "--graph")
    assert graph.rc == 0, graph.describe()
    matches_expected("include_inactive.graph.txt", graph.stdout)


def test_dev_server_shows_the_dev_fleets_a_sync_wrote_with_it(inv: Inventory) -> None:
    """The sync's dev_server, given to the inventory too: its entries are dev's; without it they are left out, as overrides."""
    inv.fleets("team-a", "dev-relay")
    given = inv.run(inv.config(mode="dev", dev_server="relay.dev.example:7443"), "--list")
    assert given.rc == 0, given.describe()
    groups = plain(json.loads(given.stdout))
    assert groups["fleet_dev_relay"]["hosts"] == ["old-1"] and "fleet_team_a" not in groups, sorted(groups)
    listed = inv.folder / "default.json"
    default = inv.run(inv.config(mode="dev"), "--list", "--output", str(listed), "-vvv")
    assert default.rc == 0, default.describe()
    assert "fleet_dev_relay" not in plain(json.loads(listed.read_text(encoding="utf-8")))
    assert "fleet 'dev-relay' left out: it belongs to another mode or server" in flat(default.stdout + default.stderr)
    wrong = inv.run(inv.config(mode="dev", dev_server="https://relay.dev.example"), "--list")
    assert wrong.rc != 0 and "dev_server 'https://relay.dev.example' is a URL with a scheme" in flat(wrong.stderr), wrong.describe()


def test_a_refused_key_fails_the_inventory_with_the_fleet_name(inv: Inventory) -> None:
    inv.fleets("team-a", "team-a-ops", "lab", "old")
    result = inv.run(inv.config(), "--list", "-vvvv")
    assert result.rc != 0, result.describe()
    assert "fleet 'old': " in flat(result.stderr) and "401 Unauthorized" in flat(result.stderr), result.describe()
    assert "no inventory was made" in flat(result.stderr)
    assert '"web-1"' not in result.stdout  # no partial inventory
    assert_no_secret(result.stdout, result.stderr)


def test_a_hostile_server_cannot_echo_a_key_or_token_into_the_inventorys_message(inv: Inventory) -> None:
    """The inventory has no no_log masking: the plugin's scrub alone keeps what the server echoes out of the output."""
    inv.fleets("team-a", "lab")
    body = json.dumps({"detail": {"authorization": ["Bearer %s is not allowed" % KEY_A], "token": [TOKEN], "refresh": REFRESH}})
    inv.emulator.admin("POST", "faults", {"path": MACHINES_PATH, "status": 400, "body": body, "count": 10})
    for args in (("--list", "-vvvv"), ("--graph",)):
        result = inv.run(inv.config(retries=0), *args)
        assert result.rc != 0, result.describe()
        assert "authorization: Bearer <secret> is not allowed" in result.stderr, result.describe()
        assert_no_secret(result.stdout, result.stderr)
    warned = inv.run(inv.config(retries=0, on_error="warn"), "--list", "-vvvv")
    assert_no_secret(warned.stdout, warned.stderr)


def test_on_error_warn_shows_the_other_fleets(inv: Inventory) -> None:
    inv.fleets("team-a", "team-a-ops", "lab", "old", "staging", "dev-only")
    result = inv.run(inv.config(on_error="warn", page_size=3, max_workers=4), "--list")
    assert result.rc == 0, result.describe()
    assert "fleet 'old' left out: " in flat(result.stderr)
    matches_expected("fleets.list.json", plain(result.json()))
    assert_no_secret(result.stdout, result.stderr)


def test_a_cache_hit_makes_no_request(inv: Inventory, tmp_path: Path, ansible_cli: t.Callable, run_playbook: t.Callable) -> None:
    inv.fleets("team-a", "team-a-ops", "lab", "staging", "dev-only")
    config = inv.config(page_size=3, cache=True, cache_plugin="ansible.builtin.jsonfile", cache_connection=str(tmp_path / "cache"))
    first = inv.run(config, "--list")
    assert first.rc == 0, first.describe()
    assert inv.requests()
    inv.clear()
    second = inv.run(config, "--list")
    assert second.rc == 0, second.describe()
    assert inv.requests() == []
    assert second.json() == first.json()
    matches_expected("fleets.list.json", plain(second.json()))
    cached = "".join(path.read_text(encoding="utf-8") for path in (tmp_path / "cache").iterdir())
    assert "web-1" in cached
    assert_no_secret(cached, "".join(path.name for path in (tmp_path / "cache").iterdir()))
    if "--flush-cache" in ansible_cli("ansible-inventory", ["--help"]).stdout:
        refreshed = inv.run(config, "--list", "--flush-cache")
    else:  # ansible-inventory has --flush-cache from ansible-core 2.19 on; ansible-playbook's does the same
        refreshed = run_playbook({"hosts": "all", "gather_facts": False, "tasks": []}, config, args=["--flush-cache"], env=inv.env())
    assert refreshed.rc == 0 and inv.requests(), refreshed.describe()


def test_429_then_success(inv: Inventory) -> None:
    inv.fleets("team-a", "team-a-ops", "lab", "staging", "dev-only")
    inv.emulator.admin("POST", "faults", {"path": MACHINES_PATH, "status": 429, "count": 2, "retry_after": 1})
    started = time.monotonic()
    result = inv.run(inv.config(page_size=3), "--list")
    assert result.rc == 0, result.describe()
    assert time.monotonic() - started >= 1.0
    matches_expected("fleets.list.json", plain(result.json()))
    statuses = [item["status"] for item in inv.requests() if item["path"] == MACHINES_PATH]
    assert statuses.count(429) == 2 and statuses.count(200) == 10


def test_server_errors_after_retries_fail_the_inventory(inv: Inventory) -> None:
    inv.fleets("team-a", "lab")
    inv.emulator.admin("POST", "faults", {"path": MACHINES_PATH, "status": 502, "count": 100})
    result = inv.run(inv.config(retries=1), "--graph")
    assert result.rc != 0, result.describe()
    assert "answered 502" in flat(result.stderr) and "fleet 'team-a'" in flat(result.stderr) and "fleet 'lab'" in flat(result.stderr)


# ---- when the API is down: on_error: cache ----------------------------------------------------------


def cache_files_text(folder: Path) -> str:
    return "".join(path.name + path.read_text(encoding="utf-8") for path in folder.iterdir()) if folder.exists() else ""


def test_on_error_cache_serves_the_last_good_answer_past_the_timeout(inv: Inventory, tmp_path: Path) -> None:
    """A good run fills the cache; once it has expired and the API fails, the same inventory is served with a warning."""
    inv.fleets("team-a", "team-a-ops", "lab", "staging", "dev-only")
    cache = tmp_path / "cache"
    config = inv.config(page_size=3, retries=0, on_error="cache", cache=True, cache_plugin="ansible.builtin.jsonfile",
                        cache_connection=str(cache), cache_timeout=1)
    good = inv.run(config, "--list")
    assert good.rc == 0, good.describe()
    assert "on_error=cache" not in good.stderr
    time.sleep(2)  # past cache_timeout: a plain cache hit is no longer possible
    inv.emulator.admin("POST", "faults", {"path": MACHINES_PATH, "status": 503, "count": 100})
    inv.clear()
    served = inv.run(config, "--list")
    assert served.rc == 0, served.describe()
    assert inv.requests(), "the expired cache was not a hit: the API was asked first"
    matches_expected("fleets.list.json", plain(served.json()))
    warning = " ".join(served.stderr.split())
    assert "3 fleet(s) could not be listed, so they are shown as the cache had them" in warning, served.stderr
    assert "'team-a', 'team-a-ops', 'lab'" in warning and "seconds ago" in warning and "answered 503" in warning, served.stderr
    # A run that served the cache does not write it: the answer's age stays true.
    assert cache_files_text(cache) and json.loads(next(cache.iterdir()).read_text(encoding="utf-8"))
    assert_no_secret(served.stdout, served.stderr, cache_files_text(cache))


def test_on_error_cache_without_a_last_good_answer_fails_as_before(inv: Inventory, tmp_path: Path) -> None:
    inv.fleets("team-a", "lab")
    inv.emulator.admin("POST", "faults", {"path": MACHINES_PATH, "status": 503, "count": 100})
    config = inv.config(retries=0, on_error="cache", cache=True, cache_plugin="ansible.builtin.jsonfile", cache_connection=str(tmp_path / "cache"))
    result = inv.run(config, "--graph")
    assert result.rc != 0, result.describe()
    assert "no inventory was made" in result.stderr and "fleet 'team-a'" in result.stderr and "answered 503" in result.stderr
    assert cache_files_text(tmp_path / "cache") == ""  # a failed run is not cached
    without_cache = inv.run(inv.config(on_error="cache"), "--graph")
    assert without_cache.rc != 0 and "needs cache: true" in without_cache.stderr, without_cache.describe()


def test_on_error_cache_serves_the_fleet_list_of_fleets_from_api(inv: Inventory, tmp_path: Path) -> None:
    config = inv.config(fleets_from="api", retries=0, on_error="cache", cache=True, cache_plugin="ansible.builtin.jsonfile",
                        cache_connection=str(tmp_path / "cache"), cache_timeout=1)
    good = inv.run(config, "--graph")
    assert good.rc == 0, good.describe()
    time.sleep(2)
    inv.emulator.admin("POST", "faults", {"path": "/api/workspaces/workspaces/", "status": 500, "count": 100})
    served = inv.run(config, "--graph")
    assert served.rc == 0, served.describe()
    assert served.stdout == good.stdout
    assert "4 fleet(s) could not be listed" in " ".join(served.stderr.split()), served.stderr


# ---- reachability: connect_with in order, the machine fields as host variables, hostvar_fields --------


def test_connect_with_tries_each_field_in_order_per_host(inv: Inventory) -> None:
    seed = json.loads(json.dumps(SEED))
    seed["machines"] = [
        machine(TEAM_A, 1, "public", public_ip="203.0.113.7"),
        machine(TEAM_A, 2, "private"),  # local_ips only
        machine(TEAM_A, 3, "named", local_ips=[]),  # the hostname only
        machine(TEAM_A, 4, "nothing", local_ips=[], hostname=None),
    ]
    inv.emulator.admin("POST", "reset", {"seed": seed})
    inv.fleets("team-a")
    result = inv.run(inv.config(connect_with=["public_ip", "local_ip", "hostname"]), "--list")
    assert result.rc == 0, result.describe()
    hostvars = plain(result.json())["_meta"]["hostvars"]
    assert {name: variables.get("ansible_host") for name, variables in hostvars.items()} == {
        "public": "203.0.113.7", "private": "10.1.0.2", "named": "named.example.net", "nothing": None}
    assert "1 host(s) have no value for connect_with, so no ansible_host: nothing" in " ".join(result.stderr.split())
    single = inv.run(inv.config(connect_with="hostname"), "--list")  # one value, as 0.1.0 took it
    assert plain(single.json())["_meta"]["hostvars"]["public"]["ansible_host"] == "public.example.net"


REACHABILITY = ("has_shell", "is_online", "heartbeat_age_seconds", "active_terminal_session", "agent_version")


def test_reachability_fields_are_host_variables_and_hostvar_fields_keeps_only_some(inv: Inventory) -> None:
    seed = json.loads(json.dumps(SEED))
    session = {"session_id": "s-1", "created_at": "2026-11-20T09:00:00Z"}
    seed["machines"] = [
        machine(TEAM_A, 1, "busy", has_shell=True, is_online=True, heartbeat_age_seconds=3, active_terminal_session=session, agent_version="1.4.2"),
        machine(TEAM_A, 2, "idle", has_shell=False, is_online=False, status="offline", heartbeat_age_seconds=900, agent_version="1.3.0"),
    ]
    inv.emulator.admin("POST", "reset", {"seed": seed})
    inv.fleets("team-a")
    every = inv.run(inv.config(groups={"shell_now": "cmdop_has_shell and cmdop_heartbeat_age_seconds < 60"}), "--list")
    assert every.rc == 0, every.describe()
    listed = plain(every.json())
    busy = listed["_meta"]["hostvars"]["busy"]
    assert {name: busy.get("cmdop_" + name) for name in REACHABILITY} == {
        "has_shell": True, "is_online": True, "heartbeat_age_seconds": 3, "active_terminal_session": session, "agent_version": "1.4.2"}
    assert listed["shell_now"]["hosts"] == ["busy"]
    kept = inv.run(inv.config(hostvar_fields=["has_shell", "is_online"], connect_with="hostname"), "--list")
    assert kept.rc == 0, kept.describe()
    group_variables = {"cmdop_fleet_id": TEAM_A, "cmdop_fleet_inactive": False, "cmdop_fleet_name": "team-a", "cmdop_fleet_remote_name": "Team A"}
    assert plain(kept.json())["_meta"]["hostvars"]["idle"] == dict(
        group_variables, cmdop_has_shell=False, cmdop_is_online=False, cmdop_fleet="team-a", cmdop_fleets=["team-a"], ansible_host="idle.example.net")


# ---- a cache hit loads no HTTP library, no schema library ----------------------------------------------


HTTP_LIBRARIES = ("requests", "requests_oauthlib", "oauthlib", "urllib3", "jsonschema")


def imported(stderr: str) -> t.Set[str]:
    """The top-level packages python -X importtime reports."""
    return {line.rsplit("|", 1)[1].strip().split(".")[0] for line in stderr.splitlines() if line.startswith("import time:") and "|" in line}


def test_a_cache_hit_does_not_load_the_http_libraries(inv: Inventory, tmp_path: Path) -> None:
    """Nor jsonschema: the fleet file and the token file found valid before (same bytes, by digest) are not checked again."""
    inv.fleets("team-a", "lab")
    config = inv.config(cache=True, cache_plugin="ansible.builtin.jsonfile", cache_connection=str(tmp_path / "cache"))
    cold = inv.run(config, "--graph", PYTHONPROFILEIMPORTTIME="1")
    assert cold.rc == 0, cold.describe()
    assert set(HTTP_LIBRARIES) <= imported(cold.stderr)  # what this test looks for is seen when it is there
    inv.clear()
    warm = inv.run(config, "--graph", PYTHONPROFILEIMPORTTIME="1")
    assert warm.rc == 0 and warm.stdout == cold.stdout, warm.describe()
    assert inv.requests() == []
    assert not set(HTTP_LIBRARIES) & imported(warm.stderr), set(HTTP_LIBRARIES) & imported(warm.stderr)
    # A changed fleet file is checked again, and a broken one still fails on a cache hit.
    path = inv.home / ".cmdop" / "ssh_workspaces.json"
    path.write_text(path.read_text(encoding="utf-8").replace('"remote_name": "Lab"', '"remote_name": 7'), encoding="utf-8")
    broken = inv.run(config, "--graph")
    assert broken.rc != 0 and "workspaces[1].remote_name must be of type string or null" in broken.stderr, broken.describe()


# ---- from a fresh clone: sync, then the inventory -------------------------------------------------


def test_synced_fleets_show_as_groups(inv: Inventory, run_playbook: t.Callable, home: Path) -> None:
    """cmdop.fleet.sync writes ~/.cmdop/ssh_workspaces.json; the inventory's defaults read it and the token file."""
    play = [{"hosts": "localhost", "gather_facts": False, "tasks": [{"name": "sync", "cmdop.fleet.sync": {"api_url": inv.emulator.url}}]}]
    synced = run_playbook(play, None, env={"HOME": str(home), "CMDOP_TOKEN": None})
    assert synced.rc == 0, synced.describe()
    assert (home / ".cmdop" / "ssh_workspaces.json").exists()
    graph = inv.run(inv.config(), "--graph")
    assert graph.rc == 0, graph.describe()
    matches_expected("synced.graph.txt", graph.stdout)


# ---- a playbook limited to one fleet group, over real SSH -----------------------------------


def test_a_playbook_limited_to_one_fleet_group(inv: Inventory, ssh_targets: t.Any, run_playbook: t.Callable) -> None:
    """Machines whose hostname is the sshd of the test users: -l fleet_team_a reaches Team A's machine only."""
    seed = json.loads(json.dumps(SEED))
    seed["machines"] = [
        machine(TEAM_A, 1, "t1", hostname="127.0.0.1", username=ssh_targets.user("t1")),
        machine(LAB, 1, "t2", hostname="127.0.0.1", username=ssh_targets.user("t2")),
    ]
    inv.emulator.admin("POST", "reset", {"seed": seed})
    inv.fleets("team-a", "lab")
    config = inv.config(
        connect_with="hostname",
        compose={
            "ansible_user": "cmdop_username",
            "ansible_port": str(ssh_targets.port),
            "ansible_ssh_private_key_file": repr(str(ssh_targets.private_key)),
            "ansible_python_interpreter": "'/usr/bin/python3'",
            "ansible_ssh_common_args": "'-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null'",
        },
    )
    play = [{"hosts": "cmdop", "gather_facts": False, "tasks": [{"name": "who", "ansible.builtin.command": "id -un", "changed_when": False}]}]
    result = run_playbook(play, config, limit="fleet_team_a", env=inv.env())
    assert result.rc == 0, result.describe()
    assert set(result.stats) == {"t1"}
    assert result.task("who", "t1")["stdout"] == ssh_targets.user("t1")
    both = run_playbook(play, config, env=inv.env())
    assert both.rc == 0, both.describe()
    assert {host: both.task("who", host)["stdout"] for host in both.stats} == {"t1": ssh_targets.user("t1"), "t2": ssh_targets.user("t2")}


# ---- documentation ----------------------------------------------------------------------------


class StrictLoader(yaml.SafeLoader):  # pylint: disable=too-many-ancestors
    """PyYAML's safe loader, except that a key given twice in one mapping is an error (PyYAML keeps the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        keys = [self.construct_object(pair[0], deep=True) for pair in node.value]
        duplicates = sorted({str(key) for key in keys if keys.count(key) > 1})
        if duplicates:
            raise yaml.constructor.ConstructorError(None, None, "duplicate key(s) %s" % ", ".join(duplicates), node.start_mark)
        return super().construct_mapping(node, deep=deep)


class Example(t.NamedTuple):
    """One EXAMPLES document: the file it names, its text, and what YAML makes of it."""

    name: str
    text: str
    parsed: t.Any


def plugin_examples(ansible_cli: t.Callable) -> t.Tuple[dict, t.List[Example]]:
    """The plugin's documentation and its EXAMPLES as ansible-doc gives them, one Example per inventory file.

    EXAMPLES is one YAML document (ansible-test's yamllint wants that): the first file written out, each other one
    commented out from its line "# --- <file>: ..." on. Uncommented, each must be a YAML document of its own.
    """
    as_json = ansible_cli("ansible-doc", ["-t", "inventory", "--json", "cmdop.fleet.cmdop"])
    assert as_json.rc == 0, as_json.describe()
    doc = json.loads(as_json.stdout)["cmdop.fleet.cmdop"]
    assert len(list(yaml.load_all(doc["examples"], Loader=StrictLoader))) == 1, "EXAMPLES is one YAML document"  # noqa: S506
    blocks = re.split(r"^# --- ", doc["examples"], flags=re.MULTILINE)
    texts = [blocks[0]] + ["# " + "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#") for line in block.splitlines())
                           for block in blocks[1:]]
    examples = []
    for text in texts:
        name = re.search(r"^# (\S+\.cmdop\.yml):", text, flags=re.MULTILINE)
        assert name, "each example starts with a comment naming its file: %s" % text
        examples.append(Example(name.group(1), text, yaml.load(text, Loader=StrictLoader)))  # noqa: S506  # a SafeLoader subclass
    return doc, examples


def test_ansible_doc_shows_a_complete_example(ansible_cli: t.Callable) -> None:
    result = ansible_cli("ansible-doc", ["-t", "inventory", "cmdop.fleet.cmdop"])
    assert result.rc == 0, result.describe()
    for text in ("plugin: cmdop.fleet.cmdop", "fleets_from", "connect_with", "keyed_groups", "cache_plugin", "on_error", "hostvar_fields",
                 "last good answer"):
        assert text in result.stdout
    doc, examples = plugin_examples(ansible_cli)
    assert len(examples) == 3
    names = [example.name for example in examples]
    assert len(set(names)) == len(names), names
    for example in examples:
        assert isinstance(example.parsed, dict) and example.parsed["plugin"] == "cmdop.fleet.cmdop", example.name
        assert set(example.parsed) <= set(doc["doc"]["options"]), (example.name, set(example.parsed) - set(doc["doc"]["options"]))


def test_the_plugin_examples_run(inv: Inventory, ansible_cli: t.Callable) -> None:
    """Each EXAMPLES document, saved as the file it names, is an inventory source that works against the emulator."""
    examples = plugin_examples(ansible_cli)[1]
    inv.fleets("team-a", "lab", "staging", "dev-only")
    graphs = {}
    for example in examples:
        config = inv.folder / example.name
        config.write_text(example.text.lstrip("\n"), encoding="utf-8")
        graph = inv.run(config, "--graph", MY_CMDOP_TOKEN=TOKEN)
        assert graph.rc == 0, graph.describe()
        assert_no_secret(graph.stdout, graph.stderr)
        graphs[example.name] = graph.stdout
    synced, dev, api = (graphs[example.name] for example in examples)
    assert "@fleet_team_a:" in synced and "@fleet_lab:" in synced and "@fleet_staging:" not in synced  # staging is inactive
    assert "@fleet_dev_only:" in dev and "@os_linux:" in dev and "old-1" in dev and "@fleet_team_a:" not in dev
    assert all("@fleet_%s:" % slug in api for slug in ("team_a", "lab", "staging", "old"))
    assert (inv.home / ".cache" / "cmdop-inventory").is_dir()  # the second example's cache


def test_the_documented_example_runs(inv: Inventory) -> None:
    """The complete example in docs/inventory.md, as a user would save it, against the emulator."""
    text = DOCS.read_text(encoding="utf-8")
    example = text.split("```yaml\n# fleets.cmdop.yml", 1)[1].split("```", 1)[0]
    config = inv.folder / "fleets.cmdop.yml"
    config.write_text("# fleets.cmdop.yml" + example, encoding="utf-8")
    inv.fleets("team-a", "team-a-ops", "lab", "staging", "dev-only")
    graph = inv.run(config, "--graph")
    assert graph.rc == 0, graph.describe()
    matches_expected("docs_example.graph.txt", graph.stdout)
