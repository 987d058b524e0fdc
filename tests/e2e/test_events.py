"""``cmdop.fleet.fleet_events`` under the real ansible-rulebook (its own venv, .venvs/rulebook, from scripts/bootstrap-eda.sh,
on Java 17), against the emulator: the engine loads the source from the collection, the events reach its rules, a refused
credential ends the run, and the two shipped rulebooks run their playbooks through ansible-runner.

The emulator's state is changed while the engine runs, between two polls: the test waits for the state file's
``generation`` (the source writes it after each poll). Every run ends by itself (``max_polls``) within a time limit.
A JVM starts for each run, so only what needs the real engine is here; the rest is in test_events_source.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import typing as t
from pathlib import Path

import pytest
import yaml

from harness import REPO_ROOT
from test_events_source import ALICE, FLEET_A, FLEET_C, KEY_A, KEY_B, M1, M4, SEED, fleet, machine

RULEBOOK_VENV = REPO_ROOT / ".venvs" / "rulebook"
RULEBOOKS = REPO_ROOT / "extensions" / "eda" / "rulebooks"
JAVA_HOME = "/usr/lib/jvm/java-17-openjdk-amd64"
RUN_LIMIT = 120.0  # seconds one ansible-rulebook run may take


@pytest.fixture
def emulator_seed() -> dict:
    return SEED


@pytest.fixture(scope="module")
def rulebook_bin() -> Path:
    """The rulebook venv's bin folder; missing is a failure, not a skip: scripts/bootstrap-eda.sh makes it."""
    binary = RULEBOOK_VENV / "bin" / "ansible-rulebook"
    if not binary.exists():
        pytest.fail("%s is missing: run scripts/bootstrap-eda.sh" % binary)
    return binary.parent


