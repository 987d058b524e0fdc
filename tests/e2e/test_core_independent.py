"""The check behind ``@pytest.mark.core_independent`` (tests/conftest.py): a test so marked runs with one
ansible-core only, so it fails when it imports ansible (in its file, through a module of this repository, or while it
runs) or starts an ansible CLI; a marked test that does neither passes, and an unmarked test is not checked."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from harness import REPO_ROOT, venv_bin

MARK = "pytest.mark." + "core_independent"


def run_marked(tmp_path: Path, body: str, top: str = "") -> subprocess.CompletedProcess:
    """Plain pytest, with this suite's tests/conftest.py as a plugin, on a file with body's test marked (and top at the
    top of the file) and one test not marked that runs ansible-playbook."""
    (tmp_path / "test_marked.py").write_text(
        "import subprocess, sys\nimport pytest\n%s\n\n@%s\n%s\n\n"
        "def test_unmarked():\n    subprocess.run([%r, '--version'], check=True, capture_output=True)\n"
        % (top, MARK, textwrap.dedent(body), str(venv_bin() / "ansible-playbook")), encoding="utf-8")
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", "-p", "no:xdist", "-q",
                           "--rootdir", str(tmp_path), str(tmp_path)], cwd=tmp_path, capture_output=True, text=True, check=False, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT / "tests")})


def test_a_marked_test_that_imports_ansible_while_it_runs_fails(tmp_path: Path) -> None:
    proc = run_marked(tmp_path, """\
        def test_it():
            __import__("importlib").import_module("ansible.release")  # no import statement: only the runtime guard sees it
        """)
    assert proc.returncode == 1 and "1 failed, 1 passed" in proc.stdout and "imported ansible" in proc.stdout, proc.stdout + proc.stderr


def test_a_marked_test_whose_file_or_a_module_it_uses_imports_ansible_fails(tmp_path: Path) -> None:
    top = "from ansible.release import __version__\n"
    proc = run_marked(tmp_path, "def test_it():\n    assert __version__\n", top=top)
    assert proc.returncode == 1 and "1 passed, 1 error" in proc.stdout and "imports ansible: test_marked.py -> ansible.release" in proc.stdout.replace(
        str(tmp_path) + "/", ""), proc.stdout + proc.stderr
    top = "from ansible_collections.cmdop.fleet.plugins.module_utils import _base\n"  # _base imports ansible.module_utils.basic
    proc = run_marked(tmp_path, "def test_it():\n    assert _base\n", top=top)
    assert proc.returncode == 1 and "plugins/module_utils/_base.py -> ansible.module_utils.basic" in proc.stdout, proc.stdout + proc.stderr


def test_a_marked_test_that_runs_an_ansible_cli_fails(tmp_path: Path) -> None:
    proc = run_marked(tmp_path, """\
        def test_it():
            subprocess.run([%r, "--version"], check=True)
        """ % str(venv_bin() / "ansible-playbook"))
    assert proc.returncode == 1 and "1 failed, 1 passed" in proc.stdout and "ran " in proc.stdout, proc.stdout + proc.stderr


def test_a_marked_test_of_pure_code_passes(tmp_path: Path) -> None:
    proc = run_marked(tmp_path, """\
        def test_it():
            from ansible_collections.cmdop.fleet.plugins.module_utils import _reconcile  # noqa: F401
            assert subprocess.run([sys.executable, "-c", "print(1)"], capture_output=True, text=True).stdout == "1\\n"
        """)
    assert proc.returncode == 0 and "2 passed" in proc.stdout, proc.stdout + proc.stderr
