"""Server faults, through the emulator's admin API: each one against ``cmdop.fleet.sync`` (ansible-playbook over SSH)
and ``cmdop.fleet.cmdop`` (ansible-inventory, failing and with ``on_error: warn``).

What must hold for every fault: the fleet file is byte-for-byte as it was, the module fails with a clear ``msg`` that
names the cause, the inventory fails (or warns) with it too, no traceback is shown, and the run ends in bounded time.
A case whose fault is passing (a 429 with a Retry-After it cannot read, a refresh answer without a refresh token) must
instead succeed.
"""

from __future__ import annotations

import dataclasses
import json
import time
import typing as t
from pathlib import Path

import pytest
import yaml

from cmdop_helpers import ALICE, FLEET_FILE, LOCAL_KEY, TEAM_A, TEAM_A_KEY, TOKEN_FILE, fleet_path, sync_play, write_as

FLEETS = "/api/workspaces/workspaces/"
MACHINES = "/api/machines/machines/"
TOKEN = "/api/system/oauth/token/"
AREA = "Server faults"
# The file a sync must leave as it is: an API-key-only fleet, a known fleet, the active pointer, unknown keys.
FILE_TEXT = json.dumps({
    "active": "home", "theme": "dark",
    "workspaces": [{"name": "home", "api_key": LOCAL_KEY, "note": {"kept": True}},
                   {"name": "team-a", "api_key": TEAM_A_KEY, "remote_id": TEAM_A, "remote_name": "Team A"}],
}, indent=4)
ENOUGH = 20  # a fault repeated more often than any retry takes it


def page(results: list, count: t.Optional[int] = None, number: int = 1, pages: int = 1, page_size: int = 200, **extra: t.Any) -> str:
    body = {"count": len(results) if count is None else count, "page": number, "pages": pages, "page_size": page_size,
            "has_next": number < pages, "has_previous": number > 1, "results": results}
    body.update(extra)
    return json.dumps(body)


def a_machine(number: int) -> dict:
    return {"id": "m-rel-%03d" % number, "workspace": TEAM_A, "name": "rel-%d" % number}


@dataclasses.dataclass
class Fault:
    """One case: the faults queued, the words the module's and the inventory's messages must hold."""

    name: str
    tried: str
    faults: t.List[dict]
    said: t.Optional[str]  # in the sync's msg; None: the sync does not list fleets (machines only) and is not run
    inventory_said: t.Optional[str] = None  # default: said
    args: t.Dict[str, t.Any] = dataclasses.field(default_factory=dict)  # module (and inventory) options
    token: str = "valid"  # valid | expired (its access token refused: a refresh comes first)
    passing: bool = False  # the fault is one a client must get through: the sync succeeds
    bound: float = 45.0  # seconds the sync may take at most

    @property
    def holds(self) -> str:
        if self.passing:
            return "retried or taken as it is: the sync succeeds, the file keeps every local entry"
        who = "sync and inventory fail" if self.said else "fleet_info and the inventory fail"
        return "file byte-for-byte unchanged; %s (on_error fail and warn) saying %r; no traceback" % (who, self.said or self.inventory_said)


