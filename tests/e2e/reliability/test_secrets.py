"""Secrets: no access token, refresh token or API key ever shows where it does not belong.

Every module (``cmdop.fleet.sync`` with ``backup: true`` and ``cmdop.fleet.fleet_info`` with ``machines: true``, over SSH
to t1 and t2) and the inventory (``ansible-inventory --list`` and ``--graph``, ``fleets_from: api`` and the fleet file
with API keys) run at -vvvv, with ``--diff``, with ``--check``, with the inventory cache on, with ``ANSIBLE_LOG_PATH``,
after a refresh, and against a server whose error bodies echo the Authorization header back. Then every output and
every file the runs could have left (the log, the cache, ``ANSIBLE_LOCAL_TEMP``, the harness's own files, the targets'
homes with their remote tmp and ``~/.cmdop``) is searched for every secret the emulator ever issued or knows: none may
appear. Only the token file (it holds the tokens) and the fleet file (it holds the API keys) are left out of the
search; a sync's backup is a copy of the fleet file, so it must be byte-for-byte the file as it was, with its mode.

Then the bearer token never leaves for another host: a redirect is never followed. (Plain HTTP to a host that is not
loopback is refused: tests/e2e/test_contract.py::test_plain_http_is_refused_for_any_host_but_loopback.)
"""

from __future__ import annotations

import dataclasses
import http.server
import json
import os
import stat
import threading
import time
import typing as t
from pathlib import Path

import pytest
import yaml

from cmdop_helpers import FLEET_FILE, TOKEN_FILE, fleet_path, sync_play, write_as

AREA = "Secrets"
FLEETS = "/api/workspaces/workspaces/"
MACHINES = "/api/machines/machines/"
ALICE = "u-alice"
TEAM_A = "5ec0e7a1-0000-4000-8000-00000000a001"
LAB = "5ec0e7a1-0000-4000-8000-00000000b002"
STAGING = "5ec0e7a1-0000-4000-8000-00000000c003"
# Long and unique: a search for one of them cannot match anything by chance.
KEY_A = "cmdop_live_SECRETSUITE_team_a_key_Qx7Lm2Vb9Nc4Hd8Kf1Rt6Ws3"
KEY_LAB = "cmdop_live_SECRETSUITE_lab_key_Zp5Gy8Jk2Mv7Bq4Xc9Ln1Dt6"
LOCAL_KEY = "cmdop_live_SECRETSUITE_local_only_key_Hs3Fw8Ru5Ea2Ty7Io4Pm9"
TOKENS = {  # who -> (access token, refresh token)
    "t1": ("cmdop_SECRETSUITE_t1_access_Ab3Cd5Ef7Gh9Ij2Kl4Mn6Op8", "clitr_SECRETSUITE_t1_refresh_Qr3St5Uv7Wx9Yz2Ab4Cd6Ef8"),
    "t2": ("cmdop_SECRETSUITE_t2_access_Gh3Ij5Kl7Mn9Op2Qr4St6Uv8", "clitr_SECRETSUITE_t2_refresh_Wx3Yz5Ab7Cd9Ef2Gh4Ij6Kl8"),
    "controller": ("cmdop_SECRETSUITE_ctl_access_Mn3Op5Qr7St9Uv2Wx4Yz6Ab8", "clitr_SECRETSUITE_ctl_refresh_Cd3Ef5Gh7Ij9Kl2Mn4Op6Qr8"),
}
SEED_SECRETS = [KEY_A, KEY_LAB, LOCAL_KEY] + [secret for pair in TOKENS.values() for secret in pair]


def machine(fleet: str, number: int, name: str) -> dict:
    return {"id": "m-sec-%s-%02d" % (fleet[-4:], number), "workspace": fleet, "name": name, "hostname": "%s.example.invalid" % name,
            "local_ips": ["10.9.0.%d" % number]}


