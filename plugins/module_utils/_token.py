# -*- coding: utf-8 -*-
# Copyright (c) cmdop.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The OAuth token file (``~/.cmdop/token_<mode>.json``).

Layout (ours, as CMDOP documents none): the token endpoint's JSON answer plus
``expires_at``, Unix seconds as a float, computed when the token was obtained;
``expires_at`` is also read as an RFC 3339 string. Mode 0600, written atomically.
Private to the collection.
"""

from __future__ import annotations

import datetime
import json
import typing as t

from ansible_collections.cmdop.fleet.plugins.module_utils._files import Move, read_text, write_atomically
from ansible_collections.cmdop.fleet.plugins.module_utils._schemas import TOKEN_FILE, SchemaError, validate

# A token this close to its end counts as expired: it could lapse in flight.
EXPIRY_LEEWAY = 30.0


class TokenFileError(ValueError):
    """The token file cannot be used. The message holds no secret."""


def load(path: str) -> t.Optional[dict]:
    """The token in ``path``, or None when there is no such file."""
    text = read_text(path)
    if text is None:
        return None
    try:
        token = json.loads(text)
    except ValueError:
        raise TokenFileError("token file %s is not valid JSON; log in again (cmdop login)" % path) from None
    try:
        validate(token, TOKEN_FILE, "token file %s" % path)
    except SchemaError as exc:
        raise TokenFileError("%s; log in again (cmdop login)" % exc) from None
    return token


def expires_at(token: t.Mapping[str, t.Any]) -> t.Optional[float]:
    """When the access token ends, in Unix seconds, or None when unknown."""
    value = token.get("expires_at")
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise TokenFileError("the token's expires_at is neither Unix seconds nor an RFC 3339 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


def is_expired(token: t.Mapping[str, t.Any], now: float) -> bool:
    end = expires_at(token)
    return end is not None and now >= end - EXPIRY_LEEWAY


def normalized(token: t.Mapping[str, t.Any]) -> dict:
    """The token as the file keeps it: plain JSON types, ``scope`` as one space-separated string."""
    result = {key: value for key, value in dict(token).items() if value is not None}
    scope = result.get("scope")
    if isinstance(scope, (list, tuple)):
        result["scope"] = " ".join(scope)
    elif isinstance(scope, (set, frozenset)):
        result["scope"] = " ".join(sorted(scope))
    return result


def save(path: str, token: t.Mapping[str, t.Any], move: Move) -> None:
    data = json.dumps(normalized(token), indent=2, sort_keys=True) + "\n"
    write_atomically(path, data.encode("utf-8"), move=move, mode=0o600)
