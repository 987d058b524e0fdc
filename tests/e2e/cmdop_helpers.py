"""What the end-to-end tests share: the demo seed's users and fleets, small helpers to put files on a target as
``cmdop login`` would, read them back and build plays, and ``plain`` for ansible-inventory's JSON."""

from __future__ import annotations

import json
import os
import pwd
import time
import typing as t
from pathlib import Path

ALICE, BOB = "u-alice", "u-bob"
TEAM_A = "6bf6a91b-8ab8-46b1-8c48-3eda706c2881"
LAB = "16ac849e-69e6-46ce-9f03-d03bf4607a34"
STAGING = "f31e1a56-b620-401e-a451-21714db18f85"
BOB_PERSONAL = "34f7063f-00b4-48ef-acdd-17f5f1e7142e"
LOCAL_KEY = "cmdop_live_local_only_secret_key_9f8e7d6c5b4a"
TEAM_A_KEY = "cmdop_live_team_a_secret_key_0a1b2c3d4e5f"
SEED_TEAM_A_KEY = "cmdop_live_bPYO1yaiN9rfdbmxvqd3RDeP2QGBE1Z2"  # the emulator's real key for Team A (seed-demo.json)
FLEET_FILE = ".cmdop/ssh_workspaces.json"
TOKEN_FILE = ".cmdop/token_prod.json"


# ---- helpers ---------------------------------------------------------------


def write_as(targets: t.Any, host: str, relpath: str, text: str, mode: int = 0o600) -> Path:
    """Write a file in the host user's home, owned by that user, as cmdop login would."""
    entry = pwd.getpwnam(targets.user(host))
    path = Path(entry.pw_dir) / relpath
    for folder in reversed(path.relative_to(entry.pw_dir).parents[:-1]):
        directory = Path(entry.pw_dir) / folder
        if not directory.exists():
            directory.mkdir(mode=0o700)
            os.chown(directory, entry.pw_uid, entry.pw_gid)
    path.write_text(text, encoding="utf-8")
    os.chown(path, entry.pw_uid, entry.pw_gid)
    os.chmod(path, mode)
    return path


def login(emulator: t.Any, targets: t.Any, host: str, user: str, *, expires_in: int = 3600, refresh: bool = True) -> dict:
    """Put a token file on the host, as `cmdop login` leaves it; returns the token."""
    token = emulator.admin("POST", "tokens", {"user": user, "expires_in": expires_in})
    token["expires_at"] = time.time() + expires_in
    if not refresh:
        token.pop("refresh_token", None)
    write_as(targets, host, TOKEN_FILE, json.dumps(token, indent=2))
    return token


def token_document(access_token: str, refresh_token: str, user: str, lifetime: float = 36000) -> dict:
    """A token file's content as `cmdop login` leaves it, valid for ``lifetime`` seconds from now."""
    return {"access_token": access_token, "refresh_token": refresh_token, "token_type": "Bearer", "user_id": user,
            "expires_at": time.time() + lifetime}


def write_token_file(path: Path, access_token: str, refresh_token: str, user: str) -> Path:
    """The token file `cmdop login` leaves (mode 0600), on the controller, at ``path``."""
    path.write_text(json.dumps(token_document(access_token, refresh_token, user)), encoding="utf-8")
    path.chmod(0o600)
    return path


def controller_home(folder: Path, access_token: str, refresh_token: str, user: str) -> Path:
    """A controller HOME as `cmdop login` leaves it: ``.cmdop`` (0700) holding the token file (TOKEN_FILE), nothing else."""
    (folder / ".cmdop").mkdir(parents=True, mode=0o700)
    write_token_file(folder / TOKEN_FILE, access_token, refresh_token, user)
    return folder


def fleet_path(targets: t.Any, host: str) -> Path:
    return targets.home(host) / FLEET_FILE


def read_fleets(targets: t.Any, host: str) -> dict:
    return json.loads(fleet_path(targets, host).read_text(encoding="utf-8"))


def entry(document: dict, name: str) -> dict:
    matches = [item for item in document["workspaces"] if item["name"] == name]
    assert len(matches) == 1, document
    return matches[0]


def sync_play(args: dict, hosts: str = "all", name: str = "sync") -> list:
    return [{"hosts": hosts, "gather_facts": False, "tasks": [{"name": name, "cmdop.fleet.sync": args}]}]


def api_requests(emulator: t.Any, path: str = "/api/") -> list:
    return [item for item in emulator.admin("GET", "requests") if item["path"].startswith(path)]


def plain(value: t.Any, unsafe: t.Optional[t.List[t.Any]] = None) -> t.Any:
    """ansible-inventory's JSON without {"__ansible_unsafe": ...} markers (the marked values go to ``unsafe``) and without
    2.19's ``_meta.profile`` (the name of its serialization format, not part of the inventory)."""
    if isinstance(value, dict) and isinstance(value.get("_meta"), dict):
        value = dict(value, _meta={key: item for key, item in value["_meta"].items() if key != "profile"})
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            if unsafe is not None:
                unsafe.append(value["__ansible_unsafe"])
            return value["__ansible_unsafe"]
        return {key: plain(item, unsafe) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item, unsafe) for item in value]
    return value
