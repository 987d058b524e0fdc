"""reconcile's server rules: entries matched to a mode by host, what a new dev entry holds, and the opt-in rewrite of
the https://dev.cmdop.com entries an older release wrote."""

from __future__ import annotations

import pytest

from ansible_collections.cmdop.fleet.plugins.module_utils._reconcile import DEACTIVATED, UPDATED, reconcile

pytestmark = pytest.mark.core_independent  # pure code, the emulator or a static check: run once (tests/conftest.py)

NOW = "2026-11-23T10:00:00Z"
LISTED = "7f0c8f5e-0c7a-4a3e-8d7e-8b1a4c2d9e01"
LEFT = "2b7e6a4c-1d1f-4c51-9b55-2f0a8a2b9c10"


def entry(name: str, remote_id: str, server: str) -> dict:
    return {"name": name, "api_key": "ck_live_x", "server": server, "remote_id": remote_id, "remote_name": name,
            "last_synced_at": NOW}


def fleets() -> list:
    return [{"id": LISTED, "name": "listed", "created_at": NOW}]


@pytest.mark.parametrize("server", ["grpc.cmdop.com:443", "dns:///grpc.cmdop.com:443", "GRPC.cmdop.com", "https://api.cmdop.com/v2", "api.cmdop.com:443"])
def test_a_prod_entry_in_any_spelling_is_deactivated_in_prod_and_untouched_in_dev(server):
    document = {"workspaces": [entry("listed", LISTED, server), entry("left", LEFT, server)]}
    prod = reconcile(document, fleets(), "prod", NOW)
    assert [(change.action, change.name) for change in prod.changes if change.action == DEACTIVATED] == [(DEACTIVATED, "left")]
    dev = reconcile(document, fleets(), "dev", NOW)
    assert dev.document["workspaces"][:2] == document["workspaces"]
    assert [item["server"] for item in dev.document["workspaces"][2:]] == ["dev.cmdop.com:443"], "the prod entry is not dev's"


def test_a_dev_server_of_the_users_choice_is_written_and_counts_as_dev():
    dev_server = "grpc-dev.example.net:443"
    first = reconcile({"workspaces": [entry("left", LEFT, "grpc-dev.example.net:8443")]}, fleets(), "dev", NOW, dev_server=dev_server)
    assert first.document["workspaces"][0]["inactive"] is True
    assert first.document["workspaces"][1]["server"] == dev_server
    again = reconcile(first.document, fleets(), "dev", NOW, dev_server=dev_server)
    assert not again.changed


@pytest.mark.parametrize("rewrite", [False, True])
def test_older_dev_entries_are_rewritten_only_on_request(rewrite):
    old = [entry("listed", LISTED, "https://dev.cmdop.com"), entry("left", LEFT, "https://dev.cmdop.com/"),
           entry("cli", "c0ffee00-1111-4222-8333-444455556666", "dev.cmdop.com:443")]
    outcome = reconcile({"workspaces": old}, fleets(), "dev", NOW, rewrite_dev_server=rewrite)
    servers = [item["server"] for item in outcome.document["workspaces"]]
    if not rewrite:
        assert servers == ["https://dev.cmdop.com", "https://dev.cmdop.com/", "dev.cmdop.com:443"]
        return
    assert servers == ["dev.cmdop.com:443"] * 3
    by_name = {change.name: change for change in outcome.changes}
    assert (by_name["listed"].action, by_name["listed"].fields) == (UPDATED, ("server",))
    assert (by_name["left"].action, by_name["left"].fields) == (DEACTIVATED, ("inactive", "server"))
    assert "server" not in by_name["cli"].fields
    prod = reconcile({"workspaces": old}, fleets(), "prod", NOW, rewrite_dev_server=True)
    assert [item["server"] for item in prod.document["workspaces"][:3]] == [item["server"] for item in old], "never in a prod sync"
