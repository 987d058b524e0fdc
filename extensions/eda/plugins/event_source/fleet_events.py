# -*- coding: utf-8 -*-
# Copyright (c) cmdop.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""ansible-rulebook event source ``cmdop.fleet.fleet_events``: one event per change of the CMDOP fleets and machines watched."""

from __future__ import annotations

DOCUMENTATION = r"""
---
short_description: Events when CMDOP fleets and their machines change
description:
  - Polls the fleets and machines the inventory plugin C(cmdop.fleet.cmdop) would show, with the same options and rules (it calls
    the inventory's own core), and puts one event on the queue per change.
  - "Event types: C(fleet_added), C(fleet_renamed), C(fleet_left), C(machine_joined), C(machine_left), C(machine_online),
    C(machine_offline) (after O(settle) polls), C(machine_changed) (with each changed field's old and new value) and C(snapshot)
    (once at start)."
  - "Each event is C({cmdop: {type, fleet: {id, name, local_name}, machine: {cmdop_* host variables}, host, previous, changed},
    meta: {hosts, uuid}}). C(host) and C(meta.hosts) are the machine's inventory host name; C(meta.uuid) is the same for the same
    change seen twice from the same saved state."
  - The last state seen is kept in O(state_file), so what changed while the source was down is emitted once on start.
  - HTTP goes through the collection's client in a worker thread. Faults are retried with back-off and jitter up to O(interval);
    the source stops only for a configuration error at start or an OAuth token the server refuses after a refresh.
  - ansible-rulebook needs Python 3.9 or later and a Java 17 runtime on the controller.
options:
  fleets_from:
    description: Where the fleets come from, as for the inventory plugin (V(file) or V(api)).
    type: str
    choices: [file, api]
    default: file
  path:
    description: The fleet file, with O(fleets_from=file).
    type: str
    default: ~/.cmdop/ssh_workspaces.json
  mode:
    description: The CMDOP server (V(prod) or V(dev)); selects the default O(api_url) and O(token_file).
    type: str
    choices: [prod, dev]
    default: prod
  dev_server:
    description:
      - The host (and port) whose fleet file entries count as V(dev)'s, besides C(dev.cmdop.com) and C(api-dev.cmdop.com),
        as the inventory plugin's option; give the O(cmdop.fleet.sync#module:dev_server) of the sync that wrote them.
    type: str
    default: dev.cmdop.com:443
  api_url:
    description:
      - Base URL of the CMDOP API; defaults to E(CMDOP_API_URL), E(CMDOP_API_BASE_URL), then the mode's server.
      - A URL with user info (V(https://user:password@host)) is refused, as by the modules and the inventory plugin.
    type: str
  token:
    description: An OAuth access token (not refreshed); defaults to E(CMDOP_TOKEN), then O(token_file).
    type: str
  token_file:
    description: The token file of C(cmdop login); refreshed under the collection's lock when it has a refresh token.
    type: str
  api_key:
    description: A fleet API key, used only when there is nothing else to list fleets with; defaults to E(CMDOP_API_KEY).
    type: str
  include_inactive:
    description: Whether fleets marked inactive in the fleet file are watched.
    type: bool
    default: false
  hostnames:
    description: The machine fields that name hosts, in order, as for the inventory plugin.
    type: list
    elements: str
    default: [name, hostname, id]
  interval:
    description: Seconds between polls.
    type: float
    default: 60
  settle:
    description: How many consecutive polls a changed online state must be seen before C(machine_online) or C(machine_offline).
    type: int
    default: 2
  events:
    description: The event types to emit; by default all.
    type: list
    elements: str
  initial:
    description:
      - What a start emits besides what changed since the saved state. V(snapshot) emits one C(snapshot) event; V(none) nothing;
        V(events) on a first start (no state) emits C(fleet_added) and C(machine_joined) for everything watched.
    type: str
    choices: [snapshot, none, events]
    default: snapshot
  max_polls:
    description: Stop after this many polls (tried, failed ones included); 0 runs until stopped.
    type: int
    default: 0
  state_file:
    description:
      - Where the last state seen is kept (mode 0600, no secret). Defaults to a file under E(XDG_CACHE_HOME) (C(~/.cache))
        named after the API URL and the account, as the inventory cache is keyed. Two sources must not share one.
    type: str
  validate_certs:
    description: Whether the server's TLS certificate is checked.
    type: bool
    default: true
  timeout:
    description: Seconds to wait for one answer, more than 0 and at most 3600.
    type: float
    default: 30
  retries:
    description: How often the client retries one request (connection errors, 429, 5xx) before the poll counts as failed, from 0 to 100.
    type: int
    default: 4
"""

