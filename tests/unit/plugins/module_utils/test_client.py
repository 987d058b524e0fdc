# -*- coding: utf-8 -*-
# Copyright (c) cmdop.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Unit tests of the client's pure parts: where a fleet page's next link may lead, error bodies, the refresh's retry rule."""

from __future__ import annotations

import pytest

from ansible_collections.cmdop.fleet.plugins.module_utils._client import (
    REFRESH_RETRY_STATUSES,
    CmdopClient,
    ResponseError,
    _retry,
    error_detail,
)
from urllib3.exceptions import ProtocolError, SSLError

pytestmark = pytest.mark.core_independent  # pure code, the emulator or a static check: run once (tests/conftest.py)


@pytest.mark.parametrize(
    "api_url, link, path",
    [
        ("https://api.cmdop.com", "https://api.cmdop.com/api/workspaces/workspaces/?page=2", "/api/workspaces/workspaces/"),
        ("https://api.cmdop.com", "https://API.cmdop.com:443/api/workspaces/workspaces/?page=2", "/api/workspaces/workspaces/"),
        ("https://api.cmdop.com", "http://api.cmdop.com/api/workspaces/workspaces/?page=2", "/api/workspaces/workspaces/"),  # behind a TLS proxy
        ("https://api.cmdop.com", "/api/workspaces/workspaces/?page=2", "/api/workspaces/workspaces/"),
        ("https://cmdop.internal/prefix", "https://cmdop.internal/prefix/api/workspaces/workspaces/?page=2", "/api/workspaces/workspaces/"),
    ],
)
def test_a_next_link_into_the_api_is_followed_by_path_and_query(api_url, link, path):
    assert CmdopClient(api_url)._same_api(link, "page") == (path, {"page": "2"})  # pylint: disable=protected-access


@pytest.mark.parametrize(
    "link",
    [
        "https://collector.invalid/api/workspaces/workspaces/?page=2",
        "https://api.cmdop.com.invalid/api/workspaces/workspaces/",
        "https://user@collector.invalid/api/",
        "https://api.cmdop.com:8443/api/workspaces/workspaces/",
        "//collector.invalid/api/workspaces/workspaces/",
        "https://cmdop.internal/prefix/../other/",
        "https://cmdop.internal/prefixed/api/",
        "ftp://cmdop.internal/prefix/api/",
        42,
    ],
)
def test_a_next_link_out_of_the_api_is_refused(link):
    with pytest.raises(ResponseError):
        CmdopClient("https://cmdop.internal/prefix")._same_api(link, "page")  # pylint: disable=protected-access


@pytest.mark.parametrize(
    "body, said",
    [
        ({"detail": "Nope."}, "Nope."),
        ({"detail": ["A.", "B."]}, "A.; B."),
        ({"detail": {"field": ["Bad."], "other": "Worse."}}, "field: Bad.; other: Worse."),
        ({"error": "invalid_grant", "error_description": "Revoked."}, "invalid_grant: Revoked."),
        ({"error": "invalid_grant"}, "invalid_grant"),
        ({"name": ["Too long."]}, "name: Too long."),
        ("plain", ""),
        ({"detail": [[[[[["deep"]]]]]]}, "..."),
    ],
)
def test_error_detail_says_each_shape_in_one_line(body, said):
    assert error_detail(body) == said


def test_a_refresh_is_never_resent_once_the_server_may_have_used_it():
    retry = _retry(4, 0.0, ["POST"], REFRESH_RETRY_STATUSES, read=False)
    for error in (ProtocolError("reset mid-body"), SSLError("bad record mac")):
        with pytest.raises(Exception):
            retry.increment(method="POST", url="/api/system/oauth/token/", error=error)
    assert set(REFRESH_RETRY_STATUSES) == {429, 503}
