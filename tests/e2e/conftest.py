"""pytest fixtures for the end-to-end tests (real sshd, real ansible-playbook, real emulator).

Fixtures:
  collections_path   (session)  collections root in which cmdop.fleet is this checkout
  ssh_targets        (session)  harness.SshTargets: sshd on 127.0.0.1, a target slot's users (cmdop-s<N>-t1/-t2, per session and per
                                xdist worker) as hosts t1/t2; name them as ssh_targets.user("t1")
  clean_targets      (function) ssh_targets after wiping every target user's ~/.cmdop
  inventory          (function) path of a fresh inventory with t1 and t2 (tmp_path/inventory.yml)
  ansible_runner     (function) harness.AnsibleRunner working in tmp_path
  run_playbook       (function) ansible_runner.run_playbook(playbook, inventory, *, extra_vars, check, diff, verbosity, env, limit)
  run_inventory      (function) ansible_runner.run_inventory(args, env=None)
  ansible_cli        (function) ansible_runner.run(tool, args, env=None)
  emulator_seed      (function) seed for the emulator: dict, path, or None (tests/emulator/seed-demo.json); override it
  emulator           (function) harness.Emulator started on a free port; .url, .admin(method, path, json=None)
  api                (function) the module arguments that point at the emulator (api_url, retries 2, timeout 10)
  targets            (function) clean_targets, by its short name
"""

from __future__ import annotations

import typing as t
from pathlib import Path

import pytest

from harness import AnsibleRunner, Emulator, SshTargets, collection_layout


@pytest.fixture(scope="session")
def collections_path() -> Path:
    """Set ANSIBLE_COLLECTIONS_PATH to this so cmdop.fleet.* resolves to the checkout (run_playbook does)."""
    return collection_layout()


@pytest.fixture(scope="session")
def ssh_targets(tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[SshTargets]:
    """Started once per session, stopped at the end."""
    targets = SshTargets(tmp_path_factory.mktemp("ssh"))
    try:
        targets.start()
        yield targets
    finally:
        targets.stop()


@pytest.fixture
def clean_targets(ssh_targets: SshTargets) -> SshTargets:
    """ssh_targets with every target user's ~/.cmdop removed."""
    ssh_targets.reset_cmdop()
    return ssh_targets


@pytest.fixture
def inventory(ssh_targets: SshTargets, tmp_path: Path) -> Path:
    """An inventory with hosts t1 and t2 and no extra variables."""
    return ssh_targets.inventory(tmp_path / "inventory.yml")


@pytest.fixture
def ansible_runner(collections_path: Path, tmp_path: Path) -> AnsibleRunner:
    """Runs ansible CLIs from the venv with cwd and ANSIBLE_LOCAL_TEMP in tmp_path."""
    return AnsibleRunner(collections_path, tmp_path / "ansible")


@pytest.fixture
def run_playbook(ansible_runner: AnsibleRunner) -> t.Callable[..., t.Any]:
    """run_playbook(playbook_path_or_yaml_text, inventory, *, extra_vars=None, check=False, diff=False, verbosity=0, env=None, limit=None)."""
    return ansible_runner.run_playbook


@pytest.fixture
def run_inventory(ansible_runner: AnsibleRunner) -> t.Callable[..., t.Any]:
    """run_inventory(args, env=None) -> CliResult(rc, stdout, stderr)."""
    return ansible_runner.run_inventory


@pytest.fixture
def ansible_cli(ansible_runner: AnsibleRunner) -> t.Callable[..., t.Any]:
    """ansible_cli(tool, args, env=None) for ansible-doc, ansible-galaxy, ansible ..."""
    return ansible_runner.run


@pytest.fixture
def emulator_seed() -> t.Any:
    """Override in a test module (or parametrize indirectly) to seed the emulator; None means tests/emulator/seed-demo.json."""
    return None


@pytest.fixture
def emulator(emulator_seed: t.Any, tmp_path: Path) -> t.Iterator[Emulator]:
    """A fresh emulator per test, terminated (killed after 10 s) at teardown."""
    emu = Emulator(emulator_seed, tmp_path / "emulator")
    try:
        emu.start(timeout=60.0)  # seconds: a machine busy with parallel runs can take long to start a Python
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def api(emulator: Emulator) -> dict:
    """The module arguments that point at the emulator."""
    return {"api_url": emulator.url, "retries": 2, "timeout": 10}


@pytest.fixture
def targets(clean_targets: SshTargets) -> SshTargets:
    return clean_targets
