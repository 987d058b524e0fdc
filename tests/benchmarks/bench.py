"""`make bench`: every benchmark of cmdop.fleet, as one table of ratios against baselines measured in the same run.

    .venv/bin/python tests/benchmarks/bench.py          # the sizes of docs/performance.md (a few minutes)
    .venv/bin/python tests/benchmarks/bench.py --ci     # small sizes, one round: checks the benchmark still works
    .venv/bin/python tests/benchmarks/bench.py --only events   # only some of the cases (inventory, sync, reconcile, events)

Every ratio is the median of interleaved runs of the case and its baseline on this machine, never a wall time
against a fixed limit. A run that does not do what it measures (a missing host, a request on a cache hit, a failed
play) stops the benchmark. With --ci the table is printed and targets are not judged (sizes too small to mean much).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import typing as t
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

import bench_events  # noqa: E402  pylint: disable=wrong-import-position,import-error
import bench_inventory  # noqa: E402  pylint: disable=wrong-import-position,import-error
import bench_sync  # noqa: E402  pylint: disable=wrong-import-position,import-error
from harness import AnsibleRunner, collection_layout  # noqa: E402  pylint: disable=wrong-import-position,import-error
from measure import Row, table  # noqa: E402  pylint: disable=wrong-import-position,import-error

FULL = {"small": (2, 25), "large": (500, 40), "rounds": 5, "large_rounds": 2, "targets": 20, "sync_rounds": 3, "entries": (1000, 10000, 100000),
        "reconcile_rounds": 3, "events_rounds": 2}
CI = {"small": (2, 5), "large": (10, 10), "rounds": 1, "large_rounds": 1, "targets": 2, "sync_rounds": 1, "entries": (100, 1000), "reconcile_rounds": 1,
      "events_rounds": 1}
CASES = ("inventory", "sync", "reconcile", "events")


def machine() -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    except OSError:
        pass
    import ansible  # pylint: disable=import-outside-toplevel
    return "%s, %d cores, %s, Python %s, ansible-core %s" % (cpu, os.cpu_count() or 0, platform.platform(), platform.python_version(), ansible.__version__)


def progress(rows: t.List[Row]) -> None:
    """The rows measured so far, on stderr, so a long run shows where it is (the table comes at the end, on stdout)."""
    sys.stderr.write("bench: %d rows measured, the last: %s %.2fx\n" % (len(rows), rows[-1].case, rows[-1].ratio))
    sys.stderr.flush()


def main(argv: t.Optional[t.List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ci", action="store_true", help="small sizes, one round, targets not judged")
    parser.add_argument("--only", action="append", choices=CASES, help="run only this case (may be given again); by default all")
    args = parser.parse_args(argv)
    sizes = CI if args.ci else FULL
    rows: t.List[Row] = []
    with tempfile.TemporaryDirectory(prefix="cmdop-bench-") as workdir:
        collections = collection_layout()
        runner = AnsibleRunner(collections, Path(workdir) / "ansible")
        small, large = sizes["small"], sizes["large"]
        large_label = "%d machines in %d fleets" % (large[0] * large[1], large[0])
        only = set(args.only or CASES)
        if "inventory" in only:
            rows += bench_inventory.case(runner, Path(workdir) / "small", "%d machines" % (small[0] * small[1]), small[0], small[1], sizes["rounds"], False)
            progress(rows)
            rows += bench_inventory.case(runner, Path(workdir) / "large", large_label, large[0], large[1], sizes["large_rounds"], True)
            progress(rows)
        if "events" in only:  # the same account as the inventory's large case
            rows += bench_events.case(runner, collections, Path(workdir) / "events", large_label, large[0], large[1], sizes["events_rounds"])
            progress(rows)
        if "sync" in only:
            rows += bench_sync.sync_case(runner, Path(workdir) / "sync", sizes["targets"], sizes["sync_rounds"])
            progress(rows)
        if "reconcile" in only:
            rows += bench_sync.reconcile_case(collections, sizes["entries"], sizes["reconcile_rounds"])
    print("\n" + machine())
    print(table(rows))
    missed = [row.case for row in rows if row.met == "NO"]
    if args.ci:
        print("bench --ci: %d rows measured (targets are not judged at this size)" % len(rows))
        return 0
    print("targets missed: %s" % ("; ".join(missed) if missed else "none"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
