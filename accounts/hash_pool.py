"""Password hashing off the request threads, in a few low-priority threads per process.

Argon2 releases the GIL while it hashes. Running every hash in a small pool of dedicated
threads whose OS priority is lowered (PASSWORD_HASH_NICENESS, per thread on Linux) lets the
kernel run cheap requests (me, refresh) first whenever both want a core, while hashing still
takes every idle cycle: at nice 10 a hash thread gets about a tenth of a contended core. The
pool size (PASSWORD_HASH_THREADS) also bounds the hashes one process runs at once, and with
them its memory (each Argon2 hash holds its memory cost, 19 MiB, while it runs).
"""

import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from django.conf import settings

T = TypeVar("T")

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None


def _lower_priority() -> None:
    # On Linux a thread id is a valid PRIO_PROCESS target and affects that thread only;
    # elsewhere it would renice the whole process, so hashing keeps normal priority there.
    # Only ever lowered: raising priority back would need privileges.
    if sys.platform == "linux":
        thread = threading.get_native_id()
        niceness = max(os.getpriority(os.PRIO_PROCESS, thread), settings.PASSWORD_HASH_NICENESS)
        os.setpriority(os.PRIO_PROCESS, thread, niceness)


def _pool() -> ThreadPoolExecutor:
    # Created on first use, so each forked gunicorn worker gets its own threads.
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(
                max_workers=settings.PASSWORD_HASH_THREADS,
                thread_name_prefix="password-hash",
                initializer=_lower_priority,
            )
        return _executor


def hash_run(function: Callable[..., T], *args) -> T:
    """Run one hash or verify in the pool and wait for its result."""
    return _pool().submit(function, *args).result()
