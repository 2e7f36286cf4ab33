"""usable_cpus: the affinity mask, capped by a cgroup v2 quota (the server's and corpus engine's defaults)."""

from __future__ import annotations

import os

import pytest

from embedrt.cpus import cgroup_quota, usable_cpus


@pytest.mark.parametrize(
    ("content", "quota"),
    [("max 100000\n", None), ("200000 100000\n", 2), ("150000 100000\n", 2), ("50000 100000\n", 1), ("junk", None)],
)
def test_cgroup_quota(tmp_path, content, quota):
    path = tmp_path / "cpu.max"
    path.write_text(content)
    assert cgroup_quota(path) == quota


def test_usable_cpus_is_the_affinity_capped_by_the_quota(tmp_path):
    cores = len(os.sched_getaffinity(0))
    path = tmp_path / "cpu.max"
    assert usable_cpus(tmp_path / "absent") == cores
    path.write_text("100000 100000\n")
    assert usable_cpus(path) == 1
    path.write_text(f"{cores * 64 * 100000} 100000\n")  # a quota larger than the mask: the mask wins
    assert usable_cpus(path) == cores