SEED = {
    "users": [{"id": ALICE, "email": "alice@example.com"}],
    "fleets": [
        {"id": TEAM_A, "name": "Team A", "slug": "team-a", "members": [ALICE], "api_keys": [KEY_A]},
        {"id": LAB, "name": "Lab", "slug": "lab", "members": [ALICE], "api_keys": [KEY_LAB]},
        {"id": STAGING, "name": "Staging", "slug": "staging", "members": [ALICE], "api_keys": []},
    ],
    "machines": [machine(TEAM_A, 1, "web-1"), machine(TEAM_A, 2, "web-2"), machine(LAB, 1, "lab-1"), machine(STAGING, 1, "stg-1")],
    "tokens": [{"access_token": access, "refresh_token": refresh, "user": ALICE, "expires_in": 36000} for access, refresh in TOKENS.values()],
}
# The targets' fleet file: an API-key-only fleet and a synced one with its key. A sync adds Lab and Staging (a change: a backup).
TARGET_FLEETS = json.dumps({"active": "home", "workspaces": [
    {"name": "home", "api_key": LOCAL_KEY},
    {"name": "team-a", "api_key": KEY_A, "remote_id": TEAM_A, "remote_name": "Team A"},
]}, indent=2)
# The controller's fleet file, for the inventory's default fleets_from: file. Two fleets by key, one by the OAuth token.
CONTROLLER_FLEETS = json.dumps({"active": "team-a", "workspaces": [
    {"name": "team-a", "api_key": KEY_A, "remote_id": TEAM_A, "remote_name": "Team A"},
    {"name": "lab", "api_key": KEY_LAB, "remote_id": LAB, "remote_name": "Lab"},
    {"name": "staging", "api_key": "", "remote_id": STAGING, "remote_name": "Staging"},
]}, indent=2)


@pytest.fixture
def emulator_seed() -> dict:
    return SEED


TOKEN_PATH = "/api/system/oauth/token/"


def echo_faults(status: int, who: str) -> t.List[dict]:
    """Every API answer an error whose body echoes back what the request carried, as a careless server or proxy would:
    the bearer token, the API keys, and, from the token endpoint, the refresh token."""
    access, refresh = TOKENS[who]
    body = json.dumps({"detail": "bad header: Bearer %s" % access, "headers": {"Authorization": "Bearer %s" % access},
                       "api_keys": ["Bearer %s" % key for key in (KEY_A, KEY_LAB, LOCAL_KEY)]})
    refused = json.dumps({"error": "invalid_grant", "error_description": "refresh_token=%s with Bearer %s refused" % (refresh, access)})
    faults = [{"path": "/api/", "status": status, "body": body, "count": 500}]
    if status == 401:  # a 401 makes the client refresh: the token endpoint echoes the refresh token in its refusal
        faults.insert(0, {"path": TOKEN_PATH, "status": 400, "body": refused, "count": 500})
    return faults


def all_secrets(emulator: t.Any) -> t.List[str]:
    """Every secret the emulator knows (seeded, issued by a refresh) and the key only the fleet file holds."""
    state = emulator.admin("GET", "state")
    found = set(SEED_SECRETS)
    for token in state["tokens"]:
        found.update(value for key, value in token.items() if key in ("access_token", "refresh_token") and value)
    for fleet in state["fleets"]:
        found.update(fleet.get("api_keys") or [])
    assert len(found) >= len(SEED_SECRETS)
    return sorted(found)