EXAMPLES = r"""
- name: Provision machines that join a fleet
  hosts: all
  sources:
    - cmdop.fleet.fleet_events:
        fleets_from: api
        interval: 60
        events: [machine_joined]
  rules:
    - name: Provision the new machine
      condition: event.cmdop.type == "machine_joined"
      action:
        run_playbook:
          name: provision.yml
"""

# pylint: disable=wrong-import-position  # the documentation strings come first, as ansible-rulebook's sources have them
import asyncio
import json
import logging
import os
import random
import sys
import time
import typing as t


def _importable() -> None:
    """ansible-rulebook runs this file with runpy, outside ansible's collection loader: the collections root this file is
    in (``<root>/ansible_collections/cmdop/fleet/extensions/eda/plugins/event_source``) goes on ``sys.path``."""
    try:
        __import__("ansible_collections.cmdop.fleet.plugins.plugin_utils._listing")
    except ImportError:
        root = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), *[os.pardir] * 7))
        if root not in sys.path:
            sys.path.insert(0, root)


_importable()

from ansible_collections.cmdop.fleet.plugins.module_utils import _fleet_file, _modes  # noqa: E402
from ansible_collections.cmdop.fleet.plugins.module_utils._api import (  # noqa: E402
    OAUTH, CmdopError, Credential, UnauthorizedError, check_api_numbers, check_no_user_info, scrub,
)
from ansible_collections.cmdop.fleet.plugins.module_utils._events import (  # noqa: E402
    EVENT_TYPES,
    Fleet,
    Listing,
    Machine,
    detect,
    empty_state,
    fleet_key,
    first_state,
    is_state,
    snapshot,
)
from ansible_collections.cmdop.fleet.plugins.module_utils._files import FileError, ensure_folder, read_text, write_atomically  # noqa: E402
from ansible_collections.cmdop.fleet.plugins.module_utils._inventory import (  # noqa: E402
    DEFAULT_HOSTNAMES,
    HOSTNAME_SOURCES,
    FleetSpec,
    Labelled,
    Plan,
    fingerprint,
    fleets_to_show,
    is_online,
    judge,
    layout,
)
from ansible_collections.cmdop.fleet.plugins.module_utils._modes import normalize_url  # noqa: E402
from ansible_collections.cmdop.fleet.plugins.module_utils._token import TokenFileError  # noqa: E402
from ansible_collections.cmdop.fleet.plugins.plugin_utils._listing import Lister, Wording, fetch, make_client  # noqa: E402

LOG = logging.getLogger("cmdop.fleet.fleet_events")
STATE_MODE = 0o600
FIRST_BACKOFF = 1.0  # seconds before the first retry of a failed poll; doubled each time, up to interval
OPTIONS = {
    "fleets_from": "file", "path": _modes.DEFAULT_FLEET_FILE, "mode": "prod", "dev_server": _modes.DEFAULT_DEV_SERVER, "api_url": None,
    "token": None, "token_file": None, "api_key": None, "include_inactive": False, "hostnames": list(DEFAULT_HOSTNAMES), "interval": 60.0,
    "settle": 2, "events": None, "initial": "snapshot", "max_polls": 0, "state_file": None, "validate_certs": True, "timeout": 30.0, "retries": 4,
}
MAX_WORKERS = 8
PAGE_SIZE = 200


class ConfigError(Exception):
    """A configuration the source cannot start with. The message holds no secret."""


class RefusedError(Exception):
    """The server refuses the OAuth credential, even after a refresh: only a new login helps."""


class PollError(Exception):
    """One poll failed as a whole (the fleet list, the single key's listing): retried."""


WORDING = Wording(
    no_credential="fleets_from=api needs an OAuth token (token, CMDOP_TOKEN or the token file) or an api_key; %(hint)s",
    no_fleet_file="there is no fleet file %(path)s: sync it first (cmdop login, or cmdop.fleet.sync), or use fleets_from: api",
    no_oauth="token, CMDOP_TOKEN, or the token file",
    no_token_file="token_file %(token_file)s does not exist; check the path, or %(hint)s",
    config_error=ConfigError,
    token_file_error=ConfigError,
)


