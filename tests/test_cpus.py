"""usable_cpus: the affinity mask, capped by a cgroup quota (v2 cpu.max or v1 cfs files) on a faked cgroup tree."""

from __future__ import annotations

import os

import pytest

from embedrt.cpus import cgroup_quota, usable_cpus


@pytest.mark.parametrize(
    ("content", "quota"),
    [("max 100000\n", None), ("200000 100000\n", 2), ("150000 100000\n", 2), ("50000 100000\n", 1), ("junk", None)],
)
def test_cgroup_v2_quota(tmp_path, content, quota):
    (tmp_path / "cpu.max").write_text(content)
    assert cgroup_quota(tmp_path) == quota


@pytest.mark.parametrize("controller", ["cpu", "cpu,cpuacct"])
@pytest.mark.parametrize(
    ("quota_us", "period_us", "quota"),
    [("-1\n", "100000\n", None), ("200000\n", "100000\n", 2), ("150000\n", "100000\n", 2), ("20000\n", "100000\n", 1)],
)
def test_cgroup_v1_quota(tmp_path, controller, quota_us, period_us, quota):
    cpu = tmp_path / controller
    cpu.mkdir()
    (cpu / "cpu.cfs_quota_us").write_text(quota_us)
    (cpu / "cpu.cfs_period_us").write_text(period_us)
    (cpu / "cpu.shares").write_text("1024\n")
    assert cgroup_quota(tmp_path) == quota


def test_cgroup_v1_without_a_period_or_with_junk_is_no_quota(tmp_path):
    cpu = tmp_path / "cpu"
    cpu.mkdir()
    (cpu / "cpu.cfs_quota_us").write_text("200000\n")
    assert cgroup_quota(tmp_path) is None
    (cpu / "cpu.cfs_period_us").write_text("junk\n")
    assert cgroup_quota(tmp_path) is None


def test_cgroup_v2_wins_over_v1_files(tmp_path):
    (tmp_path / "cpu.max").write_text("max 100000\n")
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_quota(tmp_path) is None


def test_usable_cpus_is_the_affinity_capped_by_the_quota(tmp_path):
    cores = len(os.sched_getaffinity(0))
    assert usable_cpus(tmp_path / "absent") == cores
    (tmp_path / "cpu.max").write_text("100000 100000\n")
    assert usable_cpus(tmp_path) == 1
    (tmp_path / "cpu.max").write_text(f"{cores * 64 * 100000} 100000\n")  # a quota larger than the mask: the mask wins
    assert usable_cpus(tmp_path) == cores


def test_usable_cpus_reads_a_cgroup_v1_quota(tmp_path):
    """A 1-CPU pod on a cgroup-v1 node: the worker default is 1, not the node's cores."""
    cpu = tmp_path / "cpu,cpuacct"
    cpu.mkdir()
    (cpu / "cpu.cfs_quota_us").write_text("100000\n")
    (cpu / "cpu.cfs_period_us").write_text("100000\n")
    assert usable_cpus(tmp_path) == 1