class Evidence:
    """What a case collects: every output, every folder to search, the files left out (and why)."""

    def __init__(self) -> None:
        self.texts: t.List[t.Tuple[str, str]] = []
        self.folders: t.List[Path] = []
        self.excluded: t.Set[Path] = set()
        self.backups: t.Dict[Path, bytes] = {}  # a backup -> the fleet file's bytes it must equal

    def add(self, label: str, *results: t.Any) -> None:
        for number, result in enumerate(results):
            self.texts.append(("%s[%d].stdout" % (label, number), result.stdout))
            self.texts.append(("%s[%d].stderr" % (label, number), result.stderr))

    def check(self, secrets: t.Sequence[str]) -> int:
        """Asserts no secret in any text, file name or file (but the excluded ones); returns how many files were read."""
        leaks = []
        for label, text in self.texts:
            leaks += ["%s holds %s" % (label, secret) for secret in secrets if secret in text]
        read = 0
        for folder in self.folders:
            for root, dirs, files in os.walk(folder):
                for name in dirs + files:
                    leaks += ["the name %s/%s holds %s" % (root, name, secret) for secret in secrets if secret in name]
                for name in files:
                    path = Path(root) / name
                    if path in self.excluded or path.is_symlink() or not path.is_file():
                        continue
                    data = path.read_bytes()
                    read += 1
                    if path in self.backups:
                        assert data == self.backups[path], "the backup %s is not the fleet file as it was" % path
                        assert stat.S_IMODE(path.stat().st_mode) == 0o600, "the backup %s is not private" % path
                        data = data.replace(self.backups[path], b"")  # its API keys are the fleet file's own
                    leaks += ["%s holds %s" % (path, secret) for secret in secrets if secret.encode() in data]
        assert not leaks, "\n".join(leaks)
        return read


# ---- the modules: sync and fleet_info over SSH ----------------------------------------------------------------------


@dataclasses.dataclass
class ModuleRun:
    name: str
    tried: str
    check: bool = False
    diff: bool = False
    expired: bool = False  # the access tokens are expired: each module refreshes (and the pair rotates) first
    faults: t.List[dict] = dataclasses.field(default_factory=list)
    fails: bool = False
    hosts: t.Tuple[str, ...] = ("t1", "t2")  # an echo is of one host's credentials: one host


MODULE_RUNS = [
    ModuleRun("vvvv-diff", "sync (backup: true) and fleet_info (machines: true) on two hosts at -vvvv --diff, ANSIBLE_LOG_PATH and "
              "ANSIBLE_KEEP_REMOTE_FILES set", diff=True),
    ModuleRun("check", "sync and fleet_info at -vvvv --check --diff", check=True, diff=True),
    ModuleRun("refresh", "sync and fleet_info at -vvvv --diff with expired access tokens: a refresh, a rotated pair saved", diff=True,
              expired=True),
    ModuleRun("echo-401", "sync and fleet_info: every API answer a 401 whose body echoes the bearer token and API keys, then the refresh "
              "refused with a body echoing the refresh token",
              diff=True, faults=echo_faults(401, "t1"), fails=True, hosts=("t1",)),
    ModuleRun("echo-500", "sync and fleet_info: every API answer a 500 whose body echoes the bearer token and API keys",
              diff=True, faults=echo_faults(500, "t1"), fails=True, hosts=("t1",)),
]
MODULE_HOLDS = ("no token or API key in stdout, stderr, the log, the backup (the fleet file as it was, mode 0600), ~/.cmdop, "
                "the remote tmp or ANSIBLE_LOCAL_TEMP; only the token file and the fleet file hold them")


def module_play(api: dict, hosts: t.Sequence[str]) -> list:
    common = dict(api, retries=1)
    return [{"hosts": ",".join(hosts), "gather_facts": False, "tasks": [
        {"name": "sync", "cmdop.fleet.sync": dict(common, backup=True), "ignore_errors": True},
        {"name": "info", "cmdop.fleet.fleet_info": dict(common, machines=True), "register": "info", "ignore_errors": True},
        {"name": "show", "ansible.builtin.debug": {"var": "info"}},
    ]}]


@pytest.mark.parametrize("case", [pytest.param(case, id=case.name, marks=pytest.mark.case(AREA, case.tried, MODULE_HOLDS))
                                  for case in MODULE_RUNS])
