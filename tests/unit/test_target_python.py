"""The oldest target Python, checked statically: no Python older than the controller's can run on this machine.

What this proves: the modules and module_utils use no syntax and no standard-library name newer than
MINIMUM_PYTHON (vermin; module files, which have no ``from __future__ import annotations``, with their
annotations evaluated as Python evaluates them, ``X | Y`` included), and on an older Python 3
the modules parse far enough to call require_python(), which fails the task with a clear message.
What it cannot prove: behaviour at run time on those Pythons (the e2e tests run the modules on 3.11).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ansible_collections.cmdop.fleet.plugins.module_utils._target_python import MINIMUM_PYTHON, require_python, too_old

pytestmark = pytest.mark.core_independent  # pure code, the emulator or a static check: run once (tests/conftest.py)

REPO_ROOT = Path(__file__).resolve().parents[2]
MODULES = sorted((REPO_ROOT / "plugins" / "modules").glob("*.py"))
MODULE_UTILS = sorted((REPO_ROOT / "plugins" / "module_utils").glob("*.py"))
GUARD = REPO_ROOT / "plugins" / "module_utils" / "_target_python.py"
GUARD_MODULE = "ansible_collections.cmdop.fleet.plugins.module_utils._target_python"
OLDER_PYTHON = (3, 6)  # EL 8's system Python: what the guard must still parse on


def vermin(*args: str | Path, target: tuple = MINIMUM_PYTHON) -> subprocess.CompletedProcess:
    """vermin (installed beside this Python) failing on anything newer than target."""
    command = [str(Path(sys.executable).parent / "vermin"), "--no-tips", "--violations", "-t=%d.%d-" % target]
    return subprocess.run(command + [str(arg) for arg in args], capture_output=True, text=True, check=False)


def test_the_minimum_is_stated_alike_everywhere() -> None:
    config = yaml.safe_load((REPO_ROOT / "tests" / "config.yml").read_text(encoding="utf-8"))
    assert config["modules"]["python_requires"] == ">=%d.%d" % MINIMUM_PYTHON
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert "| targets | Python %d.%d or later" % MINIMUM_PYTHON in readme


def test_module_utils_need_nothing_newer_than_the_minimum() -> None:
    result = vermin(*MODULE_UTILS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Minimum required versions: " in result.stdout


def test_modules_need_nothing_newer_than_the_minimum_with_annotations_evaluated() -> None:
    # Without "from __future__ import annotations", `X | None` in a signature runs at import: Python 3.10+ only.
    # (vermin's union-types detection is a heuristic: it takes flags such as os.O_RDWR | os.O_CREAT for one, so it is
    # used here only; in module_utils, whose annotations are never evaluated, `X | Y` there is harmless.)
    result = vermin("--eval-annotations", "--feature", "union-types", *MODULES)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", MODULES + [GUARD], ids=lambda path: path.name)
def test_an_older_python_parses_far_enough_to_be_turned_away(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path), feature_version=OLDER_PYTHON)
    futures = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module == "__future__" for alias in node.names}
    assert "annotations" not in futures  # a SyntaxError on Python 3.6, before any code runs
    if path == GUARD:
        return
    body = list(tree.body)
    first = next(index for index, node in enumerate(body)
                 if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ansible_collections."))
    assert body[first].module == GUARD_MODULE, "the first collection import must be the guard"
    call = body[first + 1]
    assert isinstance(call, ast.Expr) and isinstance(call.value, ast.Call) and getattr(call.value.func, "id", "") == "require_python"


def test_the_guard_itself_runs_on_the_older_python() -> None:
    result = vermin("--eval-annotations", GUARD, target=OLDER_PYTHON)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("version", [(3, 6, 8), (3, 5, 2), (2, 7, 18)])
def test_too_old_a_python_gets_a_clear_message(version: tuple) -> None:
    message = too_old(version)
    assert message is not None
    assert "need Python %d.%d or later" % MINIMUM_PYTHON in message and "this is Python %d.%d" % version[:2] in message
    assert "ansible_python_interpreter" in message


@pytest.mark.parametrize("version", [MINIMUM_PYTHON + (0,), (3, 11, 7), (4, 0, 0)])
def test_a_new_enough_python_passes(version: tuple) -> None:
    assert too_old(version) is None


def test_require_python_passes_on_this_python() -> None:
    assert require_python() is None
