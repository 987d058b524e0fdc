# -*- coding: utf-8 -*-
# Copyright (c) cmdop.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The controller-side glue the inventory plugin ``cmdop.fleet.cmdop`` and the event source ``cmdop.fleet.fleet_events``
share: the OAuth credential through the token store, the listing plan from the fleet file or the API, and the listings
fetched with the client. The policy is ``_inventory``'s; the callers differ only in their wording and in ``on_failure``
(the event source stops on a refused OAuth token, the inventory records every failure and follows ``on_error``).

Not a module_utils file: nothing here runs on a target. ansible-rulebook runs the event source with runpy, outside
ansible's collection loader; once the source has put its collections root on ``sys.path``, this file imports as
``ansible_collections.cmdop.fleet.plugins.plugin_utils._listing`` there too (the packages have no ``__init__.py``).
"""

from __future__ import annotations

import time
import typing as t
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.cmdop.fleet.plugins.module_utils import _fleet_file, _modes
from ansible_collections.cmdop.fleet.plugins.module_utils._api import OAUTH, CmdopError, Credential
from ansible_collections.cmdop.fleet.plugins.module_utils._files import read_text
from ansible_collections.cmdop.fleet.plugins.module_utils._inventory import (
    FLEET_LIST,
    Labelled,
    Plan,
    empty_payload,
    failure_reason,
    fingerprint,
    needs_oauth,
    plan_from_api,
    plan_from_file,
    plan_single_key,
)
from ansible_collections.cmdop.fleet.plugins.module_utils._modes import normalize_url
from ansible_collections.cmdop.fleet.plugins.module_utils._token import TokenStore


class Wording(t.NamedTuple):
    """What a caller says when there is nothing to list with, and which exceptions it raises. The texts are ``%``
    templates over ``path`` (the fleet file), ``token_file`` and ``hint`` (``_modes.login_hint``)."""

    no_credential: str  # fleets_from=api with neither an OAuth token nor an api_key
    no_fleet_file: str  # fleets_from=file with no fleet file and no api_key
    no_oauth: str  # where the OAuth token comes from, for ``plan_from_file``
    no_token_file: str  # the token_file option names a file that does not exist
    config_error: t.Type[Exception]  # raised with no_credential or no_fleet_file
    token_file_error: t.Type[Exception]  # raised with no_token_file


def make_client(api_url: str, timeout: float, validate_certs: bool, retries: int, max_workers: int) -> t.Any:
    """The collection's client. The HTTP and OAuth libraries load here, only when a request is to be sent."""
    from ansible_collections.cmdop.fleet.plugins.module_utils._client import CmdopClient  # pylint: disable=import-outside-toplevel

    return CmdopClient(api_url, timeout=timeout, validate_certs=validate_certs, retries=retries, max_workers=max_workers)


