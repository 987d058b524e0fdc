"""The event source ``cmdop.fleet.fleet_events`` against the inventory's cold listing of the same account (issue 17: "one
poll of 20,000 machines in 500 fleets costs no more than the inventory's cold listing of the same account").

The account is the inventory benchmark's (``bench_inventory.Account``: every fleet listed in the fleet file with its own
API key, so one listing per fleet). Each poll is a process of its own, in the interpreter ansible-rulebook runs the
source with (``.venvs/rulebook``, scripts/bootstrap-eda.sh): it loads the source with runpy, as ansible-rulebook does, and
runs its ``main(queue, args)`` with ``max_polls: 1`` and ``initial: snapshot``; the queue counts what it is given. Its wall
time and peak memory (``ru_maxrss``) are the poll's, Python's start and the source's imports included, as the baseline's
are ansible-inventory's. Measured, interleaved, ``rounds`` times each:

- first start: no state file (removed before each run): the poll, the ``snapshot`` event of every host, the state written;
- restart: the state file of an earlier poll, nothing changed since: the poll, the comparison, the ``snapshot``, the state
  written again;
- against ``ansible-inventory --graph cmdop --flush-cache`` (the inventory's cold row: the API read, the cache written);
- the polls' peak memory against the cold listing's.

Each poll must make the same API requests as the cold listing (checked on the first round) and put exactly one event on
the queue, the snapshot of every host.
"""

from __future__ import annotations

import json
import sys
import typing as t
from pathlib import Path

from bench_inventory import MACHINES_PATH, Account  # pylint: disable=import-error
from measure import Row, Run, expect, interleaved, median, peak_kib, run  # pylint: disable=import-error

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

from harness import REPO_ROOT, AnsibleRunner  # noqa: E402  pylint: disable=wrong-import-position,import-error

RULEBOOK_PYTHON = REPO_ROOT / ".venvs" / "rulebook" / "bin" / "python"
TARGET = 1.0  # the bound: no more than the inventory's cold listing

# One start of the source, as ansible-rulebook starts it (runpy), with a queue that keeps a summary of each event.
DRIVER = '''import asyncio, json, runpy, sys
class Queue:
    def __init__(self):
        self.events = []
    async def put(self, event):
        hosts = event["meta"].get("hosts")
        self.events.append([event["cmdop"]["type"], len(hosts) if isinstance(hosts, list) else 1])
queue = Queue()
asyncio.run(runpy.run_path(sys.argv[1])["main"](queue, json.loads(sys.argv[2])))
print(json.dumps(queue.events))
'''


def case(runner: AnsibleRunner, collections: Path, folder: Path, label: str, fleets: int, machines_per_fleet: int, rounds: int) -> t.List[Row]:
    expect(RULEBOOK_PYTHON.exists(), "no %s: run scripts/bootstrap-eda.sh (make bench's bootstrap makes it)" % RULEBOOK_PYTHON)
    source = collections / "ansible_collections" / "cmdop" / "fleet" / "extensions" / "eda" / "plugins" / "event_source" / "fleet_events.py"
    with Account(runner, folder, fleets, machines_per_fleet) as account:
        driver = folder / "poll.py"
        driver.write_text(DRIVER, encoding="utf-8")
        emulator = account.emulator

        def poll(state_file: Path, first_start: bool) -> t.Callable[[], Run]:
            args = json.dumps({"fleets_from": "file", "path": str(account.fleet_file), "api_url": emulator.url, "max_polls": 1,
                               "initial": "snapshot", "state_file": str(state_file)})

            def once() -> Run:
                if first_start and state_file.exists():
                    state_file.unlink()
                result = run([str(RULEBOOK_PYTHON), str(driver), str(source), args], account.env, cwd=str(runner.workdir))
                expect(result.rc == 0, "the source's poll failed: %s" % result.stderr[-2000:])
                expect(json.loads(result.stdout) == [["snapshot", account.hosts]], "the poll did not give one snapshot of every host: %s%s"
                       % (result.stdout[-500:], result.stderr[-2000:]))
                expect(not result.stderr.strip(), "the poll warned: %s" % result.stderr[-2000:])
                expect(state_file.exists(), "the poll wrote no state file")
                return result
            return once

        sent: t.Dict[str, t.List[t.Tuple[str, str]]] = {}

        def logged(name: str, variant: t.Callable[[], Run]) -> t.Callable[[], Run]:
            """The variant; on its first run, the API requests it sent are kept (the emulator's log emptied before)."""
            def once() -> Run:
                if name in sent:
                    return variant()
                emulator.admin("DELETE", "requests")
                result = variant()
                sent[name] = sorted((item["path"], str(item["query"].get("page"))) for item in emulator.admin("GET", "requests")
                                    if item["path"].startswith("/api/"))
                return result
            return once

        restart = poll(folder / "state-restart.json", False)
        restart()  # writes the state the restarts start from
        runs = interleaved({"cold": logged("cold", account.graph(account.config, "--flush-cache")),
                            "first": logged("first", poll(folder / "state-first.json", True)), "restart": logged("restart", restart)}, rounds)
        expect(len([path for path, _page in sent["cold"] if path == MACHINES_PATH]) >= fleets, "the cold listing did not list every fleet")
        expect(sent["first"] == sent["cold"] and sent["restart"] == sent["cold"], "a poll did not send the cold listing's requests")
        polls = runs["first"] + runs["restart"]
        baseline = "inventory cold %.2f s" % median(runs["cold"])
        return [
            Row("event source %s, one poll, first start (snapshot)" % label, median(runs["first"]) / median(runs["cold"]), TARGET,
                "%.2f s" % median(runs["first"]), baseline),
            Row("event source %s, one poll, restart (state read, no change)" % label, median(runs["restart"]) / median(runs["cold"]), TARGET,
                "%.2f s" % median(runs["restart"]), baseline),
            Row("event source %s, peak memory of a poll" % label, peak_kib(polls) / peak_kib(runs["cold"]), None,
                "%d MiB" % (peak_kib(polls) // 1024), "inventory cold %d MiB" % (peak_kib(runs["cold"]) // 1024)),
        ]
