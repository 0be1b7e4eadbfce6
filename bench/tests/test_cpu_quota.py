"""`bench/run --web-cpus`: the cgroup that holds the web processes to a plan's CPU share.

The real kernel files are written by the benchmark (as root); here the same layout in a
folder shows what goes where for each cgroup version.
"""

import os
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BENCH))

import harness  # noqa: E402


def test_cgroup_v1_gets_a_period_and_a_quota(tmp_path):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")

    quota = harness.CpuQuota(0.5, root=tmp_path, name="web")

    assert (tmp_path / "cpu" / "web" / "cpu.cfs_period_us").read_text() == "100000"
    assert (tmp_path / "cpu" / "web" / "cpu.cfs_quota_us").read_text() == "50000"
    assert quota.procs == tmp_path / "cpu" / "web" / "cgroup.procs"


def test_cgroup_v2_enables_the_controller_and_writes_cpu_max(tmp_path):
    quota = harness.CpuQuota(1.5, root=tmp_path, name="web")

    assert (tmp_path / "cgroup.subtree_control").read_text() == "+cpu"
    assert (tmp_path / "web" / "cpu.max").read_text() == "150000 100000"
    assert quota.procs == tmp_path / "web" / "cgroup.procs"


def test_joining_writes_the_callers_pid_and_removing_leaves_no_group(tmp_path):
    quota = harness.CpuQuota(0.5, root=tmp_path, name="web")
    quota.join()

    assert quota.procs.read_text() == str(os.getpid())
    for path in quota.path.iterdir():  # the kernel's files vanish with the group
        path.unlink()
    quota.remove()
    assert not quota.path.exists()
