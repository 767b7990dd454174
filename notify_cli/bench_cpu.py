"""CPU used during a benchmark phase, in cores, from ``/proc`` (Linux; ``None`` elsewhere).

Latency tails on a small machine follow whatever else it runs: a phase records the cores its own
processes and the rest of the machine used meanwhile, so figures from a busy machine are
recognisable as such instead of passing for the API's own.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class Snapshot:
    at: float
    machine_busy: int  # jiffies over all CPUs: everything but idle and iowait
    machine_all: int
    processes: dict[str, float]  # CPU seconds of each named process


def _process_seconds(pid: int) -> float:
    # After the parenthesised command name, utime and stime are the 12th and 13th fields.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def snapshot(pids: Mapping[str, int]) -> Snapshot | None:
    try:
        jiffies = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        processes = {name: _process_seconds(pid) for name, pid in pids.items()}
    except (OSError, ValueError, IndexError):
        return None
    return Snapshot(time.monotonic(), sum(jiffies) - jiffies[3] - jiffies[4], sum(jiffies), processes)


def cores_between(before: Snapshot | None, after: Snapshot | None) -> dict[str, float] | None:
    """Cores each named process used between the snapshots; ``rest`` is Kafka, PostgreSQL and
    anything else on the machine."""
    if before is None or after is None or after.machine_all <= before.machine_all or after.at <= before.at:
        return None
    cpus = os.cpu_count() or 1
    machine = cpus * (after.machine_busy - before.machine_busy) / (after.machine_all - before.machine_all)
    wall = after.at - before.at
    ours = {name: (after.processes[name] - s) / wall for name, s in before.processes.items()}
    return {
        "cpus": cpus,
        "machine": round(machine, 2),
        **{name: round(cores, 2) for name, cores in ours.items()},
        "rest": round(max(machine - sum(ours.values()), 0.0), 2),
    }