class Lister:
    """Reads the credentials and the fleet file as the options say, and plans and fetches the listings.

    ``option(name)`` reads an option (``fleets_from``, ``mode``, ``path``, ``include_inactive``, ``token_file``);
    ``secret(name)`` reads a secret option (``token``, ``api_key``), adds it to ``secrets`` and gives None when it is
    empty. Every other secret read (the token file's, the fleet file's keys) is added to ``secrets`` too. With
    ``remember_none`` false a missing OAuth credential is looked for again on the next call (a long-running caller
    picks up a later login); true reads it once.
    """

    def __init__(self, option: t.Callable[[str], t.Any], secret: t.Callable[[str], t.Optional[str]], secrets: t.List[str],
                 api_url: str, wording: Wording, remember_none: bool = True) -> None:
        self.option = option
        self.secret = secret
        self.secrets = secrets
        self.api_url = api_url
        self.wording = wording
        self.remember_none = remember_none
        self._oauth: t.Optional[Labelled] = None
        self._oauth_loaded = False

    def _say(self, text: str) -> str:
        return text % {"path": self.option("path"), "token_file": self.token_file(), "hint": _modes.login_hint(self.option("mode"))}

    def token_file(self) -> str:
        return _modes.token_file(self.option("mode"), self.option("token_file"))

    def oauth(self) -> t.Optional[Labelled]:
        """The OAuth credential and its account label: O(token), else the token file, else None."""
        if self._oauth_loaded:
            return self._oauth
        api_url = normalize_url(self.api_url)
        token = self.secret("token")
        if token:
            self._oauth, self._oauth_loaded = (Credential(token, OAUTH), fingerprint("token", api_url, token)), True
            return self._oauth
        credential = Credential.from_store(TokenStore(self.token_file(), on_secrets=self.secrets.extend))
        if credential is None:
            if self.option("token_file"):
                raise self.wording.token_file_error(self._say(self.wording.no_token_file))
            self._oauth_loaded = self.remember_none
            return None
        user = (credential.token or {}).get("user_id")
        account = fingerprint("user", api_url, str(user)) if user else fingerprint("token", api_url, credential.secret)
        self._oauth, self._oauth_loaded = (credential, account), True
        return self._oauth

    def plan(self) -> t.Tuple[Plan, t.Optional[dict]]:
        """The inventory's plan, and the fleet file it was made from (None when the fleets come from the API or a single key)."""
        mode = self.option("mode")
        if self.option("fleets_from") == "api":
            oauth = self.oauth()
            if oauth is not None:
                return plan_from_api(oauth), None
            return self.single_key(self.wording.no_credential), None
        path = self.option("path")
        text = read_text(path)
        if text is None:
            return self.single_key(self.wording.no_fleet_file), None
        document = _fleet_file.parse(text, path)
        self.secrets.extend(_fleet_file.secrets(document))
        include_inactive = bool(self.option("include_inactive"))
        dev_server = self.option("dev_server")
        oauth = self.oauth() if needs_oauth(document, mode, self.api_url, include_inactive, dev_server) else None
        return plan_from_file(document, mode, self.api_url, include_inactive, oauth, no_oauth=self._say(self.wording.no_oauth),
                              dev_server=dev_server), document

    def single_key(self, otherwise: str) -> Plan:
        """The plan of the api_key alone; without one, ``otherwise`` is the error."""
        secret = self.secret("api_key")
        if not secret:
            raise self.wording.config_error(self._say(otherwise))
        return plan_single_key(secret, self.api_url)


def fetch(client: t.Any, plan: Plan, page_size: int, workers: int, hint: str,
          on_failure: t.Optional[t.Callable[[CmdopError, Credential], None]] = None) -> dict:
    """The payload (see ``_inventory.empty_payload``): the fleet list (fleets_from=api), then one listing per credential,
    ``workers`` at a time. Each failure is first given to ``on_failure`` (which may raise to stop), then recorded in ``failed``."""
    payload = empty_payload(time.time())
    if plan.fleet_list is not None:
        try:
            payload["fleets"] = client.list_fleets(plan.credentials[plan.fleet_list])
        except CmdopError as exc:
            if on_failure is not None:
                on_failure(exc, plan.credentials[plan.fleet_list])
            payload["failed"][FLEET_LIST] = failure_reason(exc, OAUTH, hint)
            return payload
    labels = sorted(plan.credentials)
    outer = max(1, min(workers, len(labels)))
    with ThreadPoolExecutor(max_workers=outer) as pool:
        # The client's bound is shared: each concurrent listing reads its pages with its share of it.
        futures = {label: pool.submit(client.list_machines, plan.credentials[label], page_size, max(1, workers // outer)) for label in labels}
        for label, future in futures.items():
            try:
                payload["listings"][label] = future.result()
            except CmdopError as exc:
                if on_failure is not None:
                    on_failure(exc, plan.credentials[label])
                payload["failed"][label] = failure_reason(exc, plan.credentials[label].kind, hint)
    return payload