CASES = [
    Fault("401", "401 on the fleet list, even after a refresh", [{"path": FLEETS, "status": 401, "count": ENOUGH}], "answered 401 Unauthorized"),
    Fault("403", "403 on the fleet list", [{"path": FLEETS, "status": 403, "count": ENOUGH}], "answered 403 Forbidden"),
    Fault("404", "404 on the fleet list", [{"path": FLEETS, "status": 404, "count": ENOUGH}], "answered 404 Not Found"),
    Fault("429-storm", "429 storm with Retry-After: 1", [{"path": FLEETS, "status": 429, "retry_after": 1, "count": ENOUGH}],
          "answered 429", args={"retries": 2}),
    Fault("429-non-numeric", "429 with a Retry-After that is not a number ('soon')",
          [{"path": FLEETS, "status": 429, "headers": {"Retry-After": "soon"}, "count": 1}], None, passing=True),
    Fault("429-non-numeric-storm", "429 storm with a Retry-After that is not a number",
          [{"path": FLEETS, "status": 429, "headers": {"Retry-After": "soon"}, "count": ENOUGH}], "answered 429"),
    Fault("500", "500 on every try", [{"path": FLEETS, "status": 500, "count": ENOUGH}], "answered 500"),
    Fault("502", "502 on every try", [{"path": FLEETS, "status": 502, "count": ENOUGH}], "answered 502"),
    Fault("503", "503 on every try", [{"path": FLEETS, "status": 503, "count": ENOUGH}], "answered 503"),
    Fault("slow", "an answer slower than timeout (3 s against 1 s)", [{"path": FLEETS, "delay": 3, "count": ENOUGH}],
          "timed out after 1.0 seconds", args={"timeout": 1, "retries": 1}),
    Fault("refused", "connection refused (nothing listens)", [], "connection refused", args={"api_url": "http://127.0.0.1:9"}),
    Fault("reset", "the connection reset mid-body", [{"path": "/api/", "cut_after": 12, "count": ENOUGH}], "broke while its answer was read"),
    Fault("not-json", "malformed JSON", [{"path": "/api/", "status": 200, "body": '[{"id": ', "count": ENOUGH}], "a body that is not JSON"),
    Fault("html", "an HTML error page (a proxy's 502)",
          [{"path": "/api/", "status": 502, "body": "<html><body><h1>502 Bad Gateway</h1></body></html>", "content_type": "text/html",
            "count": ENOUGH}], "answered 502"),
    Fault("html-200", "an HTML page with 200 (a captive portal)",
          [{"path": "/api/", "status": 200, "body": "<html>Sign in to the Wi-Fi</html>", "content_type": "text/html", "count": ENOUGH}],
          "a body that is not JSON"),
    Fault("deep-json", "JSON nested 100,000 deep", [{"path": "/api/", "status": 200, "body": "[" * 100000 + "]" * 100000, "count": ENOUGH}],
          "nested too deeply"),
    Fault("wrong-shape", "well-formed JSON of the wrong shape (an object, no results)",
          [{"path": FLEETS, "status": 200, "body": '{"detail": "ok"}', "count": ENOUGH}], "must be of type array"),
    Fault("not-uuid", "fleet ids that are not UUIDs",
          [{"path": FLEETS, "status": 200, "body": '[{"id": "1", "name": "One"}, {"id": "2", "name": "Two"}]', "count": ENOUGH}],
          "].id is not a fleet id (a UUID)"),
    Fault("same-page", "fleet pages whose next link is the page itself",
          [{"path": FLEETS, "status": 200, "body": json.dumps({"count": 9, "next": "%s?page=1" % FLEETS, "results": []}), "count": ENOUGH}],
          "links to a page already read"),
    Fault("fleet-page-fails", "the fleet list's second page failing half-way",
          [{"path": FLEETS, "skip": 1, "status": 500, "count": ENOUGH}], "answered 500", args={"fleets_page_size": 1}),
    Fault("count-too-large", "a machine count larger than the pages hold",
          [{"path": MACHINES, "status": 200, "body": page([a_machine(1)], count=5), "count": ENOUGH}], None,
          inventory_said="the machine list changed while it was read, twice"),
    Fault("pages-forever", "has_next forever: pages 9999 for a count of 10",
          [{"path": MACHINES, "status": 200, "body": page([], count=10, pages=9999), "count": ENOUGH}], None,
          inventory_said="claims 9999 pages for 10 machines"),
    Fault("page-size-ignored", "page_size ignored: 300 machines on a page of 200",
          [{"path": MACHINES, "status": 200, "body": page([a_machine(n) for n in range(300)]), "count": ENOUGH}], None,
          inventory_said="holds 300 machines, more than its page size of 200"),
    Fault("same-page-again", "the same machine page answered for every page number",
          [{"path": MACHINES, "status": 200, "body": page([a_machine(n) for n in range(200)], count=400, pages=2), "count": ENOUGH}], None,
          inventory_said="answered page 1 when asked for page 2"),
    Fault("machine-twice", "a machine on two pages",
          [{"path": MACHINES, "status": 200, "body": page([a_machine(n) for n in range(2)], count=4, pages=2, page_size=2), "count": 1},
           {"path": MACHINES, "status": 200, "body": page([a_machine(n) for n in range(1, 3)], count=4, number=2, pages=2, page_size=2),
            "count": 1}] * 2, None, inventory_said="the machine list changed while it was read, twice"),
    Fault("machine-page-fails", "the machine list's second page failing half-way",
          [{"path": MACHINES, "status": 200, "body": page([a_machine(n) for n in range(2)], count=4, pages=2, page_size=2), "count": 1},
           {"path": MACHINES, "status": 500, "count": ENOUGH}], None, inventory_said="answered 500"),
    Fault("refresh-refused", "a refused refresh (invalid_grant)",
          [{"path": TOKEN, "status": 400, "body": '{"error": "invalid_grant"}', "count": ENOUGH}], "invalid_grant", token="expired"),
    Fault("refresh-5xx", "a 502 from the token endpoint while refreshing", [{"path": TOKEN, "status": 502, "count": ENOUGH}],
          "answered 502 while refreshing the token", token="expired"),
    Fault("refresh-no-refresh-token", "a refresh answer without a refresh token", [], None, token="expired", passing=True),
    Fault("refresh-then-refused", "a refresh that succeeds, then a listing that is refused",
          [{"path": FLEETS, "status": 403, "count": ENOUGH}], "answered 403 Forbidden", token="expired"),
]


