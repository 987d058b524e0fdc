"""Hostile fleet files on a real target, through ``cmdop.fleet.sync`` (ansible-playbook over SSH): each one is either
taken with every rule holding (and a second run is ``changed=false`` with identical bytes), or refused with a clear
``msg`` and the file byte-for-byte as it was. The generated (hypothesis) cases are in test_hostile_documents.py."""

from __future__ import annotations

import json
import time
import typing as t

import pytest

from cmdop_helpers import ALICE, FLEET_FILE, LAB, LOCAL_KEY, STAGING, TEAM_A, login, sync_play, write_as

AREA = "Hostile fleet files"
HOME = {"name": "home", "api_key": LOCAL_KEY, "server": ""}  # an API-key-only fleet: never touched
REFUSED = "refused: the sync fails saying so, the file byte-for-byte unchanged"
TAKEN = "taken: every rule holds, a second run changed=false with identical bytes"


def document(**extra: t.Any) -> dict:
    return dict({"active": "home", "workspaces": [dict(HOME)]}, **extra)


def nested(depth: int) -> t.Any:
    value: t.Any = "bottom"
    for _level in range(depth):
        value = [value]
    return value


BIG_ENTRIES = [{"name": "local-%06d" % number, "api_key": "cmdop_live_%032d" % number, "note": "x" * 400} for number in range(100000)]

CASES = [
    ("bom", "a UTF-8 byte order mark before the JSON", lambda: "\ufeff" + json.dumps(document()), "byte order mark"),
    ("nul", "a NUL byte inside a string", lambda: json.dumps(document()).replace('"home"', '"ho\x00me"', 1), "not valid JSON"),
    ("trailing-garbage", "trailing garbage after the document", lambda: json.dumps(document()) + "\n}garbage", "not valid JSON (line 2"),
    ("duplicate-key", "the same key twice in one entry (api_key)",
     lambda: '{"active": "home", "workspaces": [{"name": "home", "api_key": "%s", "api_key": ""}]}' % LOCAL_KEY,
     "has an object with the key 'api_key' twice"),
    ("deep-20000", "a value nested 20,000 deep", lambda: json.dumps(document(deep=[])).replace("[]", "[" * 20000 + "]" * 20000), "nests deeper than 64"),
    ("deep-65", "a value nested 65 deep (one past the limit)", lambda: json.dumps(document(deep=nested(64))), "nests deeper than 64"),
    ("wrong-type", "an api_key that is a number", lambda: json.dumps({"active": "", "workspaces": [{"name": "x", "api_key": 5}]}),
     "workspaces[0].api_key must be of type string or null"),
    ("not-an-object", "a JSON array at the top", lambda: json.dumps([document()]), "must be of type object"),
    ("not-utf8", "bytes that are not UTF-8", lambda: b'{"active": "\xff"}', "is not UTF-8 text"),
    ("empty", "an empty file", lambda: "", "is empty"),
]

TAKEN_CASES = [
    ("crlf", "CRLF line ends (a file edited on Windows)", lambda: json.dumps(document(), indent=2).replace("\n", "\r\n")),
    ("deep-64", "a value nested 64 deep (the limit)", lambda: json.dumps(document(deep=nested(63)))),
    ("unicode", "unicode, emoji and a 10,000-character name, in names and unknown keys",
     lambda: json.dumps({"active": "дом", "ключ": {"😀": ["ü", "\u2028"]},
                         "workspaces": [dict(HOME, name="дом-😀"), dict(HOME, name="n" * 10000, api_key="")]}, ensure_ascii=False)),
    ("duplicates", "duplicate local names and duplicate remote ids",
     lambda: json.dumps({"active": "a", "workspaces": [
         dict(HOME, name="a"), dict(HOME, name="a"),
         {"name": "t1", "api_key": "k1-%s" % LOCAL_KEY, "remote_id": TEAM_A}, {"name": "t2", "api_key": "k2-%s" % LOCAL_KEY, "remote_id": TEAM_A}]})),
    ("unknown-keys", "unknown keys at every level, of every type",
     lambda: json.dumps({"active": "home", "version": 3, "extra": [1, 2.5, None, True, {"a": {}}],
                         "workspaces": [dict(HOME, tags=["x"], ssh={"port": 22}, inactive=False)]})),
    ("50mb", "a 50 MB file (100,000 entries)", lambda: json.dumps({"active": "local-000000", "workspaces": BIG_ENTRIES})),
]


def sync_args(api: dict) -> dict:
    return dict(api, timeout=30)


@pytest.mark.parametrize("name, tried, content, said", [pytest.param(*case, id=case[0], marks=pytest.mark.case(AREA, case[1], REFUSED))
                                                        for case in CASES])
def test_a_hostile_file_is_refused_and_left_as_it_was(name, tried, content, said, emulator, targets, inventory, run_playbook, api):
    login(emulator, targets, "t1", ALICE)
    path = write_as(targets, "t1", FLEET_FILE, "")
    data = content()
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    original = path.read_bytes()
    result = run_playbook(sync_play(sync_args(api), hosts="t1"), inventory)
    out = result.task("sync", "t1")
    assert result.status("sync", "t1") == "failed", result.describe()
    assert out["msg"].startswith("sync: %s" % path) and said in out["msg"], out["msg"]
    assert "Traceback" not in result.stdout + result.stderr and LOCAL_KEY not in json.dumps(out)
    assert path.read_bytes() == original
    assert [item.name for item in path.parent.iterdir() if item.name.endswith(".tmp")] == []


@pytest.mark.parametrize("name, tried, content", [pytest.param(*case, id=case[0], marks=pytest.mark.case(AREA, case[1], TAKEN))
                                                  for case in TAKEN_CASES])
def test_an_odd_but_valid_file_keeps_every_rule(name, tried, content, emulator, targets, inventory, run_playbook, api):
    login(emulator, targets, "t1", ALICE)
    path = write_as(targets, "t1", FLEET_FILE, content())
    before = json.loads(path.read_text(encoding="utf-8"))
    started = time.monotonic()
    first = run_playbook(sync_play(sync_args(api), hosts="t1"), inventory, timeout=600)
    assert first.rc == 0, first.describe()[-3000:]
    after = json.loads(path.read_text(encoding="utf-8"))
    assert {key: value for key, value in after.items() if key != "workspaces"} == {key: value for key, value in before.items() if key != "workspaces"}
    for old, new in zip(before["workspaces"], after["workspaces"]):
        assert new.get("api_key") == old.get("api_key") and new["name"] == old["name"]
        if not old.get("remote_id"):
            assert new == old
    assert sorted(entry["remote_id"] for entry in after["workspaces"][len(before["workspaces"]):]) == sorted(
        {TEAM_A, LAB, STAGING} - {entry.get("remote_id") for entry in before["workspaces"]})
    written = path.read_bytes()
    second = run_playbook(sync_play(sync_args(api), hosts="t1"), inventory, timeout=600)
    assert second.rc == 0 and second.task("sync", "t1")["changed"] is False, second.describe()[-3000:]
    assert path.read_bytes() == written
    assert time.monotonic() - started < 300
