"""Shared pytest setup for tests/unit and tests/e2e.

Makes ``ansible_collections.cmdop.fleet`` importable as this checkout: runs
scripts/collection-layout.sh (build/collections/ansible_collections/cmdop/fleet
-> repo root) and puts build/collections first on sys.path, the way
``ansible-test units`` would see the collection.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def _collections_root() -> str:
    out = subprocess.run([str(REPO_ROOT / "scripts" / "collection-layout.sh")], check=True, capture_output=True, text=True).stdout
    return out.strip().splitlines()[-1]


COLLECTIONS_ROOT = _collections_root()
if COLLECTIONS_ROOT not in sys.path:
    sys.path.insert(0, COLLECTIONS_ROOT)


# ---- the reliability table (docs/reliability.md) ---------------------------------------------------------------
# A test marked ``@pytest.mark.case(area, tried, holds)`` (or a parameter with ``marks=pytest.mark.case(...)``) is one
# case of the reliability suite. Each case's outcome is written, in collection order, to the JSON file that
# CMDOP_RELIABILITY_RESULTS names (when set); scripts/reliability_table.py turns it into docs/reliability.md.
#
# Under pytest-xdist the controller sees every test report (pytest_runtest_logreport) but collects nothing: each
# worker collects the whole session, so each writes the cases it collected (the catalog, in collection order) next
# to the results file, and the controller joins the catalog with the outcomes of the reports it got. A case that
# no report reached stays "not run", which the table check then shows.

RESULTS_ENV = "CMDOP_RELIABILITY_RESULTS"
_CASES: dict = {}  # test node id -> its case (collected here: without xdist, or in an xdist worker)
_OUTCOMES: dict = {}  # test node id -> outcome, from the reports


def pytest_configure(config) -> None:  # type: ignore[no-untyped-def]
    config.addinivalue_line("markers", "case(area, tried, holds): a case of the reliability suite, listed in docs/reliability.md")


def _catalog_path(results: str, worker: str) -> Path:
    return Path(results).with_name(Path(results).name + ".catalog-%s.json" % worker)


def pytest_collection_modifyitems(session, config, items) -> None:  # type: ignore[no-untyped-def]
    import json  # pylint: disable=import-outside-toplevel
    import os  # pylint: disable=import-outside-toplevel

    _CASES.clear()
    for item in items:
        marker = item.get_closest_marker("case")
        if marker is not None:
            area, tried, holds = marker.args
            _CASES[item.nodeid] = {"area": area, "tried": tried, "holds": holds, "test": item.nodeid, "outcome": "not run"}
    worker = getattr(config, "workerinput", {}).get("workerid")
    target = os.environ.get(RESULTS_ENV)
    if worker and target:
        path = _catalog_path(target, worker)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(list(_CASES.values())), encoding="utf-8")


def pytest_sessionstart(session) -> None:  # type: ignore[no-untyped-def]
    import os  # pylint: disable=import-outside-toplevel

    target = os.environ.get(RESULTS_ENV)
    if target and not hasattr(session.config, "workerinput"):  # no catalog of an earlier run may count
        for path in Path(target).parent.glob(Path(target).name + ".catalog-*.json"):
            path.unlink()


def pytest_runtest_logreport(report) -> None:  # type: ignore[no-untyped-def]
    outcome = _OUTCOMES.get(report.nodeid, "not run")
    if report.failed:
        outcome = "BROKEN"
    elif report.when == "call" and report.passed and outcome == "not run":
        outcome = "held"
    elif report.skipped:
        outcome = "not run"
    _OUTCOMES[report.nodeid] = outcome


def pytest_sessionfinish(session, exitstatus) -> None:  # type: ignore[no-untyped-def]
    import json  # pylint: disable=import-outside-toplevel
    import os  # pylint: disable=import-outside-toplevel

    target = os.environ.get(RESULTS_ENV)
    if not target or hasattr(session.config, "workerinput"):
        return  # an xdist worker: its controller writes the results
    cases = dict(_CASES)
    if not cases:  # the xdist controller: the cases its workers collected (each collects the whole session)
        for path in sorted(Path(target).parent.glob(Path(target).name + ".catalog-*.json")):
            for case in json.loads(path.read_text(encoding="utf-8")):
                cases.setdefault(case["test"], case)
            path.unlink()
    for nodeid, case in cases.items():
        case["outcome"] = _OUTCOMES.get(nodeid, "not run")
    if cases:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        Path(target).write_text(json.dumps(list(cases.values()), indent=1) + "\n", encoding="utf-8")
