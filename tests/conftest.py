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

_CASES: dict = {}  # test node id -> its case


def pytest_configure(config) -> None:  # type: ignore[no-untyped-def]
    config.addinivalue_line("markers", "case(area, tried, holds): a case of the reliability suite, listed in docs/reliability.md")


def pytest_collection_modifyitems(session, config, items) -> None:  # type: ignore[no-untyped-def]
    _CASES.clear()
    for item in items:
        marker = item.get_closest_marker("case")
        if marker is not None:
            area, tried, holds = marker.args
            _CASES[item.nodeid] = {"area": area, "tried": tried, "holds": holds, "test": item.nodeid, "outcome": "not run"}


def pytest_runtest_logreport(report) -> None:  # type: ignore[no-untyped-def]
    case = _CASES.get(report.nodeid)
    if case is not None:
        if report.failed:
            case["outcome"] = "BROKEN"
        elif report.when == "call" and report.passed and case["outcome"] == "not run":
            case["outcome"] = "held"
        elif report.skipped:
            case["outcome"] = "not run"


def pytest_sessionfinish(session, exitstatus) -> None:  # type: ignore[no-untyped-def]
    import json  # pylint: disable=import-outside-toplevel
    import os  # pylint: disable=import-outside-toplevel

    target = os.environ.get("CMDOP_RELIABILITY_RESULTS")
    if target and _CASES:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        Path(target).write_text(json.dumps(list(_CASES.values()), indent=1) + "\n", encoding="utf-8")
