"""How many CPUs this process can really use: its affinity, capped by a container's CPU quota.

os.cpu_count() reports the host's cores; a container on a 0.5-CPU plan may see 8 or 64 of
them while its cgroup lets it run only half of one. The quota is in cpu.max (cgroup v2, "max
100000" or "50000 100000") or cpu.cfs_quota_us / cpu.cfs_period_us (cgroup v1, quota -1 for
none): at the top of /sys/fs/cgroup where a container sees its own cgroup, and otherwise in the
process's cgroup (named in /proc/self/cgroup) or one of its parents. The tightest one counts.
Render also declares the plan's CPUs in RENDER_CPU_COUNT ("0.5" on Starter): it caps the count
too, should the platform enforce the plan some way a cgroup file does not show.
"""

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def available_cpus(
    cgroup_root: Path = CGROUP_ROOT, own: Path = PROC_CGROUP, environ=os.environ
) -> int:
    """Whole CPUs this process may run on at once, at least 1 (a 0.5-CPU quota counts as 1)."""
    if hasattr(os, "sched_getaffinity"):
        count = len(os.sched_getaffinity(0))
    else:  # pragma: no cover - macOS, for local development only
        count = os.cpu_count() or 1
    for quota in (cpu_quota(cgroup_root, own), _declared(environ.get("RENDER_CPU_COUNT"))):
        if quota is not None:
            count = min(count, cpus_for_quota(quota))
    return max(1, count)


def _declared(value: str | None) -> float | None:
    """A platform's stated CPU count ("0.5", "2"); None if unset or not a positive number."""
    try:
        cpus = float(value)
    except (TypeError, ValueError):
        return None
    return cpus if 0 < cpus < math.inf else None


def cpus_for_quota(quota: float) -> int:
    """The whole CPUs a quota of this many CPUs is worth: a partial one counts (0.5 -> 1)."""
    return max(1, math.ceil(quota))


def cpu_quota(cgroup_root: Path = CGROUP_ROOT, own: Path = PROC_CGROUP) -> float | None:
    """The tightest CPU quota on this process's cgroup and its parents, in CPUs (0.5 for half
    of one), or None when none has one."""
    quotas = [_quota(directory) for directory in _cgroups(cgroup_root, own)]
    return min((quota for quota in quotas if quota is not None), default=None)


def _cgroups(cgroup_root: Path, own: Path) -> list[Path]:
    """The directories that may hold this process's CPU limits: its own cgroup and each parent
    up to the top, for cgroup v2 and for v1's cpu controller (the top alone when /proc/self/
    cgroup names no other, as inside a container with its own cgroup namespace)."""
    directories = [cgroup_root, cgroup_root / "cpu"]
    for line in (_read(own) or "").splitlines():
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if not controllers:  # cgroup v2: "0::/path"
            top = cgroup_root
        elif "cpu" in controllers.split(","):  # cgroup v1: "4:cpu,cpuacct:/path"
            top = cgroup_root / "cpu"
        else:
            continue
        parts = [part for part in path.split("/") if part]
        if ".." in parts:  # a cgroup outside this view of the tree
            continue
        directory = top.joinpath(*parts)
        while directory != top:
            directories.append(directory)
            directory = directory.parent
    return directories


def _quota(directory: Path) -> float | None:
    v2 = _read(directory / "cpu.max")
    if v2 is not None:
        quota, _, period = v2.partition(" ")
        return _ratio(quota, period)
    quota = _read(directory / "cpu.cfs_quota_us")
    period = _read(directory / "cpu.cfs_period_us")
    if quota is None or period is None:
        return None
    return _ratio(quota, period)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, ValueError):  # ValueError: a name that is not UTF-8
        return None


def _ratio(quota: str, period: str) -> float | None:
    try:
        quota_us, period_us = int(quota), int(period)
    except ValueError:  # "max": no limit
        return None
    if quota_us <= 0 or period_us <= 0:  # v1 writes -1 for no limit
        return None
    return quota_us / period_us
