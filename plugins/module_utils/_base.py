# -*- coding: utf-8 -*-
# Copyright (c) cmdop.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What every module of the collection shares: the API options, the credential, the client.

The options are documented once, in the ``cmdop.fleet.api`` doc fragment.
Private to the collection.
"""

from __future__ import annotations

import contextlib
import time
import typing as t

from ansible.module_utils.basic import AnsibleModule, env_fallback, missing_required_lib

from ansible_collections.cmdop.fleet.plugins.module_utils import _modes, _token
from ansible_collections.cmdop.fleet.plugins.module_utils._api import OAUTH, CmdopError, Credential, UnauthorizedError, check_api_numbers, check_no_user_info
from ansible_collections.cmdop.fleet.plugins.module_utils._files import FileError
from ansible_collections.cmdop.fleet.plugins.module_utils._fleet_file import FleetFileError
from ansible_collections.cmdop.fleet.plugins.module_utils._modes import MODES, login_hint
from ansible_collections.cmdop.fleet.plugins.module_utils._schemas import SchemaError, import_error

if t.TYPE_CHECKING:
    from ansible_collections.cmdop.fleet.plugins.module_utils._client import CmdopClient  # pragma: no cover

API_ARGUMENT_SPEC: t.Dict[str, t.Dict[str, t.Any]] = {
    "mode": {"type": "str", "default": "prod", "choices": list(MODES)},
    "api_url": {"type": "str", "fallback": (env_fallback, list(_modes.API_URL_ENV))},
    "token": {"type": "str", "no_log": True, "fallback": (env_fallback, ["CMDOP_TOKEN"])},
    "token_file": {"type": "path"},
    "validate_certs": {"type": "bool", "default": True},
    "timeout": {"type": "float", "default": 30.0},
    "retries": {"type": "int", "default": 4},
}


def check_libraries(module: AnsibleModule, http: bool = True) -> None:
    """Fail with Ansible's usual message when a required Python library is missing on the target."""
    needed = [("jsonschema", import_error())]
    if http:
        _client = _http_client()
        needed += [("requests", _client.REQUESTS_IMPORT_ERROR), ("requests-oauthlib", _client.REQUESTS_OAUTHLIB_IMPORT_ERROR)]
    for name, error in needed:
        if error:
            module.fail_json(msg=missing_required_lib(name), exception=error)


def api_url(module: AnsibleModule) -> str:
    """The API URL; one with user info is refused, and masked wherever Ansible shows the module's arguments."""
    url = _modes.api_url(module.params["mode"], module.params["api_url"])
    if "@" in url:
        module.no_log_values.add(url)
    return check_no_user_info(url)


def token_file(module: AnsibleModule) -> str:
    return _modes.token_file(module.params["mode"], module.params["token_file"])


def unsafe_writes(module: AnsibleModule) -> bool:
    """The task's ``unsafe_writes``, where the module has that option: a file that cannot be renamed over is written in place."""
    return bool(module.params.get("unsafe_writes"))


def _http_client() -> t.Any:
    """The ``_client`` module, imported when a module sends a request: a sync given O(fleets) never loads the HTTP libraries."""
    from ansible_collections.cmdop.fleet.plugins.module_utils import _client  # pylint: disable=import-outside-toplevel
    return _client


def make_client(module: AnsibleModule) -> CmdopClient:
    check_api_numbers(lambda name: module.params[name])
    return _http_client().CmdopClient(
        api_url(module),
        timeout=module.params["timeout"],
        validate_certs=module.params["validate_certs"],
        retries=module.params["retries"],
    )


def resolve_credential(module: AnsibleModule) -> t.Optional[Credential]:
    """The OAuth credential to list fleets with: ``token``, else the token file, else None.

    None only when the token file is the mode's default and it does not exist (an
    API-key-only host); a ``token_file`` given explicitly must exist. Every secret
    read is registered with the module, so that Ansible masks it in anything the
    module returns, a refreshed token included.
    """
    if module.params["token"]:
        return Credential(module.params["token"], OAUTH)
    path = token_file(module)
    store = _token.TokenStore(path, unsafe_writes=unsafe_writes(module), on_secrets=module.no_log_values.update)
    credential = Credential.from_store(store)
    if credential is None:
        if module.params["token_file"]:
            raise _token.TokenFileError("token_file %s does not exist; check the path, or log in there with cmdop login" % path)
        return None
    if not credential.can_refresh and _token.is_expired(credential.token or {}, time.time()):
        raise UnauthorizedError("the access token in %s has expired and there is no refresh token to renew it" % path)
    return credential


@contextlib.contextmanager
def failing_clearly(module: AnsibleModule, prefix: str, result: dict) -> t.Iterator[None]:
    """Turn the collection's errors into ``fail_json`` with a clear ``msg`` (``<prefix>: ...``) and the result so far."""
    try:
        yield
    except UnauthorizedError as exc:
        module.fail_json(msg="%s: unauthorized: %s; %s" % (prefix, exc, login_hint(module.params["mode"])), **result)
    except (CmdopError, _token.TokenFileError, FleetFileError, SchemaError, FileError) as exc:
        module.fail_json(msg="%s: %s" % (prefix, exc), **result)