def test_the_modules_never_show_a_secret(case: ModuleRun, emulator, targets, inventory, run_playbook, api, tmp_path):
    evidence = Evidence()
    for host in case.hosts:
        access, refresh = TOKENS[host]
        token = {"access_token": access, "refresh_token": refresh, "token_type": "Bearer", "user_id": ALICE, "expires_at": time.time() + 36000}
        if case.expired:
            emulator.admin("POST", "tokens/expire", {"access_token": access})
            token["expires_at"] = time.time() - 10
        evidence.excluded.add(write_as(targets, host, TOKEN_FILE, json.dumps(token, indent=2)))
        evidence.excluded.add(write_as(targets, host, FLEET_FILE, TARGET_FLEETS))
        evidence.folders.append(targets.home(host))
    for fault in case.faults:
        emulator.admin("POST", "faults", fault)
    log = tmp_path / "logs" / "ansible.log"
    log.parent.mkdir()
    env = {"ANSIBLE_LOG_PATH": str(log), "ANSIBLE_KEEP_REMOTE_FILES": "1"}
    result = run_playbook(module_play(api, case.hosts), inventory, check=case.check, diff=case.diff, verbosity=4, env=env, timeout=300)
    evidence.add(case.name, result)
    evidence.folders.append(tmp_path / "ansible")  # ANSIBLE_LOCAL_TEMP, the playbooks, the harness's results
    evidence.folders.append(log.parent)
    assert result.rc == 0, result.describe()  # ignore_errors: the play goes on to print what fleet_info returned
    assert log.stat().st_size > 0
    unmasked: t.List[str] = []
    for host in case.hosts:
        sync, info = result.task("sync", host), result.task("info", host)
        if case.fails:
            assert result.status("sync", host) == "failed" and result.status("info", host) == "failed", result.describe()
            # The server's echo is shown, masked by the scrub (checked after the search, so a leak is named first).
            unmasked += [task["msg"] for task in (sync, info) if "<secret>" not in task["msg"]]
        else:
            assert result.status("sync", host) == "changed" and result.status("info", host) == "ok", result.describe()
            assert len(info["machines"]) == len(SEED["machines"])
            if not case.check:
                backup = Path(sync["backup_file"])
                assert backup.parent == fleet_path(targets, host).parent
                evidence.backups[backup] = TARGET_FLEETS.encode()
        saved = json.loads((targets.home(host) / TOKEN_FILE).read_text(encoding="utf-8"))
        assert (saved["access_token"] != TOKENS[host][0]) is case.expired, saved  # a refresh happened exactly when it had to
    assert not case.check or not evidence.backups
    read = evidence.check(all_secrets(emulator))
    assert read > 3  # the search read files: the remote tmp kept, the log, the results
    assert not unmasked, unmasked


# ---- the inventory: ansible-inventory on the controller ------------------------------------------------------------


@dataclasses.dataclass
class InventoryRun:
    name: str
    tried: str
    fleets_from: str
    expired: bool = False
    faults: t.List[dict] = dataclasses.field(default_factory=list)
    fails: bool = False


INVENTORY_RUNS = [
    InventoryRun("api", "ansible-inventory --list and --graph at -vvvv, fleets_from: api, cache on (jsonfile), ANSIBLE_LOG_PATH, twice "
                 "(a miss, then a hit)", "api"),
    InventoryRun("file", "ansible-inventory --list and --graph at -vvvv, cache on, ANSIBLE_LOG_PATH, the default fleets_from: file with "
                 "API keys in the fleet file", "file"),
    InventoryRun("refresh", "ansible-inventory as above, fleets_from: file, with an expired access token: a refresh, a rotated pair saved",
                 "file", expired=True),
    InventoryRun("echo-401", "ansible-inventory: every API answer a 401 echoing the bearer token and API keys, the refresh refused echoing "
                 "the refresh token; fleets_from: api and file, on_error fail and warn",
                 "both", faults=echo_faults(401, "controller"), fails=True),
    InventoryRun("echo-500", "ansible-inventory: every API answer a 500 echoing the bearer token and API keys; fleets_from: api and file, "
                 "on_error fail and warn",
                 "both", faults=echo_faults(500, "controller"), fails=True),
]
INVENTORY_HOLDS = ("no token or API key in stdout, stderr, the log, the cache folder (names and content) or ANSIBLE_LOCAL_TEMP; "
                   "only the token file and the fleet file hold them")


