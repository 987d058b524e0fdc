# -*- coding: utf-8 -*-
# Copyright (c) cmdop.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Unit tests of the OAuth token file and its store: expiry, load, refresh under the lock, the file's format."""

from __future__ import annotations

import calendar
import json
import os
import stat
import time


import pytest

from ansible_collections.cmdop.fleet.plugins.module_utils._files import FileError
from ansible_collections.cmdop.fleet.plugins.module_utils._token import (
    EXPIRY_LEEWAY,
    TokenFileError,
    TokenStore,
    expires_at,
    is_expired,
    refreshed,
)

pytestmark = pytest.mark.core_independent  # pure code, the emulator or a static check: run once (tests/conftest.py)


def load(path):
    return TokenStore(path).load()


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
        # any number of fraction digits, as Go's time.Time writes them (Python < 3.11 takes only 3 or 6)
        ("2026-11-20T10:00:00.1234567Z", NOV_20_10H + 0.1234567),
        ("2026-11-20T10:00:00.12Z", NOV_20_10H + 0.12),
        ("2026-11-20T10:00:00.123456789-00:00", NOV_20_10H + 0.123456789),
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


# ---------------------------------------------------------------- the store: refresh under the lock


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def _write(path, token, mode=0o600):
    path.write_text(json.dumps(token, indent=4), encoding="utf-8")
    os.chmod(path, mode)
    return path


def _answer(suffix, **extra):
    answer = {"access_token": "cmdop_new_%s" % suffix, "refresh_token": "clitr_new_%s" % suffix, "token_type": "Bearer", "expires_in": 3600}
    answer.update(extra)
    return answer


@pytest.mark.parametrize("old_mode", [0o644, 0o600, 0o400])
def test_refresh_writes_the_new_pair_0600_keeping_every_other_field_in_order(tmp_path, old_mode):
    original = {"user_email": "a@example.com", "access_token": ACCESS, "refresh_token": REFRESH,
                "expires_at": 1.0, "workspace_id": "w-1", "x_custom": {"k": [1]}}
    path = _write(tmp_path / "token_prod.json", original, old_mode)
    seen = []
    store = TokenStore(str(path), on_secrets=seen.extend)
    before = time.time()
    token, here = store.refresh(ACCESS, lambda current: _answer("1", expires_at=before + 3600.0))
    saved = json.loads(path.read_text(encoding="utf-8"))
    assert here is True and token == saved
    assert list(saved) == ["user_email", "access_token", "refresh_token", "expires_at", "workspace_id", "x_custom", "token_type", "expires_in"]
    assert saved["x_custom"] == {"k": [1]} and saved["workspace_id"] == "w-1"
    assert saved["access_token"] == "cmdop_new_1" and saved["refresh_token"] == "clitr_new_1"
    assert isinstance(saved["expires_at"], str) and saved["expires_at"].endswith("Z")
    assert before + 3600 - 2 <= expires_at(saved) <= time.time() + 3600
    assert _mode(path) == 0o600
    assert {ACCESS, REFRESH, "cmdop_new_1", "clitr_new_1"} <= set(seen)
    assert sorted(os.listdir(tmp_path)) == [".token_prod.json.lock", "token_prod.json"]


def test_an_answer_without_expires_in_leaves_no_expiry_so_the_token_is_used_until_refused(tmp_path):
    path = _write(tmp_path / "token_prod.json", {"access_token": ACCESS, "refresh_token": REFRESH, "expires_at": 1.0, "expires_in": 60})
    token = TokenStore(str(path)).refresh(ACCESS, lambda current: {"access_token": "cmdop_new", "refresh_token": "clitr_new"})[0]
    assert "expires_at" not in token and "expires_in" not in token
    assert is_expired(token, time.time() + 10 ** 6) is False


def test_an_answer_without_a_refresh_token_keeps_the_old_one(tmp_path):
    path = _write(tmp_path / "token_prod.json", {"access_token": ACCESS, "refresh_token": REFRESH})
    token = TokenStore(str(path)).refresh(ACCESS, lambda current: {"access_token": "cmdop_new", "expires_in": 60})[0]
    assert token["refresh_token"] == REFRESH


def test_a_token_another_process_refreshed_is_used_and_not_refreshed_again(tmp_path):
    path = _write(tmp_path / "token_prod.json", {"access_token": "cmdop_already_new", "refresh_token": "clitr_already_new"})
    calls = []
    token, here = TokenStore(str(path)).refresh(ACCESS, lambda current: calls.append(current) or _answer("x"))
    assert here is False and calls == []
    assert token["access_token"] == "cmdop_already_new"