def _group_name(name: str) -> str:
    """Group names as ansible-core makes them safe (the inventory's ``sanitize``)."""
    from ansible.inventory.group import to_safe_group_name  # pylint: disable=import-outside-toplevel

    return to_safe_group_name(name, silent=True)  # the inventory warns about its groups; the events have none


def options(args: t.Mapping[str, t.Any]) -> t.Dict[str, t.Any]:
    """The source's options: the defaults, the environment the inventory plugin also reads, then ``args``; checked."""
    unknown = sorted(name for name in args if name not in OPTIONS and not name.startswith("eda_"))
    if unknown:
        raise ConfigError("unknown option(s) %s; the options are %s" % (", ".join(unknown), ", ".join(sorted(OPTIONS))))
    result = dict(OPTIONS, hostnames=list(DEFAULT_HOSTNAMES))
    for name, variables in (("api_url", _modes.API_URL_ENV), ("token", ("CMDOP_TOKEN",)), ("api_key", ("CMDOP_API_KEY",))):
        result[name] = next((os.environ[variable] for variable in variables if os.environ.get(variable)), None)
    result.update((name, value) for name, value in args.items() if name in OPTIONS and value is not None)
    for name, kind in (("interval", float), ("timeout", float), ("settle", int), ("max_polls", int), ("retries", int)):
        try:
            result[name] = kind(result[name])
        except (TypeError, ValueError):
            raise ConfigError("%s must be a number" % name) from None
    checks = [
        (result["fleets_from"] in ("file", "api"), "fleets_from must be file or api"),
        (result["mode"] in _modes.MODES, "mode must be one of %s" % ", ".join(_modes.MODES)),
        (result["initial"] in ("snapshot", "none", "events"), "initial must be snapshot, none or events"),
        (result["interval"] > 0, "interval must be more than 0"),
        (result["settle"] >= 1 and result["max_polls"] >= 0, "settle must be at least 1, max_polls at least 0"),
        (isinstance(result["hostnames"], list) and all(name in HOSTNAME_SOURCES for name in result["hostnames"]),
         "hostnames must be a list of %s" % ", ".join(HOSTNAME_SOURCES)),
        (result["events"] is None or (isinstance(result["events"], list) and all(name in EVENT_TYPES for name in result["events"])),
         "events must be a list of %s" % ", ".join(EVENT_TYPES)),
    ]
    try:  # timeout and retries: the bounds the modules and the inventory plugin keep
        check_api_numbers(result.__getitem__)
    except CmdopError as error:
        checks.append((False, str(error)))
    try:
        _modes.check_dev_server(result["dev_server"])
    except ValueError as error:
        checks.append((False, str(error)))
    wrong = [message for holds, message in checks if not holds]
    if wrong:
        raise ConfigError("; ".join(wrong))
    for name in ("include_inactive", "validate_certs"):
        result[name] = result[name] if isinstance(result[name], bool) else str(result[name]).lower() in ("1", "true", "yes", "on")
    try:  # a credential belongs in token, token_file or api_key, never in a URL that logs show
        result["api_url"] = check_no_user_info(_modes.api_url(result["mode"], result["api_url"]))
    except CmdopError as error:
        raise ConfigError(str(error)) from None
    result["path"] = os.path.expanduser(result["path"])
    return result


