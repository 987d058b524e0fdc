"""Tests of the end-to-end harness itself: real sshd, real users, real ansible-playbook, real emulator."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from harness import REPO_ROOT, TARGET_PYTHON, SshTargets

PING_PLAYBOOK = """
- name: Reach the SSH targets
  hosts: all
  gather_facts: false
  tasks:
    - name: ping
      ansible.builtin.ping:

    - name: facts
      ansible.builtin.setup:
        gather_subset: [min]

    - name: target python has the distribution's libraries
      ansible.builtin.command:
        cmd: >-
          {{ ansible_python_interpreter }} -c
          "import requests, requests_oauthlib, jsonschema; print(requests.__file__)"
      changed_when: false
"""


def test_collections_path_is_this_checkout(collections_path: Path, ansible_cli) -> None:
    assert (collections_path / "ansible_collections" / "cmdop" / "fleet").resolve() == REPO_ROOT
    result = ansible_cli("ansible-galaxy", ["collection", "list", "cmdop.fleet", "--format", "json"])
    assert result.rc == 0, result.describe()
    listed = result.json()
    assert list(listed) == [str(collections_path / "ansible_collections")], listed
    assert "cmdop.fleet" in listed[str(collections_path / "ansible_collections")]


def test_sshd_accepts_key_logins_as_each_user(ssh_targets) -> None:
    with socket.create_connection(("127.0.0.1", ssh_targets.port), timeout=5) as sock:
        assert sock.recv(64).startswith(b"SSH-2.0-")
    for host, user in ssh_targets.hosts.items():
        proc = ssh_targets.ssh(host, "id -un; echo $HOME")
        assert proc.returncode == 0, proc.stderr + ssh_targets.log()
        assert proc.stdout.split() == [user, str(ssh_targets.home(user))]


def test_targets_have_distinct_homes(ssh_targets) -> None:
    assert ssh_targets.users == ["cmdop-s%d-t1" % ssh_targets.slot, "cmdop-s%d-t2" % ssh_targets.slot]
    homes = {ssh_targets.home(user) for user in ssh_targets.users}
    assert len(homes) == 2
    assert ssh_targets.home("t1") == ssh_targets.home(ssh_targets.user("t1"))
    for home in homes:
        assert home.is_dir()
        assert (home / ".ssh" / "authorized_keys").stat().st_mode & 0o777 == 0o600


def test_a_second_session_takes_another_slot_with_its_own_users_and_sshd(ssh_targets, tmp_path: Path) -> None:
    """What lets pytest-xdist workers and separate sessions run side by side: each holds a slot of its own."""
    other = SshTargets(tmp_path / "other")
    try:
        other.start()
        assert other.slot is not None and other.slot != ssh_targets.slot
        assert set(other.users).isdisjoint(ssh_targets.users) and other.port != ssh_targets.port
        proc = other.ssh("t1", "id -un")
        assert proc.returncode == 0 and proc.stdout.strip() == other.user("t1"), proc.stderr + other.log()
    finally:
        other.stop()
    assert ssh_targets.ssh("t1", "id -un").stdout.strip() == ssh_targets.user("t1")


def test_reset_cmdop_wipes_only_the_given_user(clean_targets) -> None:
    for user in clean_targets.users:
        assert not (clean_targets.home(user) / ".cmdop").exists()
        (clean_targets.home(user) / ".cmdop").mkdir()
    clean_targets.reset_cmdop("t1")
    assert not (clean_targets.home("t1") / ".cmdop").exists()
    assert (clean_targets.home("t2") / ".cmdop").is_dir()
    clean_targets.reset_cmdop()
    assert not (clean_targets.home("t2") / ".cmdop").exists()


def test_ping_both_targets_with_system_python(run_playbook, inventory, ssh_targets) -> None:
    result = run_playbook(PING_PLAYBOOK, inventory)
    assert result.rc == 0, result.describe()
    assert set(result.stats) == {"t1", "t2"}
    for host, user in ssh_targets.hosts.items():
        assert result.task("ping", host)["ping"] == "pong"
        assert result.status("ping", host) == "ok"
        facts = result.task("facts", host)["ansible_facts"]
        assert facts["ansible_user_id"] == user
        assert facts["ansible_python"]["executable"] == TARGET_PYTHON
        assert facts["ansible_env"]["HOME"] == str(ssh_targets.home(user))
        libs = result.task("target python has the distribution's libraries", host)["stdout"]
        assert libs.startswith("/usr/lib/python3/dist-packages/requests/"), libs
        assert result.stats[host]["failures"] == 0 and result.stats[host]["unreachable"] == 0
    assert "PLAY RECAP" in result.stdout  # stdout is the default callback's human output
    assert "[WARNING]" not in result.stderr, result.stderr


def test_run_playbook_options_and_failures(run_playbook, ssh_targets, tmp_path: Path) -> None:
    inventory = ssh_targets.inventory(tmp_path / "inv.yml", {"t2": {"harness_marker": "two"}})
    playbook = tmp_path / "play.yml"
    playbook.write_text("""
- hosts: all
  gather_facts: false
  tasks:
    - name: echo
      ansible.builtin.debug:
        msg: "{{ greeting }} {{ harness_marker | default('none') }}"
    - name: secret
      ansible.builtin.debug:
        msg: "{{ secret_value }}"
      no_log: true
    - name: remote
      ansible.builtin.command: id -un
      changed_when: false
    - name: fail on t2
      ansible.builtin.fail:
        msg: boom
      when: inventory_hostname == 't2'
""", encoding="utf-8")
    secret = "s3cr3t-harness-value"
    result = run_playbook(playbook, inventory, extra_vars={"greeting": "hi", "secret_value": secret}, verbosity=4, limit="t2")
    assert result.rc == 2, result.describe()
    assert set(result.stats) == {"t2"}
    assert result.task("echo", "t2")["msg"] == "hi two"
    assert result.status("fail on t2", "t2") == "failed"
    assert result.task("fail on t2", "t2")["msg"] == "boom"
    assert "censored" in result.task("secret", "t2")
    assert secret not in result.stdout + result.stderr
    assert result.task("remote", "t2")["stdout"] == ssh_targets.user("t2")
    assert "ESTABLISH SSH CONNECTION FOR USER: %s" % ssh_targets.user("t2") in result.stdout  # -vvvv reached the human output
    with pytest.raises(AssertionError):
        result.task("echo", "t1")


def test_run_inventory_lists_both_targets(run_inventory, ssh_targets, tmp_path: Path) -> None:
    inventory = ssh_targets.inventory(tmp_path / "inv.yml", {ssh_targets.user("t1"): {"extra": 1}})
    result = run_inventory(["-i", inventory, "--list"])
    assert result.rc == 0, result.describe()
    hostvars = result.json()["_meta"]["hostvars"]
    assert set(hostvars) == {"t1", "t2"}
    assert hostvars["t1"]["extra"] == 1 and "extra" not in hostvars["t2"]
    assert hostvars["t2"]["ansible_user"] == ssh_targets.user("t2")
    assert hostvars["t1"]["ansible_port"] == ssh_targets.port


def test_emulator_starts_and_answers(emulator) -> None:
    assert emulator.url == "http://127.0.0.1:%d" % emulator.port
    state = emulator.admin("GET", "/_admin/state")
    assert isinstance(state, dict) and state
    assert isinstance(emulator.admin("GET", "requests"), (list, dict))
