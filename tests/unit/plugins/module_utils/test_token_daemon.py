"""The token store beside CMDOP's daemon, which rotates the pair in the token file without taking this collection's lock."""

from __future__ import annotations

import json
import typing as t
from pathlib import Path

import pytest

from ansible_collections.cmdop.fleet.plugins.module_utils._api import UnauthorizedError
from ansible_collections.cmdop.fleet.plugins.module_utils._token import DAEMON_REFRESH_LEAD, EXPIRY_LEEWAY, TokenStore

pytestmark = pytest.mark.core_independent  # pure code, the emulator or a static check: run once (tests/conftest.py)

READ = {"access_token": "cmdop_read", "refresh_token": "clitr_read", "token_type": "Bearer"}
ROTATED = {"access_token": "cmdop_rotated", "refresh_token": "clitr_rotated", "token_type": "Bearer"}


def write(path: Path, token: dict) -> None:
    path.write_text(json.dumps(token), encoding="utf-8")
    path.chmod(0o600)


def refused_after(path: Path, token: t.Optional[dict]) -> t.Callable[[dict], dict]:
    """A grant the server refuses after the daemon wrote ``token`` to the file (None: the daemon wrote nothing)."""
    def grant(_current: dict) -> dict:
        if token is not None:
            write(path, token)
        raise UnauthorizedError("the server refused to refresh the token (invalid_grant)")
    return grant


def test_a_pair_the_daemon_wrote_while_the_refresh_ran_is_used(tmp_path):
    path = tmp_path / "token_prod.json"
    write(path, READ)
    seen: t.List[str] = []
    store = TokenStore(str(path), on_secrets=seen.extend)
    token, refreshed_here = store.refresh("cmdop_read", refused_after(path, ROTATED))
    assert (token["access_token"], refreshed_here) == ("cmdop_rotated", False)
    assert json.loads(path.read_text(encoding="utf-8")) == ROTATED, "the daemon's file is left as it wrote it"
    assert "cmdop_rotated" in seen and "clitr_rotated" in seen, "the daemon's secrets are masked too"


@pytest.mark.parametrize("daemon_wrote", [None, dict(READ, refresh_token="clitr_other")], ids=["nothing", "same-access-token"])
def test_a_refusal_with_the_same_access_token_in_the_file_is_raised(tmp_path, daemon_wrote):
    path = tmp_path / "token_prod.json"
    write(path, READ)
    with pytest.raises(UnauthorizedError, match="invalid_grant"):
        TokenStore(str(path)).refresh("cmdop_read", refused_after(path, daemon_wrote))


def test_a_file_gone_or_broken_after_a_refusal_reports_the_refusal(tmp_path):
    path = tmp_path / "token_prod.json"
    write(path, READ)

    def broken(_current: dict) -> dict:
        path.write_text("{not json", encoding="utf-8")
        raise UnauthorizedError("the server refused to refresh the token (invalid_grant)")

    with pytest.raises(UnauthorizedError, match="invalid_grant"):
        TokenStore(str(path)).refresh("cmdop_read", broken)


def test_the_leeway_stays_well_below_the_daemons_lead():
    assert EXPIRY_LEEWAY * 5 <= DAEMON_REFRESH_LEAD == 300
