"""The module side: cmdop.fleet.sync on SSH targets against ansible.builtin.ping on the same targets, and reconciliation.

- sync: the fetch-once pattern (``fleet_info`` once on the controller, ``sync`` with ``fleets:`` on every target),
  forks = targets, pipelining on, against a play of ``ansible.builtin.ping`` on the same targets: what an Ansible
  task costs on those hosts anyway. The targets are local users ``cmdop-b01``... reached over the harness's sshd,
  created (and kept) under the harness's machine-wide lock. Each sync run must make exactly one API request.
  The files are synced once before the measured runs, so these are the runs of every day (nothing to change).
- reconciliation: parse (JSON and schema), reconcile and serialize a fleet file of N entries against the server's
  N fleets, against ``json.loads`` plus ``json.dumps`` of the same file.
"""

from __future__ import annotations

import json
import sys
import time
import typing as t
from pathlib import Path

import yaml

from measure import Row, Run, expect, interleaved, median, run  # pylint: disable=import-error

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

from harness import AnsibleRunner, Emulator, SshTargets  # noqa: E402  pylint: disable=wrong-import-position,import-error

USER = "u-bench"
TOKEN = "cmdop_bench_access_1111111111111111111111"


def sync_case(runner: AnsibleRunner, folder: Path, targets: int, rounds: int) -> t.List[Row]:
    folder.mkdir(parents=True)
    hosts = {"b%02d" % number: "cmdop-b%02d" % number for number in range(1, targets + 1)}
    seed = {"users": [{"id": USER, "email": "bench@example.com"}],
            "fleets": [{"id": "0b100000-0000-4000-8000-%012d" % number, "name": "Fleet %d" % number, "members": [USER]} for number in range(5)],
            "machines": [], "tokens": [{"access_token": TOKEN, "user": USER, "expires_in": 36000}]}
    emulator = Emulator(seed, folder / "emulator").start()
    ssh = SshTargets(folder / "ssh", hosts=hosts)
    try:
        ssh.start()
        inventory = ssh.inventory(folder / "targets.yml")
        sync = folder / "sync.yml"
        sync.write_text(yaml.safe_dump([{"hosts": "all", "gather_facts": False, "tasks": [
            {"name": "list once", "cmdop.fleet.fleet_info": {"api_url": emulator.url, "token": TOKEN},
             "delegate_to": "localhost", "run_once": True, "register": "account",
             "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}"}},
            {"name": "sync", "cmdop.fleet.sync": {"fleets": "{{ account.fleets }}"}},
        ]}]), encoding="utf-8")
        ping = folder / "ping.yml"
        ping.write_text(yaml.safe_dump([{"hosts": "all", "gather_facts": False, "tasks": [{"name": "ping", "ansible.builtin.ping": {}}]}]),
                        encoding="utf-8")
        env = runner.env({"ANSIBLE_FORKS": str(targets), "ANSIBLE_PIPELINING": "True"})
        tool = str(runner.bin / "ansible-playbook")

        def play(path: Path, requests: t.Optional[int]) -> t.Callable[[], Run]:
            def once() -> Run:
                emulator.admin("DELETE", "requests")
                result = run([tool, "-i", str(inventory), str(path)], env, cwd=str(runner.workdir))
                expect(result.rc == 0 and "failed=0" in result.stdout and "unreachable=0" in result.stdout,
                       "%s failed: %s%s" % (path.name, result.stdout[-3000:], result.stderr[-2000:]))
                expect(result.stdout.count("ok=") == targets, "%s did not run on every target" % path.name)
                if requests is not None:
                    sent = [item for item in emulator.admin("GET", "requests") if item["path"].startswith("/api/")]
                    expect(len(sent) == requests, "%s made %d API requests, not %d" % (path.name, len(sent), requests))
                return result
            return once

        play(sync, 1)()  # the first sync writes every target's file
        for user in hosts.values():
            expect((ssh.home(user) / ".cmdop" / "ssh_workspaces.json").exists(), "sync wrote no fleet file for %s" % user)
        runs = interleaved({"ping": play(ping, None), "sync": play(sync, 1)}, rounds)
        return [Row("sync on %d SSH targets (fetch once, forks %d, pipelining)" % (targets, targets), median(runs["sync"]) / median(runs["ping"]), 1.3,
                    "%.2f s, 1 API request" % median(runs["sync"]), "ping %.2f s" % median(runs["ping"]))]
    finally:
        ssh.stop()
        emulator.stop()


def _plugin_utils(collections: Path) -> t.Any:
    if str(collections) not in sys.path:
        sys.path.insert(0, str(collections))
    from ansible_collections.cmdop.fleet.plugins.module_utils import _fleet_file, _reconcile  # pylint: disable=import-outside-toplevel
    return _fleet_file, _reconcile


def reconcile_case(collections: Path, sizes: t.Sequence[int], rounds: int) -> t.List[Row]:
    _fleet_file, _reconcile = _plugin_utils(collections)
    rows = []
    per_entry = {}
    for size in sizes:
        fleets = [{"id": "0c000000-0000-4000-8000-%012d" % number, "name": "Fleet %d" % number, "slug": "fleet-%d" % number} for number in range(size)]
        entries = [{"name": "fleet-%d" % number, "api_key": "", "server": "", "remote_id": fleet["id"], "remote_name": fleet["name"],
                    "last_synced_at": "2026-11-23T09:00:00Z"} for number, fleet in enumerate(fleets)]
        entries[0]["remote_name"] = "renamed"  # one change, so the file is written
        text = json.dumps({"active": "", "workspaces": entries}, indent=2) + "\n"

        def ours() -> Run:
            started = time.monotonic()
            document = _fleet_file.parse(text, "ssh_workspaces.json")
            result = _reconcile.reconcile(document, fleets, "prod", "2026-11-23T10:00:00Z")
            written = _fleet_file.serialize(result.document)
            elapsed = time.monotonic() - started
            expect(len(result.changes) == size and len(written) > len(text) // 2, "reconcile lost entries")
            return Run(elapsed, 0, 0, "", "")

        def baseline() -> Run:
            started = time.monotonic()
            json.dumps(json.loads(text), indent=2)
            return Run(time.monotonic() - started, 0, 0, "", "")

        runs = interleaved({"json": baseline, "reconcile": ours}, rounds)
        per_entry[size] = median(runs["reconcile"]) / size
        rows.append(Row("reconcile %d entries (parse, check, reconcile, write)" % size, median(runs["reconcile"]) / median(runs["json"]), 3.0,
                        "%.3f s" % median(runs["reconcile"]), "json.load+dump %.3f s" % median(runs["json"])))
    smallest, largest = min(sizes), max(sizes)
    rows.append(Row("reconcile: time per entry at %d against %d (linear: about 1)" % (largest, smallest), per_entry[largest] / per_entry[smallest], 1.5,
                    "%.1f us" % (per_entry[largest] * 1e6), "%.1f us" % (per_entry[smallest] * 1e6)))
    return rows
