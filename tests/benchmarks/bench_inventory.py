"""The inventory plugin against its floor: an inventory script printing the same hosts, groups and host variables.

The script's JSON is what the plugin printed in the same run (``ansible-inventory --list``), so both give
ansible-core the same inventory; the script's time is ansible-core's own cost of that inventory, which no
plugin can go below. Measured, interleaved, ``rounds`` times each:

Timed runs are ``ansible-inventory --graph cmdop`` (the inventory built, as a playbook builds it, and its host names
printed); the script's equality with the plugin is checked once with ``--list``.

- cold: the plugin reads the API (``--flush-cache``) and writes the cache;
- warm: the plugin answers from the cache (the emulator's request log must stay empty);
- with 50 ms of latency per API request against the same cold run at 0 ms (one run each);
- the plugin's peak memory against the script's.
"""

from __future__ import annotations

import json
import os
import sys
import typing as t
from pathlib import Path

import yaml

from measure import Row, Run, expect, interleaved, median, peak_kib, run  # pylint: disable=import-error

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

from harness import AnsibleRunner, Emulator  # noqa: E402  pylint: disable=wrong-import-position,import-error

LATENCY = 0.05
USER = "u-bench"
TOKEN = "cmdop_bench_access_0000000000000000000000"
MACHINES_PATH = "/api/machines/machines/"
TOP = "cmdop"  # the group of every host


def fleet_id(number: int) -> str:
    return "0b000000-0000-4000-8000-%012d" % number


def key(number: int) -> str:
    return "cmdop_live_bench_%05d_0000000000000000000" % number


