"""Shared pytest setup for tests/unit and tests/e2e.

Makes ``ansible_collections.cmdop.fleet`` importable as this checkout: runs
scripts/collection-layout.sh (build/collections/ansible_collections/cmdop/fleet
-> repo root) and puts build/collections first on sys.path, the way
``ansible-test units`` would see the collection.
"""

from __future__ import annotations

import os
import re
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


# ---- hypothesis profiles ------------------------------------------------------------------------------------------
# ci (the default, what make test runs): today's example counts; dev (HYPOTHESIS_PROFILE=dev): a tenth, for quick
# local runs. A test's own settings() should not repeat max_examples, so that the profile decides.
try:
    from hypothesis import HealthCheck, settings as hypothesis_settings
except ImportError:  # pragma: no cover  (ansible-test units without hypothesis: no property tests there)
    pass
else:
    hypothesis_settings.register_profile("ci", max_examples=300, deadline=None, database=None,
                                         suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    hypothesis_settings.register_profile("dev", parent=hypothesis_settings.get_profile("ci"), max_examples=30)
    hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


# ---- core-independent tests: run once -------------------------------------------------------------------------
# A test whose outcome cannot depend on the ansible-core version (pure code of the collection, the emulator, static
# checks) is marked ``@pytest.mark.core_independent`` (a whole file: ``pytestmark = pytest.mark.core_independent``).
# scripts/test.sh runs those once, with ``--core-independent`` (only they run, under a guard), and every other test on
# every core (``-m "not core_independent"``). Under the guard, importing ansible fails, and so does starting an ansible
# CLI (ansible-playbook, ansible-inventory ...): a test that does either is not core-independent and must not be
# marked so. Files that do not mention the marker are not even collected in that run (nor their folders' conftest).

CORE_INDEPENDENT = "core_independent"


class CoreDependentError(ImportError):
    """Raised by the guard of ``--core-independent``."""


class _NoAnsible:
    """A meta path finder refusing ``ansible`` and its submodules."""

    @staticmethod
    def find_spec(name, path=None, target=None):  # type: ignore[no-untyped-def]  # pylint: disable=unused-argument
        if name == "ansible" or name.startswith("ansible."):
            raise CoreDependentError("a core-independent test imported %s: it depends on ansible-core, so it is not "
                                     "core-independent (remove the core_independent mark)" % name)
        return None


def _no_ansible_cli(event, args):  # type: ignore[no-untyped-def]
    if event == "os.spawn":
        args = args[1:]
    if event not in ("subprocess.Popen", "os.posix_spawn", "os.exec", "os.spawn"):
        return
    executable, argv = args[0], args[1]
    names = [executable] + (list(argv)[:2] if isinstance(argv, (list, tuple)) else [argv])
    for name in names:
        words = os.fsdecode(name).split() if isinstance(name, (str, bytes, os.PathLike)) else []
        if words and os.path.basename(words[0]).startswith("ansible"):  # a program, or a shell command line's first
            raise CoreDependentError("a core-independent test ran %s: it depends on ansible-core, so it is not "
                                     "core-independent (remove the core_independent mark)" % os.fsdecode(name))


def pytest_addoption(parser) -> None:  # type: ignore[no-untyped-def]
    parser.addoption("--core-independent", action="store_true",
                     help="run only the tests marked core_independent, failing any that imports ansible or runs an ansible CLI")


_MARKS = re.compile(r"^\s*(@pytest\.mark\.%s\b|pytestmark\s*=.*\bpytest\.mark\.%s\b)" % (CORE_INDEPENDENT, CORE_INDEPENDENT), re.M)


def _mentions_marker(path: Path) -> bool:
    files = [path] if path.is_file() else path.rglob("test_*.py")
    return any(_MARKS.search(item.read_text(encoding="utf-8", errors="replace")) for item in files)


def pytest_ignore_collect(collection_path, config):  # type: ignore[no-untyped-def]
    if not config.getoption("--core-independent", default=False):
        return None
    if collection_path.is_dir() or (collection_path.name.startswith("test_") and collection_path.suffix == ".py"):
        return None if _mentions_marker(collection_path) else True
    return None


def _install_guard() -> None:
    loaded = sorted(name for name in sys.modules if name == "ansible" or name.startswith("ansible."))
    if loaded:
        raise RuntimeError("--core-independent: ansible was imported before the tests (%s), by a conftest.py or a plugin; "
                           "tests under tests/e2e (whose conftest.py loads the harness, which imports ansible) cannot be "
                           "core-independent" % ", ".join(loaded[:3]))
    sys.meta_path.insert(0, _NoAnsible())
    sys.addaudithook(_no_ansible_cli)


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
    config.addinivalue_line("markers", "core_independent: the outcome cannot depend on the ansible-core version (no ansible "
                                       "import, no ansible CLI): runs once, not on every core")
    if config.getoption("--core-independent"):
        _install_guard()


def _catalog_path(results: str, worker: str) -> Path:
    return Path(results).with_name(Path(results).name + ".catalog-%s.json" % worker)


def pytest_collection_modifyitems(session, config, items) -> None:  # type: ignore[no-untyped-def]
    import json  # pylint: disable=import-outside-toplevel

    if config.getoption("--core-independent"):
        kept = [item for item in items if item.get_closest_marker(CORE_INDEPENDENT)]
        if len(kept) != len(items):
            config.hook.pytest_deselected(items=[item for item in items if not item.get_closest_marker(CORE_INDEPENDENT)])
            items[:] = kept
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
