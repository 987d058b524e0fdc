"""Shared pytest setup for tests/unit and tests/e2e.

Makes ``ansible_collections.cmdop.fleet`` importable as this checkout: runs
scripts/collection-layout.sh (build/collections/ansible_collections/cmdop/fleet
-> repo root) and puts build/collections first on sys.path, the way
``ansible-test units`` would see the collection.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _collections_root() -> str:
    out = subprocess.run([str(REPO_ROOT / "scripts" / "collection-layout.sh")], check=True, capture_output=True, text=True).stdout
    return out.strip().splitlines()[-1]


COLLECTIONS_ROOT = _collections_root()
if COLLECTIONS_ROOT not in sys.path:
    sys.path.insert(0, COLLECTIONS_ROOT)


# ---- hypothesis profiles ------------------------------------------------------------------------------------------
# ci (the default, what make test runs): today's example counts; dev (HYPOTHESIS_PROFILE=dev): a tenth, for quick
# local runs; mutations (scripts/mutations.py): ci's examples, but a failing example is not shrunk, since a mutation
# only needs its test to fail (shrinking took up to 25 s a mutation). A test's own settings() should not repeat
# max_examples or phases, so that the profile decides.
try:
    from hypothesis import HealthCheck, Phase, settings as hypothesis_settings
except ImportError:  # pragma: no cover  (ansible-test units without hypothesis: no property tests there)
    pass
else:
    hypothesis_settings.register_profile("ci", max_examples=300, deadline=None, database=None,
                                         suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    hypothesis_settings.register_profile("dev", parent=hypothesis_settings.get_profile("ci"), max_examples=30)
    hypothesis_settings.register_profile("mutations", parent=hypothesis_settings.get_profile("ci"),
                                         phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target])
    hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


# ---- core-independent tests: run once -------------------------------------------------------------------------
# A test whose outcome cannot depend on the ansible-core version (pure code of the collection, the emulator, static
# checks) is marked ``@pytest.mark.core_independent`` (a whole file: ``pytestmark = pytest.mark.core_independent``).
# scripts/test.sh runs those with the newest core only, and every other test on every core (``-m "not
# core_independent"`` for the older ones). The mark is checked wherever such a test runs (plain pytest or ansible-test
# units): it fails when its file, or any module of this repository that it imports (however deep), imports ansible;
# when it imports ansible while it runs; or when it starts an ansible CLI (ansible-playbook, ansible-inventory ...).
# Such a test depends on ansible-core: it must not be marked so.

CORE_INDEPENDENT = "core_independent"
_GUARDED: list = []  # the node id of the marked test running now (its setup, call and teardown), if any


class CoreDependentError(ImportError):
    """A test marked core_independent used ansible."""


def _is_ansible(name: str) -> bool:
    return name == "ansible" or name.startswith("ansible.")


def _refuse(what: str) -> None:
    raise CoreDependentError("%s %s: it depends on ansible-core, so it is not core-independent (remove the %s mark)"
                             % (_GUARDED[0], what, CORE_INDEPENDENT))


class _NoAnsible:
    """A meta path finder refusing ``ansible`` and its submodules while a marked test runs."""

    @staticmethod
    def find_spec(name, path=None, target=None):  # type: ignore[no-untyped-def]  # pylint: disable=unused-argument
        if _GUARDED and _is_ansible(name):
            _refuse("imported %s" % name)
        return None


def _no_ansible_cli(event, args):  # type: ignore[no-untyped-def]
    if not _GUARDED or event not in ("subprocess.Popen", "os.posix_spawn", "os.exec", "os.spawn"):
        return
    if event == "os.spawn":
        args = args[1:]
    executable, argv = args[0], args[1]
    for name in [executable] + (list(argv)[:2] if isinstance(argv, (list, tuple)) else [argv]):
        words = os.fsdecode(name).split() if isinstance(name, (str, bytes, os.PathLike)) else []
        if words and os.path.basename(words[0]).startswith("ansible"):  # a program, or a shell command line's first word
            _refuse("ran %s" % os.fsdecode(name))


_FILES: dict = {}  # module name -> its file when it is one of this repository's, else None
_CHAINS: dict = {}  # file -> a chain of files ending in an import of ansible (empty: none)
_REFUSED: dict = {}  # node id of a marked test -> why it is not core-independent (found at collection)


def _module_file(name: str) -> Path | None:
    """The file of an imported module when it is this repository's (collection code or test helpers)."""
    if name not in _FILES:
        path = getattr(sys.modules.get(name), "__file__", None)
        path = Path(path).resolve() if path else None
        # (ansible's collection finder gives a package a made-up file name: __synthetic__)
        _FILES[name] = path if path and REPO_ROOT in path.parents and path.suffix == ".py" and path.is_file() else None
    return _FILES[name]


def _ansible_chain(path: Path, visiting: frozenset = frozenset()) -> tuple:
    """Files from path, through the modules of this repository it imports, to an import of ansible (empty: none)."""
    import ast  # pylint: disable=import-outside-toplevel

    if path in _CHAINS:
        return _CHAINS[path]
    modules = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module] + ["%s.%s" % (node.module, alias.name) for alias in node.names]
        for name in names:
            if _is_ansible(name):
                _CHAINS[path] = (path, name)
                return _CHAINS[path]
            modules.append(name)
    chain: tuple = ()
    for name in modules:
        target = _module_file(name)
        if target is not None and target != path and target not in visiting:
            found = _ansible_chain(target, visiting | {path})
            if found:
                chain = (path,) + found
                break
    _CHAINS[path] = chain
    return chain


def _check_marked(items) -> None:  # type: ignore[no-untyped-def]
    """At collection (once per file): which marked tests import ansible."""
    for item in items:
        module_file = getattr(getattr(item, "module", None), "__file__", None)
        if item.get_closest_marker(CORE_INDEPENDENT) is None or not module_file:
            continue
        chain = _ansible_chain(Path(module_file).resolve())
        if chain:
            route = " -> ".join((str(part.relative_to(REPO_ROOT)) if REPO_ROOT in part.parents else part.name)
                                if isinstance(part, Path) else part for part in chain)
            _REFUSED[item.nodeid] = "%s is marked %s, but imports ansible: %s" % (item.nodeid, CORE_INDEPENDENT, route)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):  # type: ignore[no-untyped-def]
    if item.nodeid in _REFUSED:
        raise CoreDependentError(_REFUSED[item.nodeid])
    if item.get_closest_marker(CORE_INDEPENDENT) is not None:
        _GUARDED[:] = [item.nodeid]
    try:
        yield
    finally:
        _GUARDED.clear()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):  # type: ignore[no-untyped-def]
    _GUARDED[:] = [item.nodeid] if item.get_closest_marker(CORE_INDEPENDENT) is not None else []
    try:
        yield
    finally:
        _GUARDED.clear()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):  # type: ignore[no-untyped-def]  # pylint: disable=unused-argument
    _GUARDED[:] = [item.nodeid] if item.get_closest_marker(CORE_INDEPENDENT) is not None else []
    try:
        yield
    finally:
        _GUARDED.clear()


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
    if not any(isinstance(finder, _NoAnsible) for finder in sys.meta_path):
        sys.meta_path.insert(0, _NoAnsible())  # idle unless a test marked core_independent runs
        sys.addaudithook(_no_ansible_cli)


def _catalog_path(results: str, worker: str) -> Path:
    return Path(results).with_name(Path(results).name + ".catalog-%s.json" % worker)


def pytest_collection_modifyitems(session, config, items) -> None:  # type: ignore[no-untyped-def]
    import json  # pylint: disable=import-outside-toplevel

    _check_marked(items)
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
