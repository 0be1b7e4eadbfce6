"""How many CPUs this process can really use: its affinity, capped by a container's CPU quota.

os.cpu_count() reports the host's cores; a container on a 0.5-CPU plan may see 8 or 64 of
them while its cgroup lets it run only half of one. The quota is read where a container sees
its own cgroup: /sys/fs/cgroup/cpu.max (cgroup v2, "max 100000" or "50000 100000") or
cpu.cfs_quota_us / cpu.cfs_period_us under /sys/fs/cgroup/cpu (cgroup v1, quota -1 for none).
"""

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def available_cpus(cgroup_root: Path = CGROUP_ROOT) -> int:
    """Whole CPUs this process may run on at once, at least 1 (a 0.5-CPU quota counts as 1)."""
    if hasattr(os, "sched_getaffinity"):
        count = len(os.sched_getaffinity(0))
    else:  # pragma: no cover - macOS, for local development only
        count = os.cpu_count() or 1
    quota = cpu_quota(cgroup_root)
    if quota is not None:
        count = min(count, cpus_for_quota(quota))
    return max(1, count)


def cpus_for_quota(quota: float) -> int:
    """The whole CPUs a quota of this many CPUs is worth: a partial one counts (0.5 -> 1)."""
    return max(1, math.ceil(quota))


def cpu_quota(cgroup_root: Path = CGROUP_ROOT) -> float | None:
    """The cgroup's CPU quota in CPUs (0.5 for half of one), or None when it has none."""
    v2 = _read(cgroup_root / "cpu.max")
    if v2 is not None:
        quota, _, period = v2.partition(" ")
        return _ratio(quota, period)
    quota = _read(cgroup_root / "cpu" / "cpu.cfs_quota_us")
    period = _read(cgroup_root / "cpu" / "cpu.cfs_period_us")
    if quota is None or period is None:
        return None
    return _ratio(quota, period)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _ratio(quota: str, period: str) -> float | None:
    try:
        quota_us, period_us = int(quota), int(period)
    except ValueError:  # "max": no limit
        return None
    if quota_us <= 0 or period_us <= 0:  # v1 writes -1 for no limit
        return None
    return quota_us / period_us
