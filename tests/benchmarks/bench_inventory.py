"""A benchmark of cmdop.fleet.cmdop at scale: one fleet of 20,000 machines, and 500 fleets of 40 machines with their own keys.

Run it with `make bench` (scripts/bootstrap.sh first). It prints ratios against baselines measured in
the same run, on the same machine (never wall times against a fixed limit):

- concurrent reading (max_workers 8) against reading one request at a time (max_workers 1), with 50 ms of latency
  per API request in the emulator, as over a network;
- a run served from the cache (no request at all) against the same run reading the API, which shows how much of
  a run is ansible-core's own cost of that many hosts and variables.

It checks only that every host is there; it is not part of `make test`, which runs no timed test.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import typing as t
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

from harness import AnsibleRunner, Emulator, collection_layout  # noqa: E402  pylint: disable=wrong-import-position

LATENCY = 0.05
USER = "u-bench"
TOKEN = "cmdop_bench_access_0000000000000000000000"


def fleet_id(number: int) -> str:
    return "0b000000-0000-4000-8000-%012d" % number


def key(number: int) -> str:
    return "cmdop_live_bench_%05d_0000000000000000000" % number


def scenario(fleets: int, machines_per_fleet: int) -> t.Tuple[dict, dict]:
    """The emulator's seed and the fleet file."""
    seed: dict = {"users": [{"id": USER, "email": "bench@example.com"}], "fleets": [], "machines": [],
                  "tokens": [{"access_token": TOKEN, "user": USER, "expires_in": 36000}]}
    entries = []
    for number in range(fleets):
        seed["fleets"].append({"id": fleet_id(number), "name": "F%d" % number, "slug": "f%d" % number, "members": [USER], "api_keys": [key(number)]})
        entries.append({"name": "f%d" % number, "api_key": key(number), "server": "", "remote_id": fleet_id(number)})
        for index in range(machines_per_fleet):
            seed["machines"].append({"id": "m-%05d-%05d" % (number, index), "workspace": fleet_id(number), "name": "h-%05d-%05d" % (number, index),
                                     "local_ips": ["10.%d.%d.%d" % (number % 250, index // 250, index % 250)]})
    return seed, {"active": "", "workspaces": entries}


class BenchmarkError(RuntimeError):
    """A run that did not give the whole inventory."""


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise BenchmarkError(message)


def timed(run_inventory: t.Callable, args: t.List[str], env: dict) -> t.Tuple[float, t.Any]:
    started = time.monotonic()
    result = run_inventory(args, env=env)
    elapsed = time.monotonic() - started
    expect(result.rc == 0, "ansible-inventory failed: %s" % result.stderr[-2000:])
    return elapsed, result


def scale(tmp_path: Path, run_inventory: t.Callable, fleets: int, machines_per_fleet: int) -> None:
    seed, document = scenario(fleets, machines_per_fleet)
    emulator = Emulator(seed, tmp_path / "emulator").start(timeout=120)
    try:
        emulator.admin("POST", "latency", {"seconds": LATENCY})
        fleet_file = tmp_path / "ssh_workspaces.json"
        fleet_file.write_text(json.dumps(document), encoding="utf-8")
        env = {"HOME": str(tmp_path), "CMDOP_API_URL": emulator.url, "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "true"}
        times = {}
        for workers in (1, 8):
            config = tmp_path / ("w%d.cmdop.yml" % workers)
            config.write_text(yaml.safe_dump({"plugin": "cmdop.fleet.cmdop", "path": str(fleet_file), "max_workers": workers, "cache": True,
                                              "cache_plugin": "ansible.builtin.jsonfile", "cache_connection": str(tmp_path / "cache")}),
                              encoding="utf-8")
            times[workers], result = timed(run_inventory, ["-i", str(config), "--graph", "cmdop", "--flush-cache"], env)
            expect(result.stdout.count("|--") == fleets * machines_per_fleet, "hosts are missing")
        emulator.admin("DELETE", "requests")
        times["cached"], result = timed(run_inventory, ["-i", str(tmp_path / "w8.cmdop.yml"), "--graph", "cmdop"], env)
        expect(result.stdout.count("|--") == fleets * machines_per_fleet, "hosts are missing from the cached run")
        expect(emulator.admin("GET", "requests") == [], "the cached run sent requests")
    finally:
        emulator.stop()
    print("\n%d fleet(s) x %d machines, %d ms latency per request:" % (fleets, machines_per_fleet, LATENCY * 1000))
    print("  max_workers 8 takes %.2f of the time of max_workers 1 (speed-up x%.1f)" % (times[8] / times[1], times[1] / times[8]))
    print("  a cache hit takes %.2f of the time of max_workers 8 reading the API" % (times["cached"] / times[8]))


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="cmdop-bench-") as workdir:
        runner = AnsibleRunner(collection_layout(), Path(workdir) / "ansible")
        for number, (fleets, machines_per_fleet) in enumerate([(1, 20000), (500, 40)]):
            case = Path(workdir) / ("case%d" % number)
            case.mkdir()
            scale(case, runner.run_inventory, fleets, machines_per_fleet)


if __name__ == "__main__":
    main()
