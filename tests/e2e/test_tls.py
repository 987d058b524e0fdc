"""validate_certs and TLS: the emulator serves HTTPS with a self-signed certificate made for the test."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import time
import typing as t
from pathlib import Path

import pytest

from harness import DEFAULT_EMULATOR_SEED, Emulator


@pytest.fixture
def tls_emulator(clean_targets: t.Any, tmp_path: Path) -> t.Iterator[t.Tuple[Emulator, Path]]:
    """An HTTPS emulator, and its certificate where the target user of t1 can read it."""
    entry = pwd.getpwnam(clean_targets.user("t1"))
    folder = Path(entry.pw_dir) / ".cmdop"
    folder.mkdir(mode=0o700, exist_ok=True)
    cert, key = folder / "ca.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    for path in (folder, cert):
        os.chown(path, entry.pw_uid, entry.pw_gid)
    emulator = Emulator(DEFAULT_EMULATOR_SEED, tmp_path / "emulator", extra_args=["--tls-cert", str(cert), "--tls-key", str(key)])
    emulator.verify = str(cert)
    try:
        emulator.start()
        yield emulator, cert
    finally:
        emulator.stop()


def login(emulator: Emulator, home: Path) -> None:
    token = emulator.admin("POST", "tokens", {"user": "u-alice", "expires_in": 3600})
    token["expires_at"] = time.time() + 3600
    path = home / ".cmdop" / "token_prod.json"
    path.write_text(json.dumps(token), encoding="utf-8")
    entry = pwd.getpwnam(home.owner())
    os.chown(path, entry.pw_uid, entry.pw_gid)
    os.chmod(path, 0o600)


def play(args: dict, environment: t.Optional[dict] = None) -> list:
    task: dict = {"name": "sync", "cmdop.fleet.sync": args}
    if environment:
        task["environment"] = environment
    return [{"hosts": "t1", "gather_facts": False, "tasks": [task]}]


def test_an_untrusted_certificate_fails_clearly_then_works_when_trusted(tls_emulator, clean_targets, inventory, run_playbook):
    emulator, cert = tls_emulator
    assert emulator.url.startswith("https://127.0.0.1:")
    login(emulator, clean_targets.home("t1"))
    args = {"api_url": emulator.url, "retries": 0}

    refused = run_playbook(play(args), inventory)
    out = refused.task("sync", "t1")
    assert refused.status("sync", "t1") == "failed"
    assert out["msg"].startswith("sync: TLS error talking to https://127.0.0.1") and "validate_certs" in out["msg"], out["msg"]
    assert not (clean_targets.home("t1") / ".cmdop" / "ssh_workspaces.json").exists()

    # A private CA, the way requests takes one: REQUESTS_CA_BUNDLE in the task's environment.
    trusted = run_playbook(play(args, {"REQUESTS_CA_BUNDLE": str(cert)}), inventory)
    assert trusted.rc == 0, trusted.describe()
    assert len(trusted.task("sync", "t1")["added"]) == 3


def test_validate_certs_false_accepts_the_certificate(tls_emulator, clean_targets, inventory, run_playbook):
    emulator, _cert = tls_emulator
    login(emulator, clean_targets.home("t1"))
    result = run_playbook(play({"api_url": emulator.url, "validate_certs": False}), inventory)
    assert result.rc == 0, result.describe()
    assert len(result.task("sync", "t1")["added"]) == 3