class Watch:
    """Reads the fleet file and the credentials as the inventory plugin does, lists, and hands ``_events`` a ``Listing``.

    Blocking: called in a worker thread. The policy (which fleets, which credential, names) is ``_inventory``'s.
    """

    def __init__(self, settings: t.Mapping[str, t.Any]) -> None:
        self.settings = settings
        self.secrets: t.List[str] = []
        self.hint = _modes.login_hint(settings["mode"])
        self._client: t.Any = None
        self.lister = Lister(settings.__getitem__, self._secret, self.secrets, settings["api_url"], WORDING, remember_none=False)

    def scrub(self, text: t.Any) -> str:
        return scrub(text, self.secrets, limit=2000)

    # ---- credentials and the plan: _listing's, as the inventory's ----------------------------------------

    def _secret(self, name: str) -> t.Optional[str]:
        value = self.settings[name]
        if not value:
            return None
        self.secrets.append(value)
        return value

    def oauth(self) -> t.Optional[Labelled]:
        """The OAuth credential and its account label (O(token), else the token file), kept across polls: refreshed in place."""
        return self.lister.oauth()

    def plan(self) -> t.Tuple[Plan, t.Dict[str, str]]:
        """The inventory's plan, and the remote ids of the fleet file's fleets (by local name)."""
        plan, document = self.lister.plan()
        return plan, {entry["name"]: entry.get("remote_id") or "" for entry in (document or {}).get("workspaces") or []}

    def account(self) -> str:
        """What the state belongs to, one-way: the API URL, the mode, where the fleets come from, and the account."""
        oauth = self.oauth()
        label = oauth[1] if oauth is not None else ""
        if not label and self.settings["fleets_from"] == "api" and self.settings["api_key"]:
            label = fingerprint("key", normalize_url(self.settings["api_url"]), self.settings["api_key"])
        where = self.settings["path"] if self.settings["fleets_from"] == "file" else ""
        return fingerprint("fleet_events", normalize_url(self.settings["api_url"]), self.settings["mode"], self.settings["fleets_from"], where, label)

    # ---- one poll --------------------------------------------------------------------------------------

    def client(self) -> t.Any:
        if self._client is None:
            self._client = make_client(self.settings["api_url"], self.settings["timeout"], self.settings["validate_certs"], self.settings["retries"],
                                       MAX_WORKERS)
        return self._client

    def fetch(self, plan: Plan) -> dict:
        """The inventory's payload: the fleet list (fleets_from=api) and one listing per credential. A refused OAuth
        credential stops the source; any other failure is recorded in ``failed``, as the inventory records it."""
        return fetch(self.client(), plan, PAGE_SIZE, MAX_WORKERS, self.hint, on_failure=self.refused)

    def refused(self, error: CmdopError, credential: Credential) -> None:
        if isinstance(error, UnauthorizedError) and credential.kind == OAUTH:
            raise RefusedError("the server refuses the OAuth token (%s); %s" % (self.scrub(error), self.hint))

    def poll(self) -> t.Tuple[Listing, t.List[str]]:
        """What the inventory would show now, as a ``Listing``, and the failures of this poll (scrubbed), one line each."""
        plan, remote_ids = self.plan()
        payload = self.fetch(plan)
        where = "the account" if self.settings["fleets_from"] == "api" else self.settings["path"]
        try:
            verdict = judge(plan, payload, "warn", where, self.settings["mode"])
        except CmdopError as exc:
            raise PollError(self.scrub(exc)) from None
        problems = [self.scrub(warning) for warning in verdict.warnings if "left out" in warning]
        shown = fleets_to_show(plan, payload)
        fleets = {spec.name: self._fleet(spec) for spec in shown}
        for name in plan.unlistable:
            fleets[name] = Fleet(key=fleet_key(remote_ids.get(name, ""), name), id=remote_ids.get(name, ""), name="", local_name=name)
        result = layout(verdict.fleets, payload["listings"], sanitize=_group_name, hostnames=self.settings["hostnames"])
        machines = {}
        for host in result.hosts:
            variables = host.variables
            own = [fleets[name].key for name in variables["cmdop_fleets"] if name in fleets]
            home = fleets[variables["cmdop_fleet"]].key if variables["cmdop_fleet"] in fleets else own[0]
            raw = {"is_online": variables.get("cmdop_is_online"), "status": variables.get("cmdop_status")}
            machines[host.machine_id] = Machine(id=host.machine_id, host=host.name, fleet=home, fleets=tuple(own), fields=variables, online=is_online(raw))
        complete = frozenset(fleets[spec.name].key for spec in verdict.fleets)
        return Listing(fleets={fleet.key: fleet for fleet in fleets.values()}, machines=machines, complete=complete), problems

    @staticmethod
    def _fleet(spec: FleetSpec) -> Fleet:
        return Fleet(key=fleet_key(spec.remote_id, spec.name), id=spec.remote_id, name=str(spec.variables.get("fleet_remote_name") or ""),
                     local_name=spec.name)


# ---- the state file ------------------------------------------------------------------------------------------


def state_path(settings: t.Mapping[str, t.Any], account: str) -> str:
    if settings["state_file"]:
        return os.path.expanduser(settings["state_file"])
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "cmdop-fleet", "events-%s.json" % account)


