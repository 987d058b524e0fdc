"""Which Python libraries the modules load on a target: a sync given ``fleets`` sends no request, so it needs no HTTP
library (requests, requests-oauthlib); a sync that lists the fleets itself still says which library is missing.

The target's interpreter is Debian's /usr/bin/python3 with the libraries installed; a folder on ``PYTHONPATH`` whose
``requests`` and ``requests_oauthlib`` fail to import stands in for a host without them. Each records in ``marks/``
that something tried to import it, so a test can tell "not loaded" from "loaded, and its absence tolerated".
"""

from __future__ import annotations

import os
import shutil
import tempfile
import typing as t
from pathlib import Path

import pytest

from cmdop_helpers import ALICE, TEAM_A, login, read_fleets, sync_play

HIDDEN = ("requests", "requests_oauthlib")


def hide(folder: Path, *names: str) -> Path:
    """A folder, readable by the target users, that hides ``names`` from Python (and marks each import tried in marks/)."""
    marks = folder / "marks"
    marks.mkdir(parents=True)
    for name in names:
        (folder / ("%s.py" % name)).write_text("open(%r, 'w').close()\nraise ImportError('%s is hidden by the test')\n" % (str(marks / name), name),
                                               encoding="utf-8")
    for path in [folder] + list(folder.iterdir()):
        os.chmod(path, 0o755)
    os.chmod(marks, 0o777)
    return folder


@pytest.fixture
def hidden() -> t.Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="cmdop-e2e-hidden-"))
    os.chmod(folder, 0o755)
    yield folder
    shutil.rmtree(folder)


@pytest.fixture
def without_http_libraries(hidden: Path) -> Path:
    return hide(hidden / "http", *HIDDEN)


def test_sync_given_fleets_loads_no_http_library(targets: t.Any, inventory: Path, run_playbook: t.Callable, without_http_libraries: Path) -> None:
    play = sync_play({"fleets": [{"id": TEAM_A, "name": "Team A", "slug": "team-a"}]}, hosts="t1")
    play[0]["environment"] = {"PYTHONPATH": str(without_http_libraries)}
    result = run_playbook(play, inventory)
    assert result.rc == 0, result.describe()
    assert result.task("sync", "t1")["changed"] is True
    assert [item["name"] for item in read_fleets(targets, "t1")["workspaces"]] == ["team-a"]
    assert not list((without_http_libraries / "marks").iterdir()), "the module tried to import an HTTP library it does not need"


def test_sync_that_lists_fleets_says_which_library_is_missing(emulator: t.Any, targets: t.Any, inventory: Path, run_playbook: t.Callable,
                                                              api: dict, without_http_libraries: Path) -> None:
    login(emulator, targets, "t1", ALICE)
    play = sync_play(api, hosts="t1")
    play[0]["environment"] = {"PYTHONPATH": str(without_http_libraries)}
    result = run_playbook(play, inventory)
    assert result.rc != 0, result.describe()
    assert "Failed to import the required Python library (requests)" in result.task("sync", "t1")["msg"], result.describe()
    assert (without_http_libraries / "marks" / "requests").exists()  # the marks work: this run did try


def test_a_target_without_jsonschema_is_told_so(targets: t.Any, inventory: Path, run_playbook: t.Callable, hidden: Path) -> None:
    play = sync_play({"fleets": [{"id": TEAM_A, "name": "Team A", "slug": "team-a"}]}, hosts="t1")
    play[0]["environment"] = {"PYTHONPATH": str(hide(hidden / "schema", "jsonschema"))}
    result = run_playbook(play, inventory)
    assert result.rc != 0, result.describe()
    assert "Failed to import the required Python library (jsonschema)" in result.task("sync", "t1")["msg"], result.describe()