def scenario(fleets: int, machines_per_fleet: int) -> t.Tuple[dict, dict]:
    """The emulator's seed and the fleet file: every fleet listed with its own API key."""
    seed: dict = {"users": [{"id": USER, "email": "bench@example.com"}], "fleets": [], "machines": [],
                  "tokens": [{"access_token": TOKEN, "user": USER, "expires_in": 36000}]}
    entries = []
    for number in range(fleets):
        seed["fleets"].append({"id": fleet_id(number), "name": "F%d" % number, "slug": "f%d" % number, "members": [USER], "api_keys": [key(number)]})
        entries.append({"name": "f%d" % number, "api_key": key(number), "server": "", "remote_id": fleet_id(number)})
        for index in range(machines_per_fleet):
            seed["machines"].append({"id": "m-%05d-%05d" % (number, index), "workspace": fleet_id(number), "name": "h-%05d-%05d" % (number, index),
                                     "hostname": "h-%05d-%05d.example.net" % (number, index),
                                     "local_ips": ["10.%d.%d.%d" % (number % 250, index // 250, index % 250)]})
    return seed, {"active": "", "workspaces": entries}


def plain(value: t.Any) -> t.Any:
    """ansible-inventory's JSON without 2.19's {"__ansible_unsafe": ...} markers (what a script prints)."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {name: plain(item) for name, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def write_script(folder: Path, listing: dict) -> Path:
    """An inventory script printing ``listing`` (hosts, groups, host vars in ``_meta``), in the venv's Python."""
    data = folder / "inventory.json"
    data.write_text(json.dumps(listing), encoding="utf-8")
    script = folder / "inventory.py"
    script.write_text("#!%s\nimport json\nwith open(%r) as f:\n    print(json.dumps(json.load(f)))\n" % (sys.executable, str(data)), encoding="utf-8")
    os.chmod(script, 0o755)
    return script


class Account:
    """``fleets`` x ``machines_per_fleet`` machines in the emulator, the fleet file listing every fleet with its key, and the
    plugin's configuration (cache on); ``graph(source, *args)`` is a timed ``ansible-inventory --graph`` of a source,
    ``listing(source, *args)`` its ``--list``. A context manager: the emulator stops at its end."""

    def __init__(self, runner: AnsibleRunner, folder: Path, fleets: int, machines_per_fleet: int) -> None:
        folder.mkdir(parents=True)
        self.runner = runner
        self.folder = folder
        self.hosts = fleets * machines_per_fleet
        seed, document = scenario(fleets, machines_per_fleet)
        self.emulator = Emulator(seed, folder / "emulator").start(timeout=120)
        self.fleet_file = folder / "ssh_workspaces.json"
        self.fleet_file.write_text(json.dumps(document), encoding="utf-8")
        self.config = folder / "bench.cmdop.yml"
        self.config.write_text(yaml.safe_dump({"plugin": "cmdop.fleet.cmdop", "path": str(self.fleet_file), "cache": True,
                                               "cache_plugin": "ansible.builtin.jsonfile", "cache_connection": str(folder / "cache")}),
                               encoding="utf-8")
        self.env = runner.env({"HOME": str(folder), "CMDOP_API_URL": self.emulator.url, "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "true"})
        self.tool = str(runner.bin / "ansible-inventory")

    def __enter__(self) -> "Account":
        return self

    def __exit__(self, *exc: t.Any) -> None:
        self.emulator.stop()

    def graph(self, source: Path, *args: str) -> t.Callable[[], Run]:
        """A timed run: --graph, the inventory built as a playbook builds it, without dumping every host variable."""
        def once() -> Run:
            result = run([self.tool, "-i", str(source), "--graph", TOP] + list(args), self.env, cwd=str(self.runner.workdir))
            expect(result.rc == 0, "ansible-inventory -i %s failed: %s" % (source, result.stderr[-2000:]))
            expect(result.stdout.count("|--") == self.hosts, "hosts are missing from -i %s" % source)
            return result
        return once

    def listing(self, source: Path, *args: str) -> dict:
        result = run([self.tool, "-i", str(source), "--list"] + list(args), self.env, cwd=str(self.runner.workdir))
        expect(result.rc == 0, "ansible-inventory -i %s --list failed: %s" % (source, result.stderr[-2000:]))
        return plain(json.loads(result.stdout))


def case(runner: AnsibleRunner, folder: Path, label: str, fleets: int, machines_per_fleet: int, rounds: int,
         latency_row: bool) -> t.List[Row]:
    with Account(runner, folder, fleets, machines_per_fleet) as account:
        hosts, emulator, config, listing, inventory = account.hosts, account.emulator, account.config, account.listing, account.graph
        first = listing(config, "--flush-cache")
        expect(len(first["_meta"]["hostvars"]) == hosts, "hosts are missing")
        script = write_script(folder, first)
        expect(listing(script) == first, "the script does not give the plugin's inventory (hosts, groups, host variables)")
        cold = inventory(config, "--flush-cache")
        floor = inventory(script)
        warm = inventory(config)

        def warm_without_requests() -> Run:
            emulator.admin("DELETE", "requests")
            result = warm()
            expect(not [item for item in emulator.admin("GET", "requests") if item["path"].startswith("/api/")], "a cache hit sent API requests")
            return result

        runs = interleaved({"script": floor, "cold": cold, "warm": warm_without_requests}, rounds)
        rows = [
            Row("inventory %s, cold (API read, cache written)" % label, median(runs["cold"]) / median(runs["script"]), targets(hosts)[0],
                "%.2f s" % median(runs["cold"]), "script %.2f s" % median(runs["script"])),
            Row("inventory %s, warm (cache hit, 0 API requests)" % label, median(runs["warm"]) / median(runs["script"]), targets(hosts)[1],
                "%.2f s" % median(runs["warm"]), "script %.2f s" % median(runs["script"])),
            Row("inventory %s, peak memory, cold" % label, peak_kib(runs["cold"]) / peak_kib(runs["script"]), None,
                "%d MiB" % (peak_kib(runs["cold"]) // 1024), "script %d MiB" % (peak_kib(runs["script"]) // 1024)),
        ]
        if latency_row:
            emulator.admin("POST", "latency", {"seconds": LATENCY})
            slow = cold().seconds
            emulator.admin("POST", "latency", {"seconds": 0})
            fast = cold().seconds
            requests = len([item for item in emulator.admin("GET", "requests") if item["path"] == MACHINES_PATH])
            rows.append(Row("inventory %s, cold, %d ms per request" % (label, LATENCY * 1000), slow / fast, 2.0, "%.2f s" % slow, "0 ms %.2f s" % fast))
            expect(requests > 0, "the cold runs sent no request")
        return rows


def targets(hosts: int) -> t.Tuple[float, float]:
    """(cold, warm) targets of the issue: 50 machines 1.15x and 1.05x; 20,000 machines 1.3x and 1.05x."""
    return (1.15, 1.05) if hosts <= 1000 else (1.3, 1.05)