def load_state(path: str, account: str) -> t.Optional[dict]:
    """The saved state, or None (first start). A corrupt file is a warning and a first start; another account's stops."""
    try:
        text = read_text(path)
    except (OSError, UnicodeDecodeError) as exc:
        LOG.warning("cmdop.fleet.fleet_events: the state file %s cannot be read (%s); starting as on a first start", path, type(exc).__name__)
        return None
    if text is None:
        return None
    try:
        state = json.loads(text)
    except ValueError:
        state = None
    if not is_state(state):
        LOG.warning("cmdop.fleet.fleet_events: the state file %s is not a state this source wrote (corrupt?); starting as on a first start", path)
        return None
    if state.get("account") != account:
        raise ConfigError("the state file %s belongs to another account or API URL: give each source its own state_file" % path)
    return state


def save_state(path: str, state: t.Mapping[str, t.Any]) -> None:
    ensure_folder(path)
    write_atomically(path, (json.dumps(state, sort_keys=True, separators=(",", ":")) + "\n").encode("utf-8"), mode=STATE_MODE)


# ---- the loop ------------------------------------------------------------------------------------------------


def backoff(failures: int, interval: float) -> float:
    """Seconds before the next try after ``failures`` failed polls in a row: exponential, with jitter, at most ``interval``."""
    return min(interval, FIRST_BACKOFF * 2 ** max(0, failures - 1)) * random.uniform(0.5, 1.0)


async def main(queue: t.Any, args: t.Dict[str, t.Any]) -> None:
    """ansible-rulebook's entry point: poll until ``max_polls`` (or forever), put each change on ``queue``."""
    try:
        settings = options(args)
        watch = Watch(settings)
        account = await asyncio.to_thread(watch.account)
        path = state_path(settings, account)
        state = await asyncio.to_thread(load_state, path, account)
    except (ConfigError, CmdopError, TokenFileError, _fleet_file.FleetFileError, FileError) as exc:
        raise ConfigError("cmdop.fleet.fleet_events: %s" % scrub(exc, [value for value in (args.get("token"), args.get("api_key")) if value])) from None
    wanted = frozenset(settings["events"] or EVENT_TYPES)
    first = True
    polls = failures = 0
    while not settings["max_polls"] or polls < settings["max_polls"]:
        polls += 1
        try:
            current, problems = await asyncio.to_thread(watch.poll)
        except RefusedError as exc:
            raise RefusedError("cmdop.fleet.fleet_events: %s" % exc) from None
        except (PollError, CmdopError, TokenFileError, _fleet_file.FleetFileError, OSError, ConfigError) as exc:
            failures += 1
            LOG.warning("cmdop.fleet.fleet_events: poll %d failed, next try in a moment: %s", polls, watch.scrub(exc))
            await asyncio.sleep(backoff(failures, settings["interval"]))
            continue
        now = time.time()
        if state is None:
            if settings["initial"] == "events":
                events, state = detect(dict(empty_state(), account=account), current, settings["settle"], now)
            else:
                events, state = [], dict(first_state(current, now), account=account)
        else:
            events, state = detect(state, current, settings["settle"], now)
        if first and settings["initial"] == "snapshot":
            events.append(snapshot(state, current))  # once, after the first poll that worked
        first = False
        for event in events:
            if event["cmdop"]["type"] in wanted:
                await queue.put(event)
        try:
            await asyncio.to_thread(save_state, path, state)  # only once the events are on the queue
        except FileError as exc:  # the state in memory goes on; a restart before the next save repeats these events (same uuids)
            LOG.warning("cmdop.fleet.fleet_events: poll %d: the state file could not be saved: %s", polls, watch.scrub(exc))
        for problem in problems:
            LOG.warning("cmdop.fleet.fleet_events: poll %d: %s", polls, problem)
        failures = failures + 1 if problems else 0
        if settings["max_polls"] and polls >= settings["max_polls"]:
            break
        await asyncio.sleep(backoff(failures, settings["interval"]) if problems else settings["interval"])


if __name__ == "__main__":

    class _PrintQueue:
        """Prints each event: ``python fleet_events.py '{"max_polls": 1}'`` shows what a rulebook would get."""

        async def put(self, event: dict) -> None:
            print(json.dumps(event, sort_keys=True))

    logging.basicConfig(level=logging.INFO)
    asyncio.run(main(_PrintQueue(), json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}))
