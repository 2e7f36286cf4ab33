"""How many CPUs this process may really use: its affinity mask, capped by a cgroup CPU quota (v2 or v1).

``os.cpu_count()`` counts the machine's cores: 64 on a 2-CPU pod of a 64-core node. The server's and the corpus
engine's worker defaults both come from here.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
# cgroup v1 mounts the cpu controller on its own (``cpu``) or joined with cpuacct (``cpu,cpuacct``, which
# systemd links from both ``cpu`` and ``cpuacct``); a container sees its own cgroup at the mount point.
_V1_CPU_DIRS = ("cpu", "cpu,cpuacct", "cpuacct,cpu")


def usable_cpus(cgroup_root: Path = CGROUP_ROOT) -> int:
    """CPUs in this process's affinity mask, at most the cgroup CPU quota rounded up.

    ``cgroup_root`` is where the cgroup filesystem is mounted (a parameter so that tests can fake a tree).
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = cgroup_quota(cgroup_root)
    return max(1, min(cores, quota) if quota is not None else cores)


def cgroup_quota(cgroup_root: Path = CGROUP_ROOT) -> int | None:
    """The CPU quota in whole CPUs (rounded up), or None when there is none.

    cgroup v2: ``<root>/cpu.max`` ("<quota> <period>" or "max <period>"). cgroup v1, still the default on many
    nodes: ``<root>/cpu/cpu.cfs_quota_us`` (-1: no quota) over ``cpu.cfs_period_us``. A file that cannot be read
    or parsed counts as no quota: the affinity mask still applies.
    """
    v2 = _read_words(cgroup_root / "cpu.max")
    if v2 is not None:
        return None if len(v2) < 2 or v2[0] == "max" else _whole_cpus(v2[0], v2[1])
    for name in _V1_CPU_DIRS:
        quota = _read_words(cgroup_root / name / "cpu.cfs_quota_us")
        period = _read_words(cgroup_root / name / "cpu.cfs_period_us")
        if quota and period:
            return _whole_cpus(quota[0], period[0])
    return None


def _read_words(path: Path) -> list[str] | None:
    try:
        return path.read_text().split()
    except OSError:
        return None


def _whole_cpus(quota: str, period: str) -> int | None:
    try:
        quota_us, period_us = int(quota), int(period)
    except ValueError:
        return None
    if quota_us <= 0 or period_us <= 0:  # v1 writes -1 for "no quota"
        return None
    return max(1, math.ceil(quota_us / period_us))
