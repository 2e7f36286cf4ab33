"""How many CPUs this process may really use: its affinity mask, capped by a cgroup v2 CPU quota.

``os.cpu_count()`` counts the machine's cores: 64 on a 2-CPU pod of a 64-core node. The server's and the corpus
engine's worker defaults both come from here.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def usable_cpus(cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """CPUs in this process's affinity mask, at most the cgroup v2 quota (``cpu.max``: quota and period) rounded up."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = cgroup_quota(cpu_max)
    return max(1, min(cores, quota) if quota is not None else cores)


def cgroup_quota(cpu_max: Path = CGROUP_CPU_MAX) -> int | None:
    """The cgroup v2 CPU quota in whole CPUs (rounded up), or None when there is none or no cgroup v2."""
    try:
        quota, period = cpu_max.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return max(1, math.ceil(int(quota) / int(period)))
    except (ValueError, ZeroDivisionError):
        return None