def controller_home(tmp_path: Path, expired: bool, emulator: t.Any, evidence: Evidence) -> Path:
    home = tmp_path / "controller-home"
    (home / ".cmdop").mkdir(parents=True, mode=0o700)
    access, refresh = TOKENS["controller"]
    token = {"access_token": access, "refresh_token": refresh, "token_type": "Bearer", "user_id": ALICE, "expires_at": time.time() + 36000}
    if expired:
        emulator.admin("POST", "tokens/expire", {"access_token": access})
        token["expires_at"] = time.time() - 10
    for name, text in (("token_prod.json", json.dumps(token)), ("ssh_workspaces.json", CONTROLLER_FLEETS)):
        path = home / ".cmdop" / name
        path.write_text(text, encoding="utf-8")
        path.chmod(0o600)
        evidence.excluded.add(path)
    return home


@pytest.mark.parametrize("case", [pytest.param(case, id=case.name, marks=pytest.mark.case(AREA, case.tried, INVENTORY_HOLDS))
                                  for case in INVENTORY_RUNS])
def test_the_inventory_never_shows_a_secret(case: InventoryRun, emulator, run_inventory, tmp_path):
    evidence = Evidence()
    home = controller_home(tmp_path, case.expired, emulator, evidence)
    cache = tmp_path / "cache"
    log = tmp_path / "logs" / "ansible.log"
    log.parent.mkdir()
    evidence.folders += [tmp_path / "ansible", cache, log.parent, home]
    env = {"HOME": str(home), "CMDOP_API_URL": emulator.url, "CMDOP_TOKEN": None, "CMDOP_API_KEY": None,
           "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "true", "ANSIBLE_LOG_PATH": str(log)}
    for fault in case.faults:
        emulator.admin("POST", "faults", fault)
    sources = ["api", "file"] if case.fleets_from == "both" else [case.fleets_from]
    unmasked: t.List[str] = []
    for fleets_from in sources:
        for on_error in (("fail", "warn") if case.fails else ("fail",)):
            config = tmp_path / ("%s-%s.cmdop.yml" % (fleets_from, on_error))
            options = {"plugin": "cmdop.fleet.cmdop", "retries": 1, "on_error": on_error, "cache": True,
                       "cache_plugin": "ansible.builtin.jsonfile", "cache_connection": str(cache)}
            if fleets_from == "api":
                options["fleets_from"] = "api"
            config.write_text(yaml.safe_dump(options), encoding="utf-8")
            for round_ in (("miss",) if case.fails else ("miss", "hit")):  # a failure is never cached
                listed = run_inventory(["-i", str(config), "--list", "-vvvv"], env=env)
                graph = run_inventory(["-i", str(config), "--graph", "-vvvv"], env=env)
                evidence.add("%s-%s-%s" % (fleets_from, on_error, round_), listed, graph)
                if case.fails and on_error == "fail":
                    assert listed.rc != 0 and graph.rc != 0, listed.describe()
                    if "<secret>" not in listed.stderr:  # the echo reaches the message masked (checked after the search)
                        unmasked.append(listed.stderr)
                elif not case.fails:
                    assert listed.rc == 0 and graph.rc == 0, (listed.describe(), graph.describe())
                    assert "web-1" in listed.stdout and "lab-1" in graph.stdout, listed.describe()
                # on_error: warn under the echo: each fleet warned about (file), or the fleet list failing (api); both say it
    if not case.fails:
        assert any(cache.iterdir()), "the cache was not written"
    if case.expired:
        saved = json.loads((home / ".cmdop" / "token_prod.json").read_text(encoding="utf-8"))
        assert saved["access_token"] != TOKENS["controller"][0], saved
    assert log.stat().st_size > 0
    evidence.check(all_secrets(emulator))
    assert not unmasked, unmasked


# ---- redirects are never followed -----------------------------------------------------------------------------------


class Capture(http.server.ThreadingHTTPServer):
    """An HTTP server on 127.0.0.1 that records every request's method, path and headers, and answers 200 []."""

    daemon_threads = True

    def __init__(self) -> None:
        self.requests: t.List[dict] = []
        capture = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self) -> None:
                capture.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers.items())})
                body = b"[]"
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _any  # noqa: N815

            def log_message(self, *args: t.Any) -> None:  # quiet
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return "http://127.0.0.1:%d" % self.server_address[1]


