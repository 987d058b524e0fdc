# -*- coding: utf-8 -*-
# Copyright (c) cmdop.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Unit tests of the OAuth token file: expiry, load, save, normalization."""

from __future__ import annotations

import calendar
import copy
import json
import os
import stat
import time
import types

import pytest

from ansible_collections.cmdop.fleet.plugins.module_utils._files import FileError
from ansible_collections.cmdop.fleet.plugins.module_utils._token import (
    EXPIRY_LEEWAY,
    TokenFileError,
    expires_at,
    is_expired,
    load,
    normalized,
    save,
)

ACCESS = "cmdop_at_Secret0123456789abcdef"
REFRESH = "clitr_Refresh0123456789abcdef"
NOV_20_10H = float(calendar.timegm((2026, 11, 20, 10, 0, 0)))


@pytest.fixture
def tz_far_from_utc():
    """Run with a local time zone that is not UTC, so a naive time read as local time would be caught."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "America/New_York"
    time.tzset()
    try:
        yield
    finally:
        if saved is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = saved
        time.tzset()


# ---------------------------------------------------------------- expires_at


def test_expires_at_float():
    assert expires_at({"expires_at": 1763632800.25}) == 1763632800.25


def test_expires_at_int_becomes_float():
    value = expires_at({"expires_at": 1763632800})
    assert value == 1763632800.0
    assert isinstance(value, float)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2026-11-20T10:00:00Z", NOV_20_10H),
        ("2026-11-20T10:00:00z", NOV_20_10H),
        ("2026-11-20t10:00:00Z", NOV_20_10H),
        ("2026-11-20 10:00:00Z", NOV_20_10H),
        (" 2026-11-20T10:00:00Z ", NOV_20_10H),
        ("2026-11-20T10:00:00+00:00", NOV_20_10H),
        ("2026-11-20T12:00:00+02:00", NOV_20_10H),
        ("2026-11-20T05:00:00-05:00", NOV_20_10H),
        ("2026-11-20T15:30:00+05:30", NOV_20_10H),
        ("2026-11-20T10:00:00.5Z", NOV_20_10H + 0.5),
        ("2026-11-20T10:00:00.250000+00:00", NOV_20_10H + 0.25),
    ],
)
def test_expires_at_rfc3339(text, expected, tz_far_from_utc):
    assert expires_at({"expires_at": text}) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("text", ["2026-11-20T10:00:00", "2026-11-20T10:00:00.5"])
def test_expires_at_naive_string_is_utc(text, tz_far_from_utc):
    assert expires_at({"expires_at": text}) == pytest.approx(NOV_20_10H + (0.5 if text.endswith(".5") else 0), abs=1e-6)


@pytest.mark.parametrize("token", [{}, {"expires_at": None}, {"expires_at": True}, {"expires_at": False}])
def test_expires_at_unknown(token):
    assert expires_at(token) is None


@pytest.mark.parametrize(
    "garbage",
    ["cmdop_secret_soon", "tomorrow", "", "2026-13-45T99:00:00Z", "2026-11-20T10:00:00ZZ", "in 3600 seconds", ["cmdop_secret_list"], {"cmdop_secret_k": 1}],
)
def test_expires_at_garbage_is_an_error_without_the_value(garbage):
    with pytest.raises(TokenFileError) as info:
        expires_at({"expires_at": garbage})
    assert "cmdop_secret" not in str(info.value)
    assert "expires_at" in str(info.value)
    assert info.value.__cause__ is None


def test_token_file_error_is_a_value_error():
    assert issubclass(TokenFileError, ValueError)


# ---------------------------------------------------------------- is_expired


def test_expiry_leeway_is_30_seconds():
    assert EXPIRY_LEEWAY == 30.0


@pytest.mark.parametrize(
    "now, expected",
    [(0.0, False), (969.0, False), (969.999, False), (970.0, True), (999.0, True), (1000.0, True), (5000.0, True)],
)
def test_is_expired_with_leeway(now, expected):
    assert is_expired({"expires_at": 1000.0}, now) is expected


def test_is_expired_reads_rfc3339():
    token = {"expires_at": "2026-11-20T10:00:00Z"}
    assert is_expired(token, NOV_20_10H - 31) is False
    assert is_expired(token, NOV_20_10H - 30) is True


def test_unknown_expiry_is_not_expired():
    assert is_expired({"access_token": ACCESS}, 10 ** 12) is False


def test_is_expired_garbage_raises():
    with pytest.raises(TokenFileError):
        is_expired({"expires_at": "never"}, 0.0)


# ---------------------------------------------------------------- load


def test_load_missing_file_is_none(tmp_path):
    assert load(str(tmp_path / "token_prod.json")) is None


def test_load_valid_file(tmp_path):
    token = {"access_token": ACCESS, "refresh_token": REFRESH, "expires_at": "2026-11-20T10:00:00Z", "scope": "workspace:access", "x": [1]}
    path = tmp_path / "token_prod.json"
    path.write_text(json.dumps(token), encoding="utf-8")
    assert load(str(path)) == token


@pytest.mark.parametrize(
    "text",
    [
        '{"access_token": "%s", "refresh_token": "%s"' % (ACCESS, REFRESH),
        '{"access_token": %s}' % ACCESS,
        "access_token=%s&refresh_token=%s" % (ACCESS, REFRESH),
        "",
        "   \n",
    ],
    ids=["truncated", "unquoted", "form-encoded", "empty", "blank"],
)
def test_load_corrupt_file_error_holds_no_content(tmp_path, text):
    path = tmp_path / "token_prod.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(TokenFileError) as info:
        load(str(path))
    message = str(info.value)
    assert ACCESS not in message and REFRESH not in message
    assert "cmdop_" not in message and "clitr_" not in message
    assert str(path) in message
    assert info.value.__cause__ is None and info.value.__suppress_context__ is True


@pytest.mark.parametrize(
    "token, place",
    [
        ({"refresh_token": REFRESH}, "access_token"),
        ({"access_token": "", "refresh_token": REFRESH}, "access_token"),
        ({"access_token": 987654321, "refresh_token": REFRESH}, "access_token"),
        ({"access_token": ACCESS, "refresh_token": 123456789}, "refresh_token"),
        ({"access_token": ACCESS, "expires_at": [REFRESH]}, "expires_at"),
        ([ACCESS, REFRESH], "top level"),
        (ACCESS, "top level"),
    ],
)
def test_load_schema_invalid_file_error_holds_no_content(tmp_path, token, place):
    path = tmp_path / "token_dev.json"
    path.write_text(json.dumps(token), encoding="utf-8")
    with pytest.raises(TokenFileError) as info:
        load(str(path))
    message = str(info.value)
    assert place in message
    for value in (ACCESS, REFRESH, "987654321", "123456789"):
        assert value not in message
    assert "log in again" in message


def test_load_non_utf8_file_is_an_error_without_content(tmp_path):
    path = tmp_path / "token_prod.json"
    path.write_bytes(b'{"access_token": "' + ACCESS.encode() + b'\xff\xfe"}')
    with pytest.raises((TokenFileError, FileError)) as info:
        load(str(path))
    assert ACCESS not in str(info.value)


# ---------------------------------------------------------------- save and normalized


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_save_writes_0600_and_normalizes(tmp_path, umask):
    path = str(tmp_path / "token_prod.json")
    token = {
        "access_token": ACCESS,
        "refresh_token": REFRESH,
        "token_type": "Bearer",
        "scope": ["workspace:access", "machines:read"],
        "expires_at": 1763632800.5,
        "workspace_name": None,
        "user_email": "alice@example.com",
    }
    snapshot = copy.deepcopy(token)
    old_umask = os.umask(umask)
    try:
        save(path, token, os.replace)
    finally:
        os.umask(old_umask)
    assert token == snapshot, "save must not mutate the token"
    assert _mode(path) == 0o600
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    assert text.endswith("}\n")
    saved = json.loads(text)
    assert saved == {
        "access_token": ACCESS,
        "refresh_token": REFRESH,
        "token_type": "Bearer",
        "scope": "workspace:access machines:read",
        "expires_at": 1763632800.5,
        "user_email": "alice@example.com",
    }
    assert load(path) == saved
    assert os.listdir(str(tmp_path)) == ["token_prod.json"], "no temporary file is left"


def test_save_replaces_a_loose_file_with_0600(tmp_path):
    path = tmp_path / "token_prod.json"
    path.write_text('{"access_token": "old"}', encoding="utf-8")
    os.chmod(str(path), 0o644)
    save(str(path), {"access_token": ACCESS}, os.replace)
    assert _mode(str(path)) == 0o600
    assert load(str(path)) == {"access_token": ACCESS}


def test_save_failure_keeps_the_old_token(tmp_path):
    path = tmp_path / "token_prod.json"
    path.write_text('{"access_token": "old"}', encoding="utf-8")

    def failing_move(src, dst):
        raise OSError(28, "No space left on device")

    with pytest.raises(FileError) as info:
        save(str(path), {"access_token": ACCESS, "refresh_token": REFRESH}, failing_move)
    assert ACCESS not in str(info.value) and REFRESH not in str(info.value)
    assert path.read_text(encoding="utf-8") == '{"access_token": "old"}'
    assert os.listdir(str(tmp_path)) == ["token_prod.json"]


def test_normalized_drops_none_and_joins_scope():
    token = {"access_token": ACCESS, "refresh_token": None, "scope": ("workspace:access", "x"), "expires_in": 3600, "flag": False, "empty": ""}
    snapshot = copy.deepcopy(token)
    assert normalized(token) == {"access_token": ACCESS, "scope": "workspace:access x", "expires_in": 3600, "flag": False, "empty": ""}
    assert token == snapshot


def test_normalized_keeps_a_scope_string_and_accepts_mappings():
    token = types.MappingProxyType({"access_token": ACCESS, "scope": "workspace:access"})
    assert normalized(token) == {"access_token": ACCESS, "scope": "workspace:access"}
    assert normalized({"access_token": ACCESS, "scope": ["workspace:access"]})["scope"] == "workspace:access"
    assert normalized({"access_token": ACCESS, "scope": []})["scope"] == ""