def controller_home(tmp_path: Path, token: dict) -> Path:
    home = tmp_path / "controller-home"
    (home / ".cmdop").mkdir(parents=True, mode=0o700, exist_ok=True)
    (home / ".cmdop" / "token_prod.json").write_text(json.dumps(token), encoding="utf-8")
    (home / ".cmdop" / "token_prod.json").chmod(0o600)
    return home


def no_traceback(*texts: str) -> None:
    for text in texts:
        assert "Traceback" not in text and "module_stderr" not in text, text[-3000:]


def queue(emulator: t.Any, case: Fault) -> None:
    emulator.admin("DELETE", "faults")
    for fault in case.faults:
        emulator.admin("POST", "faults", fault)


def fresh_token(emulator: t.Any, case: Fault) -> dict:
    """A token as cmdop login leaves it; with ``token: expired`` it is past its ``expires_at`` (and the server refuses
    it), so a refresh comes before any listing."""
    token = emulator.admin("POST", "tokens", {"user": ALICE, "expires_in": 3600})
    token["expires_at"] = time.time() + 3600
    if case.token == "expired":
        emulator.admin("POST", "tokens/expire", {"access_token": token["access_token"]})
        token["expires_at"] = time.time() - 60
    return token


def refresh_answer_without_refresh_token(emulator: t.Any) -> dict:
    """The token endpoint's answer, as a fault: a real new access token, and no refresh token."""
    new = emulator.admin("POST", "tokens", {"user": ALICE, "expires_in": 3600})
    body = json.dumps({"access_token": new["access_token"], "token_type": "Bearer", "expires_in": 3600})
    emulator.admin("POST", "faults", {"path": TOKEN, "status": 200, "body": body, "count": 1})
    return new


