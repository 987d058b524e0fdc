"""Which mode an entry of ssh_workspaces.json belongs to, decided by the host its ``server`` names, in every spelling."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from ansible_collections.cmdop.fleet.plugins.module_utils._modes import (
    DEFAULT_DEV_SERVER,
    MODE_HOSTS,
    SCOPE_MODE,
    SCOPE_OTHER,
    SCOPE_OVERRIDE,
    check_dev_server,
    entry_scope,
    has_scheme,
    server_for_new_entry,
    server_host,
    server_mode,
)

pytestmark = pytest.mark.core_independent  # pure code, the emulator or a static check: run once (tests/conftest.py)

KNOWN = sorted((host, mode) for mode, hosts in MODE_HOSTS.items() for host in hosts)
# What the contract names, written here independently of _modes: a host added to or dropped from the table shows here.
PUBLISHED = {"api.cmdop.com": "prod", "grpc.cmdop.com": "prod", "dev.cmdop.com": "dev", "api-dev.cmdop.com": "dev"}


@st.composite
def spellings(draw: st.DrawFn, host: str) -> str:
    """``host`` as a user, the CLI or an older release may have written it in ``server``."""
    cased = "".join(draw(st.sampled_from((char.lower(), char.upper()))) for char in host)
    form = draw(st.sampled_from(("url", "bare", "grpc-target")))
    port = draw(st.one_of(st.just(""), st.integers(1, 65535).map(":{}".format)))
    dot = draw(st.sampled_from(("", ".")))
    path = draw(st.sampled_from(("", "/", "/api", "/v2/x?y=1", "#frag")))
    if form == "url":
        scheme = draw(st.sampled_from(("https", "http", "HTTPS", "grpc", "grpcs", "wss")))
        user = draw(st.sampled_from(("", "user@", "user:pw@")))
        text = "%s://%s%s%s%s%s" % (scheme, user, cased, dot, port, path)
    elif form == "grpc-target":
        text = "dns:///%s%s%s" % (cased, dot, port)
    else:
        text = "%s%s%s%s" % (cased, dot, port, path)
    return draw(st.sampled_from(("", " ", "\t"))) + text + draw(st.sampled_from(("", " ", "\n")))


def test_the_table_holds_the_published_hosts():
    assert dict(KNOWN) == PUBLISHED


@settings(max_examples=400)
@given(st.sampled_from(KNOWN).flatmap(lambda known: st.tuples(st.just(known), spellings(known[0]))))
def test_every_spelling_of_a_known_host_gives_its_mode(case):
    (host, mode), server = case
    assert server_host(server) == host
    assert server_mode(server) == mode
    for sync_mode in ("prod", "dev"):
        assert entry_scope(server, sync_mode) == (SCOPE_MODE if sync_mode == mode else SCOPE_OTHER)


@pytest.mark.parametrize("server", [None, "", " ", "\n\t"])
def test_an_empty_or_absent_server_is_prods(server):
    assert server_mode(server) == "prod"
    assert entry_scope(server, "prod") == SCOPE_MODE
    assert entry_scope(server, "dev") == SCOPE_OTHER


_LABEL = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12).filter(lambda label: label.strip("-") == label)


@settings(max_examples=300)
@given(st.lists(_LABEL, min_size=1, max_size=4).map(".".join).flatmap(lambda host: st.tuples(st.just(host), spellings(host))))
def test_any_other_host_is_a_local_override(case):
    host, server = case
    if host in PUBLISHED or host == "dev.cmdop.com":
        return
    assert server_mode(server) is None
    assert entry_scope(server, "prod") == entry_scope(server, "dev") == SCOPE_OVERRIDE


@pytest.mark.parametrize("server", [
    "api.cmdop.com.evil.example", "https://evil.example/api.cmdop.com", "https://api.cmdop.com@evil.example",
    "cmdop.com", "grpc.internal:443", "http://localhost:8000", "[::1]:443", "[::1", "://x", "unix:///run/cmdop.sock",
])
def test_lookalikes_and_other_servers_are_overrides(server):
    assert server_mode(server) is None


def test_a_dev_server_of_the_users_choice_counts_as_dev():
    assert server_mode("grpc-dev.example.net:443") is None
    assert server_mode("GRPC-DEV.example.net", dev_server="grpc-dev.example.net:443") == "dev"
    assert entry_scope("grpc-dev.example.net:8443", "dev", dev_server="grpc-dev.example.net:443") == SCOPE_MODE
    assert server_mode("https://dev.cmdop.com", dev_server="grpc-dev.example.net:443") == "dev"  # what older releases wrote


def test_new_entries_hold_no_scheme():
    assert server_for_new_entry("prod") == ""
    assert server_for_new_entry("dev") == DEFAULT_DEV_SERVER
    assert not has_scheme(DEFAULT_DEV_SERVER)
    assert server_mode(DEFAULT_DEV_SERVER) == "dev"
    assert server_for_new_entry("dev", "grpc-dev.example.net:443") == "grpc-dev.example.net:443"


@pytest.mark.parametrize("value", ["https://dev.cmdop.com", "grpc://dev.cmdop.com:443", "", "  ", "grpc.cmdop.com:443", "api.cmdop.com"])
def test_a_dev_server_that_no_dev_entry_may_hold_is_refused(value):
    with pytest.raises(ValueError):
        check_dev_server(value)


def test_a_dev_server_is_taken_trimmed():
    assert check_dev_server(" dev.cmdop.com:443 ") == "dev.cmdop.com:443"
    assert check_dev_server("grpc-dev.example.net:443") == "grpc-dev.example.net:443"
