# -*- coding: utf-8 -*-
# Copyright (c) cmdop.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: cmdop
short_description: CMDOP fleets as Ansible groups, their machines as hosts
version_added: 0.1.0
author:
  - cmdop.fleet maintainers (@cmdop)
description:
  - Reads the CMDOP fleets synced into C(~/.cmdop/ssh_workspaces.json) on the controller (or the user's fleets from the API),
    lists each fleet's machines, and makes each fleet a group and each machine a host.
  - Uses a YAML configuration file whose name ends in C(cmdop.yml) or C(cmdop.yaml).
  - "Groups: V(cmdop) holds every host. Each fleet is a group named O(group_prefix) plus the fleet's local name, with every character
    Ansible does not allow in a group name replaced by C(_) (V(fleet_team_a) for V(team-a)). Its group variables are C(cmdop_fleet_id)
    (the server's id of the fleet, empty for an API-key-only fleet), C(cmdop_fleet_name) (the local name) and C(cmdop_fleet_remote_name)
    (the server's name), plus C(cmdop_fleet_inactive) from the file or C(cmdop_fleet_slug), C(cmdop_fleet_type), C(cmdop_fleet_plan) from the API.
    When two fleets' group names come out the same, the later fleet (in file order) gets C(_2), C(_3)... and a warning says so."
  - "Membership: a fleet listed with its own C(api_key) holds every machine that key lists. A fleet listed with the OAuth token holds the machines
    whose C(workspace) is the fleet's C(remote_id). A machine (by id) that several fleets hold is one host in each of their groups."
  - "Hosts: one per machine, named by the first usable value in O(hostnames), then the machine's id. A usable name is made of letters, digits,
    C(_), C(.), C(@) and C(-) (other values, such as C(Alice's MacBook), are skipped). Duplicates never replace a host: machines are taken in
    the order of their ids; when several prefer the same name the first keeps it, and each later one takes its next preference that is no
    machine's preferred name and still free, finally its id; a warning lists every such machine."
  - "A host never has a group's name or one ansible-core reserves: a machine whose preferred name is V(all), V(ungrouped), V(cmdop),
    a fleet's group, another inventory source's group or host (unless that host is the same machine), or a name of the controller
    (V(localhost), V(127.0.0.1), V(::1)) takes its next usable preference, finally its id, with a warning. A group that
    O(keyed_groups) or O(groups) would make is not made, with a warning, when a host has its name or it is a name of the controller.
    Names are matched whole: a value with a final newline is not usable."
  - "Host variables: every field of the machine under O(hostvar_prefix) (V(cmdop_id), V(cmdop_workspace), V(cmdop_name), V(cmdop_status),
    V(cmdop_os), V(cmdop_public_ip), V(cmdop_local_ips), and the reachability fields V(cmdop_has_shell), V(cmdop_is_online),
    V(cmdop_heartbeat_age_seconds), V(cmdop_active_terminal_session), V(cmdop_agent_version)...), or only those of O(hostvar_fields),
    plus C(cmdop_fleet) (the local name of the machine's own fleet, the one its C(workspace) names, else its first fleet) and C(cmdop_fleets)
    (the local names of all its fleets). Values from the API are data, never templates: a C({{ }}) in a machine's name stays text."
  - "Errors: when a fleet's machines cannot be listed (its key is refused, the server fails after retries, the answer has the wrong shape),
    the inventory fails with the fleet's name and the reason, and makes no hosts at all, unless O(on_error=warn). No message holds a token
    or an API key. ansible-core turns a failed inventory source into a warning and an empty inventory unless
    C(ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED=true) (or C(any_unparsed_is_failed = true) in the C([inventory]) section of C(ansible.cfg));
    set it so that a run stops instead."
  - "Cache: with O(cache=true) only what the API answered (machine listings, and the fleet list with O(fleets_from=api)) is cached,
    never a token or a key. The cache key covers the inventory file, the API URL, the mode, O(fleets_from) and a one-way fingerprint of
    every credential used (the account's user id for a token file), so two accounts never share an entry and a new API key is a cache miss.
    With O(on_error=cache) the last good answer is served when the API fails (see O(on_error))."
  - "Speed: on a cache hit the plugin sends no request and loads neither the HTTP and OAuth libraries nor the schema library: the fleet file and
    the token file, checked against their schemas once, are not checked again while their bytes stay the same (the cache keeps a one-way
    digest of each, never their content)."
extends_documentation_fragment:
  - ansible.builtin.constructed
  - ansible.builtin.inventory_cache
  - cmdop.fleet.api
options:
  plugin:
    description:
      - The name of this plugin. It must always be V(cmdop.fleet.cmdop) for this plugin to read the file.
    type: str
    required: true
    choices: [cmdop.fleet.cmdop]
  fleets_from:
    description:
      - Where the list of fleets comes from.
      - V(file) reads the fleet file O(path) on the controller, as C(cmdop login) or M(cmdop.fleet.sync) wrote it. Each fleet with an
        C(api_key) is listed with its key; fleets without one are listed with the OAuth token (one listing for all of them).
      - V(api) lists the user's fleets with the OAuth token (O(token), E(CMDOP_TOKEN) or O(token_file)) and their machines with the same
        token. Group names are then made from the server's slug or name, as M(cmdop.fleet.sync) names new fleets.
      - With either, when there is no fleet file (V(file)) or no OAuth token (V(api)), an O(api_key) alone gives that key's single fleet.
    type: str
    choices: [file, api]
    default: file
  path:
    description:
      - The fleet file on the controller, with O(fleets_from=file).
    type: path
    default: ~/.cmdop/ssh_workspaces.json
  mode:
    description:
      - The CMDOP server the fleets belong to, as C(cmdop) (V(prod)) or C(cmdop --dev) (V(dev)) uses it.
      - Selects the default O(api_url) and O(token_file).
      - With O(fleets_from=file) only the file's entries of this mode are shown, and entries whose C(server) is the O(api_url) in use.
      - An entry's mode is decided by the host its C(server) names, in any form (empty, a URL with or without a scheme, a gRPC
        C(host:port)). Empty, C(api.cmdop.com) or C(grpc.cmdop.com) is V(prod); C(dev.cmdop.com) or C(api-dev.cmdop.com) is V(dev).
    type: str
    choices: [prod, dev]
    default: prod
  dev_server:
    description:
      - The host (and port) whose entries count as V(dev)'s, besides C(dev.cmdop.com) and C(api-dev.cmdop.com), as
        O(cmdop.fleet.sync#module:dev_server) of the sync that wrote them. Give the same value, so that the dev fleets it
        added are shown with O(mode=dev) and left out with O(mode=prod).
      - A C(host:port), never a URL with a scheme, and not one of prod's hosts.
    type: str
    default: dev.cmdop.com:443
    version_added: 0.2.0
  api_url:
    description:
      - Base URL of the CMDOP API. Defaults to V(https://api.cmdop.com) for O(mode=prod) and V(https://dev.cmdop.com) for O(mode=dev).
      - Credentials are only sent over HTTPS; plain V(http://) is accepted for V(localhost) and loopback addresses only.
      - A URL with user info (V(https://user:password@host)) is refused, with a message that does not show it; give the credential
        as O(token), O(token_file) or O(api_key).
      - If not set, the environment variable E(CMDOP_API_URL) is used, then E(CMDOP_API_BASE_URL) (the one CMDOP's SDKs read);
        when both are set, E(CMDOP_API_URL) wins, as it does for the modules.
    type: str
    env:
      # the last one set wins: CMDOP_API_URL over CMDOP_API_BASE_URL
      - name: CMDOP_API_BASE_URL
      - name: CMDOP_API_URL
  token:
    description:
      - An OAuth access token, for example from a vault or a lookup. It is not refreshed.
      - It may be a Jinja template; it is templated only when it is one.
      - Defaults to O(token_file).
    type: str
    env:
      - name: CMDOP_TOKEN
  token_file:
    description:
      - The OAuth token file written by C(cmdop login), on the controller, used when O(token) is not set.
      - Defaults to C(~/.cmdop/token_prod.json) or C(~/.cmdop/token_dev.json) according to O(mode). A O(token_file) given explicitly
        must exist; a missing default file means there is no OAuth token.
      - When its access token has expired, or the server refuses it, and it holds a refresh token, the token is refreshed and the new token
        pair written back to this file atomically with mode C(0600) (CMDOP's refresh tokens rotate), its other fields kept and
        C(expires_at) written as an RFC 3339 UTC time.
      - Refreshes are serialised across processes with a lock beside the file, shared with M(cmdop.fleet.sync) and
        M(cmdop.fleet.fleet_info) on the controller, so a token another run refreshed meanwhile is used, not refreshed twice.
    type: path
  api_key:
    description:
      - A fleet API key, used only when there is nothing else to list fleets with (see O(fleets_from)); it gives that key's single fleet.
      - It may be a Jinja template; it is templated only when it is one.
      - The fleets of the fleet file are always listed with their own C(api_key).
    type: str
    env:
      - name: CMDOP_API_KEY
  include_inactive:
    description:
      - Whether fleets marked C(inactive) in the fleet file (fleets the user has left) are shown.
    type: bool
    default: false
  group_prefix:
    description:
      - Put before each fleet's local name to make its group's name.
    type: str
    default: fleet_
  hostnames:
    description:
      - The machine fields to name hosts by, in order of preference. The first usable one names the host; the machine's id is always the last resort.
      - V(local_ip) is the first of the machine's C(local_ips).
    type: list
    elements: str
    choices: [name, hostname, id, public_ip, local_ip]
    default: [name, hostname, id]
  hostvar_prefix:
    description:
      - Put before each machine field to make its host variable, and before C(fleet_id), C(fleet_name)... to make the group variables.
    type: str
    default: cmdop_
  connect_with:
    description:
      - The machine fields that give C(ansible_host), tried in order for each host; the first one the machine has a value for is used,
        so one source serves machines on public and on private networks (V([public_ip, local_ip, hostname])).
      - V(local_ip) is the first of C(local_ips). V(none) (or an empty list) sets no C(ansible_host). A single value is a list of one.
      - A host whose machine has none of these values gets no C(ansible_host), and a warning names it.
    type: list
    elements: str
    choices: [public_ip, local_ip, hostname, none]
    default: [none]
  hostvar_fields:
    description:
      - The machine fields that become host variables (under O(hostvar_prefix)); by default every field the API gives.
      - Naming the few fields a play uses gives fewer variables and faster runs. C(cmdop_fleet) and C(cmdop_fleets) are always set;
        O(hostnames) and O(connect_with) still read every field, but O(filters), O(compose) and the groups see only the kept ones.
      - Fields users group machines by reachability with include V(has_shell), V(is_online), V(heartbeat_age_seconds),
        V(active_terminal_session) and V(agent_version).
    type: list
    elements: str
  filters:
    description:
      - Which machines become hosts. Filters see the host variables (C(cmdop_os), C(cmdop_fleets)...), not the O(compose) ones.
      - A machine is kept when it passes O(filters.online_only), at least one O(filters.include) condition is true (or there is none),
        and no O(filters.exclude) condition is true. A condition that cannot be evaluated fails the inventory.
    type: dict
    default: {}
    suboptions:
      online_only:
        description:
          - Keep only machines that are online (C(is_online), else C(status) V(online)).
        type: bool
        default: false
      include:
        description:
          - Jinja2 conditions; a machine is kept only if at least one is true.
        type: list
        elements: str
        default: []
      exclude:
        description:
          - Jinja2 conditions; a machine is left out if any is true.
        type: list
        elements: str
        default: []
  on_error:
    description:
      - What to do when a fleet's machines (or, with O(fleets_from=api), the user's fleets) cannot be listed.
      - V(fail) fails the whole inventory with every such fleet's name and the reason, and makes no hosts.
      - V(warn) leaves those fleets out with a warning each and shows the others. If no fleet at all could be listed, it fails anyway.
      - V(cache) serves what could not be listed from the last good answer in the inventory cache, even one older than O(cache_timeout),
        with a warning that names those fleets and says how old the answer is; when the cache has no answer for them, it fails as V(fail)
        does. It needs O(cache=true). A run that served anything from the cache does not write the cache.
      - Errors that concern no single fleet (no fleet file, a corrupt fleet file) always fail; with O(fleets_from=api) a fleet list that
        cannot be read fails unless V(cache) has a last good answer.
    type: str
    choices: [fail, warn, cache]
    default: fail
  page_size:
    description:
      - How many machines to ask for per page, from 1 to 1000. Every page is read, to the last.
    type: int
    default: 200
  max_workers:
    description:
      - How many fleets' listings are read at once, and how many pages of one listing are read at once after its first page.
      - From 1 to 64.
    type: int
    default: 8
notes:
  - The controller needs the Python libraries C(requests), C(requests-oauthlib) and C(jsonschema).
  - Retries (O(retries)) back off exponentially on connection errors, HTTP 429 and 5xx, honouring C(Retry-After) (up to 60 seconds a wait).
  - Each credential is used for one listing of all pages, not one call per machine; listings of different credentials run concurrently.
seealso:
  - module: cmdop.fleet.sync
"""

EXAMPLES = r"""
# Three inventory files. The first is written out; the other two are commented out, each from its line
# "# --- <file>: ..." on (ansible-test wants one YAML document here): save each as its own file, without the "# ".

# fleets.cmdop.yml: every fleet synced into ~/.cmdop/ssh_workspaces.json, as groups fleet_<name>
plugin: cmdop.fleet.cmdop

# --- dev.cmdop.yml: the dev server's fleets, online Linux machines only, reached by their public IP,
# # with groups by OS and a cache shared by runs for 10 minutes.
# plugin: cmdop.fleet.cmdop
# mode: dev
# include_inactive: false
# hostnames: [name, hostname]
# connect_with: public_ip
# filters:
#   online_only: true
#   include:
#     - cmdop_os == 'linux'
#   exclude:
#     - cmdop_name is match('tmp-')
# compose:
#   ansible_user: cmdop_username
# keyed_groups:
#   - key: cmdop_os
#     prefix: os
# groups:
#   big: cmdop_cpu_count >= 16
# cache: true
# cache_plugin: ansible.builtin.jsonfile
# cache_connection: ~/.cache/cmdop-inventory
# cache_timeout: 600

# --- api.cmdop.yml: the user's fleets straight from the API, with a token from a vault or the environment
# plugin: cmdop.fleet.cmdop
# fleets_from: api
# token: "{{ lookup('ansible.builtin.env', 'MY_CMDOP_TOKEN') }}"
# on_error: warn
"""


import time
import typing as t
from collections.abc import Mapping

from ansible.errors import AnsibleError
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable, get_cache_plugin
from ansible.utils.display import Display
from ansible.utils.unsafe_proxy import wrap_var

from ansible_collections.cmdop.fleet.plugins.module_utils import _fleet_file
from ansible_collections.cmdop.fleet.plugins.module_utils import _modes
from ansible_collections.cmdop.fleet.plugins.module_utils._api import CmdopError, check_api_numbers, check_no_user_info, check_number, scrub
from ansible_collections.cmdop.fleet.plugins.module_utils._files import FileError
from ansible_collections.cmdop.fleet.plugins.module_utils._inventory import (
    CONNECT_WITH,
    GROUP_CLASH,
    HOST_CLASH,
    HOSTNAME_SOURCES,
    ON_ERROR,
    SHOWN,
    SOURCE_CLASH,
    TOP_GROUP,
    FleetSpec,
    Layout,
    Plan,
    cache_suffix,
    empty_payload,
    judge,
    layout,
    refused_group,
    to_cache,
    usable,
    with_fallback,
)
from ansible_collections.cmdop.fleet.plugins.module_utils._modes import normalize_url
from ansible_collections.cmdop.fleet.plugins.module_utils._schemas import FLEET_FILE, TOKEN_FILE, remember_valid, valid_digests
from ansible_collections.cmdop.fleet.plugins.module_utils._token import TokenFileError
from ansible_collections.cmdop.fleet.plugins.plugin_utils._listing import Lister, Wording, fetch, make_client

display = Display()
WORDING = Wording(
    no_credential="fleets_from=api needs an OAuth token (token, CMDOP_TOKEN, or the token file %(token_file)s) or an api_key (CMDOP_API_KEY); %(hint)s",
    no_fleet_file="there is no fleet file %(path)s: sync it first (cmdop login, or the cmdop.fleet.sync module), "
                  "or use fleets_from: api, or give an api_key (CMDOP_API_KEY)",
    no_oauth="token, CMDOP_TOKEN, or the token file %(token_file)s",
    no_token_file="token_file %(token_file)s does not exist; check the path, or log in with cmdop login",
    config_error=CmdopError,
    token_file_error=TokenFileError,
)
NUMBERS = {"page_size": (1, 1000), "max_workers": (1, 64)}  # the plugin's own numeric options (the API's: API_NUMBERS)


def make_unsafe(value: t.Any) -> t.Any:
    """API data as data, on every ansible-core: any text that could be a template is marked unsafe (untrusted on 2.19+).

    Text without a ``{`` cannot start a template, so it is left as it is: the
    marking is cheap for thousands of hosts.
    """
    if isinstance(value, str):
        return wrap_var(value) if "{" in value else value
    if isinstance(value, Mapping):
        return {make_unsafe(key): make_unsafe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set)):
        return type(value)(make_unsafe(item) for item in value)
    return value


def shown_list(items: t.Sequence[str]) -> str:
    """At most ``SHOWN`` items, and how many more."""
    more = " and %d more" % (len(items) - SHOWN) if len(items) > SHOWN else ""
    return ", ".join(items[:SHOWN]) + more


class RefusedGroup(str):
    """The name ``GuardedInventory.add_group`` gives back for a group it did not make."""


class GuardedInventory:
    """The inventory as ansible-core's ``groups`` and ``keyed_groups`` see it: a group ``refused_group`` refuses is not made,
    and nothing is added to it or made a child of it (the name they get back is a ``RefusedGroup``)."""

    def __init__(self, inventory: t.Any) -> None:
        self.inventory = inventory
        self.refused: t.Dict[str, str] = {}  # group name -> why it was not made

    def __getattr__(self, name: str) -> t.Any:
        return getattr(self.inventory, name)

    def add_group(self, group: str) -> str:
        why = refused_group(group, self.inventory.hosts)
        if why is None:
            return self.inventory.add_group(group)
        self.refused.setdefault(str(group), why)
        return RefusedGroup(group)

    def add_host(self, host: str, group: t.Optional[str] = None, port: t.Any = None) -> str:
        if isinstance(group, RefusedGroup):
            return host
        return self.inventory.add_host(host, group, port)

    def add_child(self, group: str, child: str) -> bool:
        if isinstance(group, RefusedGroup) or isinstance(child, RefusedGroup):
            return False
        return self.inventory.add_child(group, child)


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):
    """Reads options and files, reads the cache or the API, and populates; the policy is ``_inventory``'s."""

    NAME = "cmdop.fleet.cmdop"

    def __init__(self) -> None:
        super().__init__()
        self._secrets: t.List[str] = []

    def verify_file(self, path: str) -> bool:
        return super().verify_file(path) and path.endswith(("cmdop.yml", "cmdop.yaml"))

    def parse(self, inventory: t.Any, loader: t.Any, path: str, cache: bool = True) -> None:
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        self.load_cache_plugin()
        self._secrets = []
        known = self._known_valid(path, cache)
        try:
            self._check_options()
            plan = self._plan()
            payload = self._payload(plan, path, cache)
            where = "the account" if self.get_option("fleets_from") == "api" else self.get_option("path")
            verdict = judge(plan, payload, self.get_option("on_error"), where, self.get_option("mode"))
            for warning in verdict.warnings:
                display.warning(self._scrub(warning))
            result = self._layout(verdict.fleets, payload)
        except (CmdopError, _fleet_file.FleetFileError, TokenFileError, FileError) as exc:
            raise AnsibleError("cmdop: %s" % self._scrub(exc)) from None
        if self.get_option("cache") and valid_digests() != known:
            self._cache[self._valid_key(path)] = valid_digests()
        self._populate(result)

    # ---- the local files checked once: a cache hit needs no schema library ------------

    def _valid_key(self, path: str) -> str:
        return "%s_valid" % self.get_cache_key(path)

    def _known_valid(self, path: str, cache: bool) -> t.Optional[t.List[str]]:
        """With the cache on, the fleet and token files checked by an earlier run (by digest) are not checked again."""
        if not self.get_option("cache"):
            remember_valid((), ())
            return None
        known = self._cache.get(self._valid_key(path)) if cache else None
        known = known if isinstance(known, list) else None
        remember_valid((FLEET_FILE, TOKEN_FILE), known or ())
        return known

    # ---- options -------------------------------------------------------------

    def _check_options(self) -> None:
        wrong = [name for name in self.get_option("hostnames") if name not in HOSTNAME_SOURCES]
        if wrong:
            raise CmdopError("hostnames: %s not one of %s" % (", ".join(wrong), ", ".join(HOSTNAME_SOURCES)))
        wrong = [name for name in self._connect_with() if name not in CONNECT_WITH]
        if wrong:
            raise CmdopError("connect_with: %s not one of %s" % (", ".join(wrong), ", ".join(CONNECT_WITH)))
        if not (self.get_option("hostvar_prefix") + "id").isidentifier():
            raise CmdopError("hostvar_prefix must start a valid variable name (letters, digits and _, not first a digit)")
        filters = self.get_option("filters") or {}
        unknown = sorted(set(filters) - {"online_only", "include", "exclude"})
        if unknown:
            raise CmdopError("filters: unknown key %s (online_only, include, exclude)" % ", ".join(unknown))
        for key in ("include", "exclude"):
            if not isinstance(filters.get(key) or [], list):
                raise CmdopError("filters.%s must be a list of conditions" % key)
        check_api_numbers(self.get_option)
        for name, (low, high) in NUMBERS.items():
            check_number(name, self.get_option(name), low, high)
        check_no_user_info(self._api_url())
        try:
            _modes.check_dev_server(self.get_option("dev_server"))
        except ValueError as error:
            raise CmdopError(str(error)) from None
        if self.get_option("on_error") not in ON_ERROR:
            raise CmdopError("on_error must be one of %s" % ", ".join(ON_ERROR))
        if self.get_option("on_error") == "cache" and not self.get_option("cache"):
            raise CmdopError("on_error: cache serves the last good answer from the inventory cache, so it needs cache: true")

    def _connect_with(self) -> t.List[str]:
        value = self.get_option("connect_with") or []
        return [value] if isinstance(value, str) else list(value)

    def _api_url(self) -> str:
        return _modes.api_url(self.get_option("mode"), self.get_option("api_url"))

    def _token_file(self) -> str:
        return _modes.token_file(self.get_option("mode"), self.get_option("token_file"))

    def _secret_option(self, name: str) -> t.Optional[str]:
        """A secret option's value; templated only when it is a template (a vault or lookup), never shown."""
        value = self.get_option(name)
        if value and isinstance(value, str) and self.templar.is_template(value):
            value = self.templar.template(value)
        if not value:
            return None
        value = str(value)
        self._secrets.append(value)
        return value

    def _scrub(self, text: t.Any) -> str:
        return scrub(text, sorted(set(self._secrets), key=len, reverse=True), limit=4000)

    # ---- the plan: _inventory decides; _listing reads what it needs --------------

    def _plan(self) -> Plan:
        plan, _document = Lister(self.get_option, self._secret_option, self._secrets, self._api_url(), WORDING).plan()
        for name, why in plan.left_out:
            display.vvv("cmdop: fleet %r left out: %s" % (name, why))
        return plan

    # ---- the payload: from the cache or the API ----------------------------------

    def _payload(self, plan: Plan, path: str, cache: bool) -> dict:
        """What the API answered (see ``_inventory.empty_payload``): from the cache on a hit, else read and cached."""
        if not plan.credentials:
            return empty_payload(time.time())
        key = "%s_%s" % (
            self.get_cache_key(path),
            cache_suffix(normalize_url(self._api_url()), self.get_option("mode"), self.get_option("fleets_from"), plan.credentials),
        )
        use_cache = bool(self.get_option("cache"))
        if use_cache and cache:
            cached = self._cache.get(key)
            if usable(cached, plan):
                display.vvv("cmdop: inventory from the cache")
                return dict(cached, failed={})
        payload = self._fetch(plan)
        entry = to_cache(payload)
        if use_cache and entry is not None:
            self._cache[key] = entry
        if payload["failed"] and self.get_option("on_error") == "cache":
            payload, warnings = with_fallback(plan, payload, self._last_good(key), time.time())
            for warning in warnings:
                display.warning(self._scrub(warning))
        return payload

    def _last_good(self, key: str) -> t.Any:
        """The cache entry under ``key`` however old: the same cache plugin and place, read without cache_timeout."""
        options = {"_uri": self.get_option("cache_connection"), "_prefix": self.get_option("cache_prefix"), "_timeout": 0}
        reader = get_cache_plugin(self.get_option("cache_plugin"), **{name: value for name, value in options.items() if value is not None})
        return reader.get(key)

    def _fetch(self, plan: Plan) -> dict:
        workers = self.get_option("max_workers")
        client = make_client(self._api_url(), self.get_option("timeout"), self.get_option("validate_certs"), self.get_option("retries"), workers)
        return fetch(client, plan, self.get_option("page_size"), workers, _modes.login_hint(self.get_option("mode")))

    # ---- hosts and groups -------------------------------------------------------

    def _layout(self, fleets: t.List[FleetSpec], payload: dict) -> Layout:
        filters = self.get_option("filters") or {}
        fields = self.get_option("hostvar_fields")
        result = layout(
            fleets,
            payload["listings"],
            sanitize=self._sanitize_group_name,
            hostnames=self.get_option("hostnames"),
            hostvar_prefix=self.get_option("hostvar_prefix"),
            group_prefix=self.get_option("group_prefix"),
            connect_with=self._connect_with(),
            online_only=bool(filters.get("online_only")),
            keep=self._keep if (filters.get("include") or filters.get("exclude")) else None,
            hostvar_fields=frozenset(fields) if fields else None,
            other_groups=frozenset(self.inventory.groups),
            other_hosts={name: str(host.vars.get(self.get_option("hostvar_prefix") + "id") or "") for name, host in self.inventory.hosts.items()},
        )
        self._report(result)
        return result

    def _keep(self, variables: t.Dict[str, t.Any]) -> bool:
        filters = self.get_option("filters") or {}
        self.templar.available_variables = make_unsafe(variables)
        include = filters.get("include") or []
        if include and not any(self._condition("include", index, condition) for index, condition in enumerate(include)):
            return False
        return not any(self._condition("exclude", index, condition) for index, condition in enumerate(filters.get("exclude") or []))

    def _condition(self, kind: str, index: int, condition: str) -> bool:
        try:
            evaluate = getattr(self.templar, "evaluate_conditional", None)
            if evaluate is not None:
                return bool(evaluate(condition))
            # ansible-core < 2.19, as its Constructable does it: the template's "True" may come back as the boolean True
            return boolean(self.templar.template("{%% if %s %%}True{%% else %%}False{%% endif %%}" % condition))
        except Exception as exc:  # pylint: disable=broad-except  # any template error is the user's condition's
            raise CmdopError("filters.%s[%d] (%s) cannot be evaluated: %s" % (kind, index, condition, exc)) from None

    @staticmethod
    def _report(result: Layout) -> None:
        if result.renamed_groups:
            display.warning(
                "cmdop: fleets whose group name another fleet already has: %s"
                % ", ".join("%r is %s (not %s)" % (item.what, item.got, item.wanted) for item in result.renamed_groups)
            )
        for clash, what in ((GROUP_CLASH, "a group's name or one ansible-core reserves (all, ungrouped, localhost...)"),
                            (SOURCE_CLASH, "the name of a host an earlier inventory source made"),
                            (HOST_CLASH, "a host name an earlier machine (by id) has")):
            renamed = [item for item in result.renamed_hosts if item.clash == clash]
            if renamed:
                display.warning("cmdop: %d machine(s) prefer %s: %s" % (len(renamed), what, shown_list(
                    ["machine %s is %r (not %r)" % (item.what, item.got, item.wanted) for item in renamed])))
        if result.without_address:
            display.warning("cmdop: %d host(s) have no value for connect_with, so no ansible_host: %s"
                            % (len(result.without_address), shown_list(result.without_address)))

    def _populate(self, result: Layout) -> None:
        """The groups of the layout, then every host, then the groups ``groups`` and ``keyed_groups`` make (``refused_group``)."""
        strict = self.get_option("strict")
        compose = self.get_option("compose")
        groups = self.get_option("groups")
        keyed_groups = self.get_option("keyed_groups")
        self.inventory.add_group(TOP_GROUP)
        for group in result.groups:
            self.inventory.add_group(group.name)
            for name, value in group.variables.items():
                self.inventory.set_variable(group.name, name, make_unsafe(value))
        variables: t.Dict[str, t.Dict[str, t.Any]] = {}  # host name -> its variables, marked as data
        for host in result.hosts:
            self.inventory.add_host(host.name, group=TOP_GROUP)
            for group_name in host.groups:
                self.inventory.add_host(host.name, group=group_name)
            variables[host.name] = make_unsafe(host.variables)
            for name, value in variables[host.name].items():
                self.inventory.set_variable(host.name, name, value)
            if compose:
                self._set_composite_vars(compose, self.inventory.get_host(host.name).get_vars(), host.name, strict=strict)
        if not (groups or keyed_groups):
            return
        guarded = GuardedInventory(self.inventory)
        self.inventory = guarded  # what ansible-core's Constructable adds groups to
        try:
            for host in result.hosts:
                if groups:
                    self._add_host_to_composed_groups(groups, variables[host.name], host.name, strict=strict)
                if keyed_groups:
                    self._add_host_to_keyed_groups(keyed_groups, variables[host.name], host.name, strict=strict)
        finally:
            self.inventory = guarded.inventory
        if guarded.refused:
            display.warning("cmdop: %d group(s) of keyed_groups or groups not made: %s" % (len(guarded.refused), shown_list(
                ["%r (%s)" % (name, why) for name, why in guarded.refused.items()])))