class Rulebook:
    """One ansible-rulebook run in the background, with a hermetic environment; ``wait()`` gives its output."""

    def __init__(self, bin_dir: Path, collections_path: Path, workdir: Path, rulebook: t.Union[str, Path], inventory: Path,
                 variables: t.Mapping[str, t.Any]) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        vars_file = workdir / "vars.yml"
        vars_file.write_text(yaml.safe_dump(dict(variables)), encoding="utf-8")
        env = {key: value for key, value in os.environ.items() if not key.startswith(("ANSIBLE_", "CMDOP_"))}
        env.update({
            "PATH": "%s:%s" % (bin_dir, os.environ.get("PATH", "/usr/bin:/bin")),
            "JAVA_HOME": os.environ.get("JAVA_HOME") or JAVA_HOME,
            "ANSIBLE_COLLECTIONS_PATH": str(collections_path),
            "ANSIBLE_CONFIG": str(workdir / "ansible.cfg"),
            "ANSIBLE_LOCAL_TEMP": str(workdir / "tmp"),
            "ANSIBLE_NOCOLOR": "1",
            "HOME": str(workdir),  # no ~/.cmdop of the machine's user is ever read
        })
        (workdir / "ansible.cfg").write_text("# empty: tests/e2e/test_events.py\n", encoding="utf-8")
        self.command = [str(bin_dir / "ansible-rulebook"), "-r", str(rulebook), "-i", str(inventory), "--vars", str(vars_file),
                        "--shutdown-delay", "60", "-v"]
        self.output = workdir / "rulebook.out"
        with open(self.output, "wb") as out:
            self.process = subprocess.Popen(self.command, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=out,  # pylint: disable=consider-using-with
                                            stderr=subprocess.STDOUT)
        self.started = time.monotonic()

    def wait(self) -> t.Tuple[int, str]:
        try:
            code = self.process.wait(timeout=RUN_LIMIT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail("ansible-rulebook did not end by itself within %s s:\n%s" % (RUN_LIMIT, self.text()))
        return code, self.text()

    def text(self) -> str:
        return self.output.read_text(encoding="utf-8", errors="replace")


def wait_for_poll(state_file: Path, generation: int, run: Rulebook) -> None:
    """Until the source has saved the state of its ``generation``-th poll (or the run ended)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and run.process.poll() is None:
        try:
            if json.loads(state_file.read_text(encoding="utf-8"))["generation"] >= generation:
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    pytest.fail("the source did not save the state of poll %d:\n%s" % (generation, run.text()))


def login(emulator: t.Any, folder: Path, refresh: bool = True) -> t.Tuple[Path, t.List[str]]:
    token = emulator.admin("POST", "tokens", {"user": ALICE, "expires_in": 3600})
    if not refresh:
        token.pop("refresh_token", None)
    path = folder / "token_prod.json"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(token), encoding="utf-8")
    path.chmod(0o600)
    return path, [KEY_A, KEY_B] + [value for key, value in token.items() if key in ("access_token", "refresh_token")]


def printing_rulebook(folder: Path, source: t.Mapping[str, t.Any]) -> Path:
    path = folder / "print.yml"
    path.write_text(yaml.safe_dump([{
        "name": "print every event", "hosts": "all",
        "sources": [{"cmdop.fleet.fleet_events": dict(source)}],
        "rules": [{"name": "print", "condition": "event.cmdop.type is defined", "action": {"print_event": {"pretty": False}}}],
    }], sort_keys=False), encoding="utf-8")
    return path


def printed(output: str) -> t.List[t.Tuple[str, str]]:
    """(type, host or fleet name) of each event print_event printed (a Python dict, one a line)."""
    found = []
    for line in output.splitlines():
        if line.startswith("{") and "'cmdop': {" in line:
            event = eval(line, {"__builtins__": {}}, {"None": None, "True": True, "False": False})  # pylint: disable=eval-used  # print_event's repr
            found.append((event["cmdop"]["type"], event["cmdop"].get("host") or event["cmdop"].get("fleet", {}).get("name", "")))
    return found


def no_secret(secrets: t.Sequence[str], *texts: str) -> None:
    for text in texts:
        for secret in secrets:
            assert secret not in text


@pytest.mark.case("events", "ansible-rulebook runs the source while the fleets change between its polls",
                  "each change reaches the rules once, the run ends by max_polls, no secret in its output or state file")
def test_the_engine_gets_each_event(rulebook_bin: Path, collections_path: Path, emulator: t.Any, tmp_path: Path) -> None:
    token_file, secrets = login(emulator, tmp_path / "home")
    state_file = tmp_path / "state.json"
    rulebook = printing_rulebook(tmp_path, {"fleets_from": "api", "api_url": emulator.url, "token_file": str(token_file), "retries": 0,
                                            "interval": 1.5, "max_polls": 4, "state_file": str(state_file)})
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  hosts:\n    localhost:\n", encoding="utf-8")
    run = Rulebook(rulebook_bin, collections_path, tmp_path / "run", rulebook, inventory, {})
    wait_for_poll(state_file, 1, run)
    emulator.admin("POST", "fleets", fleet(FLEET_C, "Staging"))
    emulator.admin("POST", "machines", machine(M4, FLEET_A, "web-3"))
    emulator.admin("POST", "faults", {"path": "/api/machines/", "status": 500, "count": 1})  # one failed poll: retried, no false left
    wait_for_poll(state_file, 2, run)
    emulator.admin("DELETE", "machines/%s" % M1)
    code, output = run.wait()
    assert code == 0, output
    assert printed(output) == [("snapshot", ""), ("fleet_added", "Staging"), ("machine_joined", "web-3"), ("machine_left", "web-1")], output
    no_secret(secrets, output, state_file.read_text(encoding="utf-8"))


def test_a_restarted_engine_emits_what_changed_while_it_was_down_once(
        rulebook_bin: Path, collections_path: Path, emulator: t.Any, tmp_path: Path) -> None:
    """Two ansible-rulebook runs with one state file: what changed between them reaches the rules once, in the second run
    (its second poll repeats nothing); the in-process cases of test_events_source.py prove the rest of the restart rules."""
    token_file, secrets = login(emulator, tmp_path / "home")
    state_file = tmp_path / "state.json"
    rulebook = printing_rulebook(tmp_path, {"fleets_from": "api", "api_url": emulator.url, "token_file": str(token_file), "retries": 0,
                                            "interval": 0.5, "max_polls": 1, "initial": "none", "state_file": str(state_file)})
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  hosts:\n    localhost:\n", encoding="utf-8")
    code, output = Rulebook(rulebook_bin, collections_path, tmp_path / "first", rulebook, inventory, {}).wait()
    assert code == 0 and printed(output) == [], output
    emulator.admin("POST", "machines", machine(M4, FLEET_A, "web-3"))  # while no engine runs
    emulator.admin("DELETE", "machines/%s" % M1)
    rulebook = printing_rulebook(tmp_path, {"fleets_from": "api", "api_url": emulator.url, "token_file": str(token_file), "retries": 0,
                                            "interval": 0.5, "max_polls": 2, "initial": "none", "state_file": str(state_file)})
    code, output = Rulebook(rulebook_bin, collections_path, tmp_path / "second", rulebook, inventory, {}).wait()
    assert code == 0, output
    assert printed(output) == [("machine_joined", "web-3"), ("machine_left", "web-1")], output
    no_secret(secrets, output, state_file.read_text(encoding="utf-8"))


@pytest.mark.case("events", "ansible-rulebook's source is refused its OAuth token, which cannot be refreshed",
                  "the run ends with an error that says to log in again, and shows no secret")
def test_a_refused_token_ends_the_run(rulebook_bin: Path, collections_path: Path, emulator: t.Any, tmp_path: Path) -> None:
    token_file, secrets = login(emulator, tmp_path / "home", refresh=False)
    emulator.admin("POST", "tokens/expire", {"access_token": json.loads(token_file.read_text(encoding="utf-8"))["access_token"]})
    rulebook = printing_rulebook(tmp_path, {"fleets_from": "api", "api_url": emulator.url, "token_file": str(token_file), "retries": 0,
                                            "interval": 1, "max_polls": 30, "state_file": str(tmp_path / "state.json")})
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  hosts:\n    localhost:\n", encoding="utf-8")
    run = Rulebook(rulebook_bin, collections_path, tmp_path / "run", rulebook, inventory, {})
    code, output = run.wait()
    assert code != 0
    assert "log in again with cmdop login" in output
    assert time.monotonic() - run.started < 60
    no_secret(secrets, output)


@pytest.mark.case("events", "provision_new_machines: a machine joins while an inventory cache from before it is fresh",
                  "the playbook runs on the new machine only, from the inventory plugin with its cache on")
def test_provision_new_machines_reaches_the_new_machine(rulebook_bin: Path, collections_path: Path, emulator: t.Any, tmp_path: Path) -> None:
    token_file, secrets = login(emulator, tmp_path / "home")
    inventory = tmp_path / "fleets.cmdop.yml"
    inventory.write_text(yaml.safe_dump({
        "plugin": "cmdop.fleet.cmdop", "fleets_from": "api", "api_url": emulator.url, "token_file": str(token_file),
        "cache": True, "cache_plugin": "ansible.builtin.jsonfile", "cache_connection": str(tmp_path / "cache"), "cache_timeout": 3600,
        "compose": {"ansible_connection": "'local'", "ansible_python_interpreter": "'%s'" % (rulebook_bin / "python")},
    }), encoding="utf-8")
    listed = subprocess.run([str(rulebook_bin / "ansible-inventory"), "-i", str(inventory), "--list"], capture_output=True, text=True, check=True,
                            env=dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections_path), HOME=str(tmp_path / "home")))
    assert "web-3" not in listed.stdout and any((tmp_path / "cache").iterdir())  # a cache from before the machine joined
    state_file = tmp_path / "state.json"
    run = Rulebook(rulebook_bin, collections_path, tmp_path / "run", RULEBOOKS / "provision_new_machines.yml", inventory, {
        "cmdop_events_fleets_from": "api", "cmdop_events_api_url": emulator.url, "cmdop_events_token_file": str(token_file),
        "cmdop_events_interval": 1.5, "cmdop_events_max_polls": 3, "cmdop_events_state_file": str(state_file)})
    wait_for_poll(state_file, 1, run)
    emulator.admin("POST", "machines", machine(M4, FLEET_A, "web-3"))
    code, output = run.wait()
    assert code == 0, output
    assert re.search(r"ok: \[web-3\]", output), output
    assert "provisioned web-3 (machine %s of fleet team-a) after machine_joined" % M4 in output
    assert not re.search(r"(ok|changed|failed|fatal): \[web-[12]\]", output), output  # only the new machine
    no_secret(secrets, output)


@pytest.mark.case("events", "sync_on_change: the account is added to a fleet while the rulebook runs",
                  "the sync playbook (the fleet_sync role) runs and the fleet file gets the new fleet")
def test_sync_on_change_syncs_the_new_fleet(rulebook_bin: Path, collections_path: Path, emulator: t.Any, tmp_path: Path) -> None:
    token_file, secrets = login(emulator, tmp_path / "home")
    fleet_file = tmp_path / "home" / "ssh_workspaces.json"
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  hosts:\n    localhost:\n      ansible_connection: local\n      ansible_python_interpreter: %s\n"
                         % (rulebook_bin / "python"), encoding="utf-8")
    state_file = tmp_path / "state.json"
    run = Rulebook(rulebook_bin, collections_path, tmp_path / "run", RULEBOOKS / "sync_on_change.yml", inventory, {
        "fleet_sync_api_url": emulator.url, "fleet_sync_token_file": str(token_file), "fleet_sync_path": str(fleet_file),
        "cmdop_events_token_file": str(token_file), "cmdop_events_interval": 1.5, "cmdop_events_max_polls": 3,
        "cmdop_events_state_file": str(state_file)})
    wait_for_poll(state_file, 1, run)
    emulator.admin("POST", "fleets", fleet(FLEET_C, "Staging"))
    code, output = run.wait()
    assert code == 0, output
    names = sorted(entry["remote_name"] for entry in json.loads(fleet_file.read_text(encoding="utf-8"))["workspaces"])
    assert names == ["Lab", "Staging", "Team A"], output
    no_secret(secrets, output, fleet_file.read_text(encoding="utf-8"))


def test_the_decision_environment_definition_makes_a_build_context(tmp_path: Path) -> None:
    """ansible-builder create accepts the definition; the context installs the collection (whose needs introspect.py
    reads from meta/execution-environment.yml, as tests/e2e/test_packaging.py proves) and Java 17 on the rulebook image."""
    definition = RULEBOOKS.parent / "decision-environment" / "decision-environment.yml"
    context = tmp_path / "context"
    builder = Path(sys.executable).parent / "ansible-builder"
    subprocess.run([str(builder), "create", "-f", str(definition), "-c", str(context)], cwd=tmp_path, check=True, capture_output=True, text=True)
    containerfile = next(path for path in (context / "Containerfile", context / "Dockerfile") if path.exists()).read_text(encoding="utf-8")
    assert "ansible-rulebook" in containerfile and "ansible-galaxy collection install" in containerfile and "introspect.py introspect" in containerfile
    assert yaml.safe_load((context / "_build" / "requirements.yml").read_text(encoding="utf-8")) == {"collections": [{"name": "cmdop.fleet"}]}
    assert "java-17-openjdk-headless" in (context / "_build" / "bindep.txt").read_text(encoding="utf-8")