def test_the_refresh_holds_the_token_files_lock(tmp_path):
    """Another process holding the lock makes the refresh wait, then read the file that process wrote."""
    path = _write(tmp_path / "token_prod.json", {"access_token": ACCESS, "refresh_token": REFRESH})
    script = (
        "import fcntl, json, os, sys, time\n"
        "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "print('locked', flush=True)\n"
        "time.sleep(1.0)\n"
        "open(sys.argv[2] + '.tmp', 'w').write(json.dumps({'access_token': 'cmdop_other', 'refresh_token': 'clitr_other'}))\n"
        "os.replace(sys.argv[2] + '.tmp', sys.argv[2])\n"
    )
    import subprocess  # pylint: disable=import-outside-toplevel
    import sys  # pylint: disable=import-outside-toplevel
    holder = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / ".token_prod.json.lock"), str(path)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    calls = []
    token, here = TokenStore(str(path), lock_timeout=20).refresh(ACCESS, lambda current: calls.append(1) or _answer("mine"))
    holder.wait(timeout=20)
    assert (token["access_token"], here, calls) == ("cmdop_other", False, [])


def test_a_failed_grant_leaves_the_file_as_it_was(tmp_path):
    original = {"access_token": ACCESS, "refresh_token": REFRESH, "expires_at": 5.0}
    path = _write(tmp_path / "token_prod.json", original, 0o644)
    data = path.read_bytes()

    def refused(current):
        raise RuntimeError("invalid_grant")

    with pytest.raises(RuntimeError):
        TokenStore(str(path)).refresh(ACCESS, refused)
    assert path.read_bytes() == data


def test_a_failed_write_keeps_the_old_token(tmp_path, file_size_limit):
    path = _write(tmp_path / "token_prod.json", {"access_token": ACCESS, "refresh_token": REFRESH})
    data = path.read_bytes()
    with file_size_limit(len(data) // 2), pytest.raises(FileError):
        TokenStore(str(path)).refresh(ACCESS, lambda current: _answer("1"))
    assert path.read_bytes() == data
    assert sorted(os.listdir(tmp_path)) == [".token_prod.json.lock", "token_prod.json"]


def test_a_symlinked_token_file_is_rewritten_where_it_points(tmp_path):
    real = _write(tmp_path / "dotfiles-token.json", {"access_token": ACCESS, "refresh_token": REFRESH})
    link = tmp_path / "token_prod.json"
    link.symlink_to(real)
    TokenStore(str(link)).refresh(ACCESS, lambda current: _answer("1"))
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert json.loads(real.read_text(encoding="utf-8"))["access_token"] == "cmdop_new_1"


def test_the_store_loads_and_registers_the_secrets(tmp_path):
    path = _write(tmp_path / "token_prod.json", {"access_token": ACCESS, "refresh_token": REFRESH})
    seen = []
    assert TokenStore(str(path), on_secrets=seen.extend).load()["access_token"] == ACCESS
    assert seen == [ACCESS, REFRESH]
    assert TokenStore(str(tmp_path / "absent.json")).load() is None


def test_refreshed_joins_a_scope_list_and_drops_none():
    token = refreshed({"access_token": ACCESS}, {"access_token": "cmdop_n", "scope": ["workspace:access", "x"], "id_token": None}, 0.0)
    assert token == {"access_token": "cmdop_n", "scope": "workspace:access x"}


@pytest.mark.parametrize("garbage", ["2026-02-30T10:00:00Z", "2026-02-29T10:00:00Z", "2026-11-20T10:00:60Z", "2026-11-20T24:00:00Z",
                                     "2026-11-20T10:00:00+99:99", "２０２６-11-20T10:00:00Z"])
def test_impossible_times_are_refused_as_gos_time_parse_does(garbage):
    with pytest.raises(TokenFileError):
        expires_at({"expires_at": garbage})


@pytest.mark.parametrize("expires_in, kept", [("3600", 3600), (3600.5, 3600.5), ("soon", None), (True, None), (float("nan"), None)])
def test_expires_in_as_a_number_or_a_string_of_one(expires_in, kept):
    token = refreshed({"access_token": ACCESS}, {"access_token": "cmdop_n", "expires_in": expires_in}, 0.0)
    assert token.get("expires_in") == kept
    assert ("expires_at" in token) is (kept is not None)