@pytest.fixture
def capture() -> t.Iterator[Capture]:
    server = Capture()
    server.thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


REDIRECTS = [301, 302, 303, 307, 308]


@pytest.mark.parametrize("status", [pytest.param(status, id=str(status), marks=pytest.mark.case(
    AREA, "the fleet list (sync) and the fleet and machine lists (inventory, fleets_from api and file) answered %d with a Location on "
    "another host" % status,
    "the sync and the inventory fail saying redirects are not followed; the other host gets no request at all, so never the bearer "
    "token or an API key")) for status in REDIRECTS])
def test_a_redirect_never_carries_a_credential(status, capture, emulator, targets, inventory, run_playbook, run_inventory, api, tmp_path):
    location = {"Location": "%s/steal" % capture.url}
    evidence = Evidence()
    access, refresh = TOKENS["t1"]
    token = {"access_token": access, "refresh_token": refresh, "token_type": "Bearer", "user_id": ALICE, "expires_at": time.time() + 36000}
    write_as(targets, "t1", TOKEN_FILE, json.dumps(token))
    original = write_as(targets, "t1", FLEET_FILE, TARGET_FLEETS).read_bytes()
    emulator.admin("POST", "faults", {"path": FLEETS, "status": status, "headers": location, "body": "{}", "count": 50})
    result = run_playbook(sync_play(dict(api, retries=1), hosts="t1"), inventory)
    evidence.add("sync", result)
    assert result.status("sync", "t1") == "failed", result.describe()
    assert "redirects are not followed" in result.task("sync", "t1")["msg"], result.task("sync", "t1")["msg"]
    assert fleet_path(targets, "t1").read_bytes() == original

    home = controller_home(tmp_path, False, emulator, evidence)
    env = {"HOME": str(home), "CMDOP_API_URL": emulator.url, "CMDOP_TOKEN": None, "CMDOP_API_KEY": None,
           "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "true"}
    emulator.admin("POST", "faults", {"path": MACHINES, "status": status, "headers": location, "body": "{}", "count": 50})
    for fleets_from in ("api", "file"):  # api: the fleet list redirected (the token); file: the machine lists (the API keys too)
        config = tmp_path / ("%s.cmdop.yml" % fleets_from)
        options = {"plugin": "cmdop.fleet.cmdop", "retries": 1}
        if fleets_from == "api":
            options["fleets_from"] = "api"
        config.write_text(yaml.safe_dump(options), encoding="utf-8")
        listed = run_inventory(["-i", str(config), "--list"], env=env)
        evidence.add("inventory-%s" % fleets_from, listed)
        assert listed.rc != 0, listed.describe()
        assert "redirects are not followed" in " ".join(listed.stderr.split()), listed.describe()
    assert capture.requests == [], capture.requests
    assert [item for item in emulator.admin("GET", "requests") if item["path"] == "/steal"] == []
    evidence.check(all_secrets(emulator))
