"""The CPUs a container may use: its quota, not the host's core count."""

import os

import pytest

from auth_service.cpus import available_cpus, cpu_quota
from auth_service.tests.test_settings import load_settings

CORES = len(os.sched_getaffinity(0))


def cgroup_v2(root, cpu_max: str):
    root.mkdir(parents=True, exist_ok=True)
    (root / "cpu.max").write_text(cpu_max + "\n")
    return root


def cgroup_v1(root, quota: str, period: str = "100000"):
    (root / "cpu").mkdir()
    (root / "cpu" / "cpu.cfs_quota_us").write_text(quota + "\n")
    (root / "cpu" / "cpu.cfs_period_us").write_text(period + "\n")
    return root


@pytest.mark.parametrize(
    ("cpu_max", "quota", "cpus"),
    [
        ("50000 100000", 0.5, 1),  # Render's Starter: half a CPU still hashes one at a time
        ("100000 100000", 1.0, 1),
        ("150000 100000", 1.5, min(CORES, 2)),
        ("max 100000", None, CORES),
    ],
)
def test_a_cgroup_v2_quota_caps_the_cpus(tmp_path, cpu_max, quota, cpus):
    root = cgroup_v2(tmp_path, cpu_max)

    assert cpu_quota(root) == quota
    assert available_cpus(root) == cpus


@pytest.mark.parametrize(
    ("quota_us", "quota", "cpus"),
    [("50000", 0.5, 1), ("100000", 1.0, 1), ("-1", None, CORES)],
)
def test_a_cgroup_v1_quota_caps_the_cpus(tmp_path, quota_us, quota, cpus):
    root = cgroup_v1(tmp_path, quota_us)

    assert cpu_quota(root) == quota
    assert available_cpus(root) == cpus


def test_a_quota_above_the_cores_the_process_may_use_does_not_raise_the_count(tmp_path):
    root = cgroup_v2(tmp_path, f"{(CORES + 4) * 100000} 100000")

    assert available_cpus(root) == CORES


@pytest.mark.parametrize("cpu_max", ["", "garbage", "0 100000", "50000 0"])
def test_unreadable_or_odd_files_mean_no_quota(tmp_path, cpu_max):
    root = cgroup_v2(tmp_path, cpu_max)

    assert cpu_quota(root) is None
    assert available_cpus(root) == CORES


def own_cgroup(tmp_path, content: str):
    (tmp_path / "proc-self-cgroup").write_text(content)
    return tmp_path / "proc-self-cgroup"


def test_without_a_cgroup_namespace_the_processs_own_cgroup_is_read(tmp_path):
    # The host's tree: no quota at its top, half a CPU on the container's own cgroup
    root = cgroup_v2(tmp_path / "sys", "max 100000")
    cgroup_v2(root / "kubepods" / "pod1", "50000 100000")
    own = own_cgroup(tmp_path, "0::/kubepods/pod1\n")

    assert cpu_quota(root, own) == 0.5
    assert available_cpus(root, own) == 1


@pytest.mark.parametrize(
    ("parent", "child", "quota"),
    [("150000", "-1", 1.5), ("150000", "50000", 0.5), ("50000", "150000", 0.5)],
)
def test_the_tightest_quota_up_the_tree_counts(tmp_path, parent, child, quota):
    root = tmp_path / "sys"
    (root / "cpu" / "docker" / "abc").mkdir(parents=True)
    for path, quota_us in (("cpu/docker", parent), ("cpu/docker/abc", child)):
        (root / path / "cpu.cfs_quota_us").write_text(quota_us)
        (root / path / "cpu.cfs_period_us").write_text("100000")
    own = own_cgroup(tmp_path, "5:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n")

    assert cpu_quota(root, own) == quota


def test_a_cgroup_path_outside_the_visible_tree_is_not_followed(tmp_path):
    # "..": the process's cgroup lies outside this mount; what the path reaches is another's
    root = cgroup_v2(tmp_path / "sys", "50000 100000")
    cgroup_v2(tmp_path / "elsewhere", "10000 100000")
    own = own_cgroup(tmp_path, "0::/../elsewhere\n")

    assert cpu_quota(root, own) == 0.5


@pytest.mark.parametrize(
    ("declared", "cpus"),
    [("0.5", 1), ("1", 1), ("2", min(CORES, 2)), ("", CORES), ("nan", CORES), ("-1", CORES)],
)
def test_the_cpus_render_declares_for_the_plan_cap_the_count(tmp_path, declared, cpus):
    assert available_cpus(tmp_path, environ={"RENDER_CPU_COUNT": declared}) == cpus


def test_no_cgroup_files_means_the_affinity_decides(tmp_path):
    assert cpu_quota(tmp_path) is None
    assert available_cpus(tmp_path) == CORES


def test_hash_slots_default_to_the_cpus_and_the_environment_overrides_them():
    default = load_settings("s.PASSWORD_HASH_SLOTS")
    chosen = load_settings("s.PASSWORD_HASH_SLOTS", PASSWORD_HASH_SLOTS="3")

    assert default.returncode == 0, default.stderr
    assert int(default.stdout) == available_cpus()
    assert int(chosen.stdout) == 3
