"""What the benchmarks share: the command they print, target verdicts, Redis clients, stopping
a fleet's workers, and the memory and CPU time of a process tree."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import redis

from tests.support.fleet import Fleet


def command_line() -> str:
    """How this run was started, as a person would type it from the repository."""
    argv = list(sys.argv)
    main = Path(argv[0])
    if main.suffix == ".py" and main.parent.name == "benchmarks":
        argv[0:1] = ["-m", f"tests.benchmarks.{main.stem}"]
    return " ".join([".venv/bin/python", *argv])


def verdict(met: bool, target: str) -> str:
    return f"target {target}: {'met' if met else 'MISSED'}"


def client_for(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True)


def stop_all(fleet: Fleet) -> None:
    """SIGTERM to every worker at once, then wait for each (a warm shutdown takes a second)."""
    for worker in fleet.workers:
        if worker.running():
            worker.popen.send_signal(signal.SIGTERM)
    fleet.stop()


def tree_rss_kb(pid: int) -> int:
    """Resident memory of a process and all its descendants (``VmRSS`` from ``/proc``), in KiB;
    0 for a process that is gone."""
    return sum(_vm_rss_kb(each) for each in [pid, *_descendants(pid)])


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process and its descendants alive now.

    Steadier than throughput on a shared machine: other processes slow a worker down, but
    hardly change how much CPU its own work takes."""
    ticks = 0
    for each in [pid, *_descendants(pid)]:
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (stat fields 14 and 15)
    return ticks / os.sysconf("SC_CLK_TCK")


def _vm_rss_kb(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
        for child in children:
            found += [child, *_descendants(child)]
    return found
