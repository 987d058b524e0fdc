"""What the benchmarks share: run a command and measure its wall time and peak memory; medians; the table.

``run(cmd, env)`` waits for the process with ``os.wait4``, so the peak resident
memory (``ru_maxrss``) is that process's (and its waited-for children's), not the
benchmark's.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import subprocess
import time
import typing as t


class BenchmarkError(RuntimeError):
    """A run that did not do what it measures (a missing host, a failed play, a request where none may be)."""


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise BenchmarkError(message)


@dataclasses.dataclass
class Run:
    seconds: float
    max_rss_kib: int
    rc: int
    stdout: str
    stderr: str


def run(cmd: t.Sequence[str], env: t.Mapping[str, str], cwd: t.Optional[str] = None) -> Run:
    """One process, its wall time and its peak resident memory."""
    out_path = "/tmp/cmdop-bench-%d.out" % os.getpid()
    err_path = "/tmp/cmdop-bench-%d.err" % os.getpid()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        started = time.monotonic()
        proc = subprocess.Popen(list(cmd), env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err)  # pylint: disable=consider-using-with
        status, usage = os.wait4(proc.pid, 0)[1:]
        elapsed = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
    with open(out_path, encoding="utf-8", errors="replace") as out, open(err_path, encoding="utf-8", errors="replace") as err:
        result = Run(elapsed, int(usage.ru_maxrss), proc.returncode, out.read(), err.read())
    os.unlink(out_path)
    os.unlink(err_path)
    return result


def interleaved(variants: t.Mapping[str, t.Callable[[], Run]], rounds: int) -> t.Dict[str, t.List[Run]]:
    """Each variant ``rounds`` times, in turn (a, b, c, a, b, c...), so a slow moment of the machine hits all alike."""
    runs: t.Dict[str, t.List[Run]] = {name: [] for name in variants}
    for _round in range(rounds):
        for name, variant in variants.items():
            runs[name].append(variant())
    return runs


def median(runs: t.Sequence[Run]) -> float:
    return statistics.median(item.seconds for item in runs)


def peak_kib(runs: t.Sequence[Run]) -> int:
    return max(item.max_rss_kib for item in runs)


@dataclasses.dataclass
class Row:
    """One line of the table: what was measured, the ratio to its baseline, the target, and the two medians."""

    case: str
    ratio: float
    target: t.Optional[float]  # None: shown, no target
    measured: str
    baseline: str

    @property
    def met(self) -> str:
        if self.target is None:
            return "-"
        return "yes" if self.ratio <= self.target else "NO"


def table(rows: t.Sequence[Row]) -> str:
    header = ("case", "ratio", "target", "met", "measured", "baseline")
    lines = [header] + [(row.case, "%.2fx" % row.ratio, "<= %.2fx" % row.target if row.target is not None else "-", row.met, row.measured, row.baseline)
                        for row in rows]
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    text = ["| " + " | ".join(cell.ljust(widths[column]) for column, cell in enumerate(line)) + " |" for line in lines]
    text.insert(1, "|" + "|".join("-" * (width + 2) for width in widths) + "|")
    return "\n".join(text)