@pytest.mark.parametrize("case", [pytest.param(case, id=case.name, marks=pytest.mark.case(AREA, case.tried, case.holds)) for case in CASES])
def test_a_server_fault(case: Fault, emulator, targets, inventory, run_playbook, run_inventory, api, tmp_path):
    if case.args.get("fleets_page_size"):
        emulator.admin("POST", "settings", {"fleets_page_size": case.args["fleets_page_size"]})
    module_args = dict(api, **{key: value for key, value in case.args.items() if key != "fleets_page_size"})

    # ---- the module: cmdop.fleet.sync on t1 ----
    if case.said is not None or case.passing:
        token = fresh_token(emulator, case)
        write_as(targets, "t1", TOKEN_FILE, json.dumps(token))
        original = write_as(targets, "t1", FLEET_FILE, FILE_TEXT).read_bytes()
        queue(emulator, case)
        new = refresh_answer_without_refresh_token(emulator) if case.name == "refresh-no-refresh-token" else None
        started = time.monotonic()
        result = run_playbook(sync_play(module_args, hosts="t1"), inventory, timeout=case.bound + 60)
        elapsed = time.monotonic() - started
        out = result.task("sync", "t1")
        no_traceback(result.stdout, result.stderr, json.dumps(out))
        assert elapsed < case.bound, (elapsed, result.describe())
        after = fleet_path(targets, "t1").read_bytes()
        saved = json.loads((targets.home("t1") / TOKEN_FILE).read_text(encoding="utf-8"))
        if case.passing:
            assert result.rc == 0, result.describe()
            document, before = json.loads(after), json.loads(FILE_TEXT)
            assert document["active"] == "home" and document["theme"] == "dark"
            assert document["workspaces"][0] == before["workspaces"][0]  # the API-key-only fleet
            assert document["workspaces"][1]["api_key"] == TEAM_A_KEY
            if new is not None:  # no new refresh token: the old one is kept, with the new access token
                assert saved["access_token"] == new["access_token"] and saved["refresh_token"] == token["refresh_token"]
        else:
            assert result.status("sync", "t1") == "failed", result.describe()
            assert out["msg"].startswith("sync: ") and case.said in out["msg"], out["msg"]
            assert after == original
            if case.name == "refresh-then-refused":  # the rotated pair is saved: the old refresh token is dead
                assert saved["refresh_token"] != token["refresh_token"]
            elif case.token == "expired":
                assert saved["refresh_token"] == token["refresh_token"]
        emulator.admin("DELETE", "faults")

    # ---- the machine listings: cmdop.fleet.fleet_info with machines on t1 ----
    if case.said is None and not case.passing:
        token = fresh_token(emulator, case)
        queue(emulator, case)
        result = run_playbook([{"hosts": "t1", "gather_facts": False, "tasks": [{"name": "info", "cmdop.fleet.fleet_info": dict(
            module_args, token=token["access_token"], machines=True)}]}], inventory)
        out = result.task("info", "t1")
        no_traceback(result.stdout, result.stderr, json.dumps(out))
        assert result.status("info", "t1") == "failed" and case.inventory_said in out["msg"], result.describe()
        assert "machines" not in out  # no partial listing

    # ---- the inventory: fails, with on_error fail and warn ----
    if case.passing:
        return
    said = case.inventory_said or case.said
    home = controller_home(tmp_path, fresh_token(emulator, case))
    options = {"plugin": "cmdop.fleet.cmdop", "fleets_from": "api", "retries": case.args.get("retries", 2),
               "timeout": case.args.get("timeout", 10)}
    env = {"HOME": str(home), "CMDOP_API_URL": case.args.get("api_url", emulator.url), "CMDOP_TOKEN": None, "CMDOP_API_KEY": None,
           "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "true"}
    for on_error in ("fail", "warn"):
        config = tmp_path / ("%s.cmdop.yml" % on_error)
        config.write_text(yaml.safe_dump(dict(options, on_error=on_error)), encoding="utf-8")
        queue(emulator, case)
        started = time.monotonic()
        ran = run_inventory(["-i", str(config), "--list"], env=env)
        elapsed = time.monotonic() - started
        no_traceback(ran.stdout, ran.stderr)
        assert elapsed < case.bound, (elapsed, ran.describe())
        assert said in " ".join(ran.stderr.split()), ran.describe()
        # on_error: warn leaves out a fleet that failed and shows the others; here nothing could be listed (one OAuth
        # listing for all), so it fails as documented: never an empty or partial inventory.
        assert ran.rc != 0 and ran.stdout.strip() == "", ran.describe()
