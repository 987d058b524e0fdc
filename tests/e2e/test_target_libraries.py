"""Which Python libraries the modules meet on the targets, so that each e2e run proves what it says.

The targets' interpreter is Debian's /usr/bin/python3 (python3-requests etc.), or, with
CMDOP_E2E_TARGET_LIBS=<stem>, a virtualenv with the versions pinned in
tests/e2e/target-requirements/<stem>.txt: scripts/test.sh runs the module tests (test_sync.py,
test_tls.py) and this file once per such file. ``oldest.txt`` must pin exactly the floors that
requirements.txt, the modules' documented requirements and README.md state.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
from pathlib import Path

import yaml
from packaging.version import Version

from harness import REPO_ROOT, SYSTEM_PYTHON, TARGET_LIBS_ENV, TARGET_PYTHON, TARGET_REQUIREMENTS

LIBRARIES = ("requests", "urllib3", "requests-oauthlib", "jsonschema")


def requirement_lines(path: Path) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line]


def pins(path: Path) -> dict[str, Version]:
    """name -> version of every name==version line."""
    found = {}
    for line in requirement_lines(path):
        name, version = line.split("==")
        found[name.strip()] = Version(version.strip())
    return found


def floors(specifiers: list[str]) -> dict[str, Version]:
    """name -> version of every "name>=version" (spaces allowed)."""
    found = {}
    for text in specifiers:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*>=\s*([0-9.]+)", text.strip())
        assert match, "not a floor: %r" % text
        found[match.group(1)] = Version(match.group(2))
    return found


def documented_requirements() -> list[str]:
    """The ``requirements`` of the doc fragment every module extends (what ansible-doc shows)."""
    source = (REPO_ROOT / "plugins" / "doc_fragments" / "api.py").read_text(encoding="utf-8")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign) and any(getattr(target, "id", "") == "DOCUMENTATION" for target in node.targets):
            return yaml.safe_load(node.value.value)["requirements"]
    raise AssertionError("no DOCUMENTATION in plugins/doc_fragments/api.py")


def readme_requirements() -> list[str]:
    """The libraries row of README.md's Requirements table: "`requests` >= 2.25, ..." -> ["requests >= 2.25", ...]."""
    row = next(line for line in (REPO_ROOT / "README.md").read_text(encoding="utf-8").splitlines() if line.startswith("| controller and targets |"))
    return ["%s >= %s" % pair for pair in re.findall(r"`([A-Za-z0-9_.-]+)` >= ([0-9.]+)", row)]


def test_the_oldest_target_libraries_are_the_documented_floors() -> None:
    expected = floors(requirement_lines(REPO_ROOT / "requirements.txt"))
    assert set(expected) == set(LIBRARIES)
    assert floors(documented_requirements()) == expected
    assert floors(readme_requirements()) == expected
    assert pins(TARGET_REQUIREMENTS / "oldest.txt") == expected


def test_every_target_interpreter_pins_each_library() -> None:
    files = sorted(TARGET_REQUIREMENTS.glob("*.txt"))
    assert [path.name for path in files] == ["jsonschema-4.10.txt", "oldest.txt"]
    for path in files:
        assert set(pins(path)) == set(LIBRARIES), path


def test_the_targets_have_the_libraries_of_this_run(ssh_targets) -> None:
    script = ("import importlib.metadata as m, json; "
              "print(json.dumps({n: [m.version(n), str(m.distribution(n).locate_file(''))] for n in %r}))" % (LIBRARIES,))
    libs = os.environ.get(TARGET_LIBS_ENV)
    for host in ssh_targets.hosts:
        proc = ssh_targets.ssh(host, "%s -c %s" % (shlex.quote(TARGET_PYTHON), shlex.quote(script)))
        assert proc.returncode == 0, proc.stderr
        found = json.loads(proc.stdout)
        versions = {name: Version(version) for name, (version, where) in found.items()}
        folders = {item[1] for item in found.values()}
        if libs:
            assert versions == pins(TARGET_REQUIREMENTS / ("%s.txt" % libs))
            assert all(where.startswith(str(Path(TARGET_PYTHON).parents[1])) for where in folders), found
        else:
            assert TARGET_PYTHON == SYSTEM_PYTHON
            assert folders == {"/usr/lib/python3/dist-packages"}, found
