"""The check behind ``@pytest.mark.core_independent`` (tests/conftest.py): a test so marked runs once, not on every
ansible-core, so under ``--core-independent`` (how scripts/test.sh runs those tests) importing ansible, or starting an
ansible CLI, makes it fail; a marked test that does neither passes, and an unmarked one is not run."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from harness import REPO_ROOT, venv_bin

MARK = "pytest.mark." + "core_independent"  # spelled apart: this file itself is not core-independent (it runs pytest)


def run_marked(tmp_path: Path, body: str) -> subprocess.CompletedProcess:
    """pytest --core-independent, with this suite's tests/conftest.py as a plugin, on a file with body's test marked and one
    test not marked, and a file with no marked test (which imports ansible: it must not even be collected)."""
    (tmp_path / "test_marked.py").write_text("import subprocess, sys\nimport pytest\n\n\n@%s\n%s\n\n"
                                            "def test_unmarked():\n    raise AssertionError('ran')\n" % (MARK, textwrap.dedent(body)),
                                            encoding="utf-8")
    (tmp_path / "test_unmarked.py").write_text("import ansible\n", encoding="utf-8")  # not even collected
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", "-q", "--core-independent", "-p", "no:xdist",
                           "--rootdir", str(tmp_path), str(tmp_path)], cwd=tmp_path, capture_output=True, text=True, check=False, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT / "tests")})


def test_a_marked_test_that_imports_ansible_fails(tmp_path: Path) -> None:
    proc = run_marked(tmp_path, """\
        def test_it():
            import ansible.release  # noqa: F401
        """)
    assert proc.returncode == 1 and "1 failed" in proc.stdout and "a core-independent test imported ansible" in proc.stdout, proc.stdout + proc.stderr


def test_a_marked_test_that_runs_an_ansible_cli_fails(tmp_path: Path) -> None:
    proc = run_marked(tmp_path, """\
        def test_it():
            subprocess.run([%r, "--version"], check=True)
        """ % str(venv_bin() / "ansible-playbook"))
    assert proc.returncode == 1 and "1 failed" in proc.stdout and "a core-independent test ran" in proc.stdout, proc.stdout + proc.stderr


def test_a_marked_test_of_pure_code_passes_and_unmarked_ones_are_left_out(tmp_path: Path) -> None:
    proc = run_marked(tmp_path, """\
        def test_it():
            from ansible_collections.cmdop.fleet.plugins.module_utils import _reconcile  # noqa: F401
            assert subprocess.run([sys.executable, "-c", "print(1)"], capture_output=True, text=True).stdout == "1\\n"
        """)
    assert proc.returncode == 0 and "1 passed, 1 deselected" in proc.stdout, proc.stdout + proc.stderr
