"""Password hashing off the request threads, in a few threads per process, and at most a fixed
number of hashes at once across the whole server.

Argon2 releases the GIL while it hashes, so hashes in a small pool of dedicated threads run on
other cores while the request threads keep serving; the kernel shares the cores between them by
their nice values (auth_service/priority.py: hash threads at PASSWORD_HASH_NICENESS, request
threads at WEB_REQUEST_NICENESS). The pool size (PASSWORD_HASH_THREADS) bounds the hashes one
process runs at once, and with them its memory (each Argon2 hash holds its memory cost, 9 MiB,
while it runs).

Each gunicorn worker has its own pool, so without more the server would run workers x threads
hashes at once; past one per core they only evict each other's memory from the caches (four at
once on two cores made logins 13 % slower than two). Under gunicorn, hashes therefore also take
one of PASSWORD_HASH_SLOTS slots shared by every worker: an flock on one of that many files in
the directory gunicorn.conf.py creates at start-up. The kernel drops a process's locks when it
dies, so a killed worker never keeps a slot. A worker still has two hash threads, so two
logins that land on the same worker hash side by side when the other worker is idle.

A request waits for its hash in a request thread: a burst of logins or registrations larger
than the threads would hold them all and queue every other request behind it. Once
PASSWORD_HASH_MAX_PENDING hashes wait or run in a process with more connections at work (a
request under way) than request threads, one more is refused at once (HashingBusy: 503 with
Retry-After), so the requests waiting for a thread soon get one. A process with no more such
connections than threads (gunicorn splits a burst's connections unevenly between workers)
hashes in every thread: each connection has a request at most, so none can wait behind a hash.
"""

import contextvars
import fcntl
import itertools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from django.conf import settings
from django.core.signals import request_started
from django.dispatch import receiver

from auth_service.exceptions import HashingBusy
from auth_service.priority import lower_thread_priority

T = TypeVar("T")

# Set by gunicorn.conf.py in the master process, inherited by its workers.
SLOTS_DIR_ENV = "PASSWORD_HASH_SLOTS_DIR"

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None
_pending: threading.BoundedSemaphore | None = None
_executor_pid = 0
_thread_numbers = itertools.count()
_local = threading.local()
# Whether this process has more connections with a request under way than request threads,
# so that a request may wait for a thread a hash holds; set under gunicorn's gthread worker
# (gunicorn.conf.py).
# Unknown counts as a shortage: the pending limit alone decides.
_thread_shortage: Callable[[], bool] | None = None
# Whether a hash or verify of the request this thread serves has been let into the pool. A
# request refused busy after one (a password change's new hash, its current password checked)
# has already told the caller something (accounts.throttling keeps its rate-limit hits).
_hashed = contextvars.ContextVar("password_hashed", default=False)


def hashed_in_request() -> bool:
    return _hashed.get()


@receiver(request_started, dispatch_uid="accounts.hash_pool.request")
def _request_start(**kwargs) -> None:
    _hashed.set(False)


def watch_thread_shortage(shortage: Callable[[], bool]) -> None:
    global _thread_shortage
    _thread_shortage = shortage


def _threads_short() -> bool:
    return _thread_shortage is None or _thread_shortage()


class SlotFiles:
    """`count` slots shared by every process that uses the same directory.

    A thread first takes any free slot; when all are held it waits on its own preferred one,
    so waiting threads spread over the slots instead of queueing behind one.
    """

    def __init__(self, directory: Path, count: int):
        self.paths = [directory / f"slot-{index}" for index in range(count)]

    def open(self) -> list[int]:
        """This thread's descriptors, one per slot (an flock belongs to its descriptor)."""
        return [os.open(path, os.O_RDWR | os.O_CREAT, 0o600) for path in self.paths]

    @contextmanager
    def held(self, descriptors: list[int], preferred: int):
        preferred %= len(descriptors)
        order = descriptors[preferred:] + descriptors[:preferred]
        taken = next((fd for fd in order if _try_lock(fd)), None)
        if taken is None:
            taken = order[0]
            fcntl.flock(taken, fcntl.LOCK_EX)  # blocks without holding the GIL
        try:
            yield
        finally:
            fcntl.flock(taken, fcntl.LOCK_UN)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _slots() -> SlotFiles | None:
    directory = os.environ.get(SLOTS_DIR_ENV)
    if not directory or not Path(directory).is_dir():
        return None
    return SlotFiles(Path(directory), settings.PASSWORD_HASH_SLOTS)


def _start_hash_thread(slots: SlotFiles | None) -> None:
    lower_thread_priority(settings.PASSWORD_HASH_NICENESS)
    _local.number = next(_thread_numbers)
    _local.slots = slots
    _local.descriptors = slots.open() if slots else None


def _in_slot(function: Callable[..., T], *args) -> T:
    if _local.slots is None:
        return function(*args)
    with _local.slots.held(_local.descriptors, _local.number):
        return function(*args)


def _pool() -> tuple[ThreadPoolExecutor, threading.BoundedSemaphore]:
    # One pool per process: a forked child (a gunicorn worker of a preloaded app) makes its own.
    global _executor, _pending, _executor_pid
    with _lock:
        if _executor is None or _executor_pid != os.getpid():
            _executor = ThreadPoolExecutor(
                max_workers=settings.PASSWORD_HASH_THREADS,
                thread_name_prefix="password-hash",
                initializer=_start_hash_thread,
                initargs=(_slots(),),
            )
            _pending = threading.BoundedSemaphore(settings.PASSWORD_HASH_MAX_PENDING)
            _executor_pid = os.getpid()
        return _executor, _pending


def start() -> None:
    """Start every hash thread now, from the calling thread.

    A new thread inherits its creator's nice value, and a thread can only lower its priority;
    started lazily by a request thread, hash threads would keep that thread's lower priority.
    """
    count = settings.PASSWORD_HASH_THREADS
    together = threading.Barrier(count + 1)
    executor, _ = _pool()
    started = [executor.submit(together.wait, 10) for _ in range(count)]
    together.wait(10)
    for future in started:
        future.result()


def hash_run(function: Callable[..., T], *args) -> T:
    """Run one hash or verify in the pool (and a server-wide slot) and wait for its result;
    HashingBusy at once if PASSWORD_HASH_MAX_PENDING are already waiting or running here
    while this process has more connections at work than request threads, or if the process
    is exiting."""
    if getattr(_local, "number", None) is not None:
        # Already in a hash thread, holding its slot: PBKDF2's verify encodes through here
        # again, and queueing behind itself would wait forever.
        return function(*args)
    executor, pending = _pool()
    counted = pending.acquire(blocking=False)
    if not counted and _threads_short():
        raise HashingBusy()
    try:
        try:
            hashing = executor.submit(_in_slot, function, *args)
        except RuntimeError:
            # The interpreter is exiting: a worker told to stop at once (SIGINT, SIGQUIT, or
            # SIGABRT past its timeout) still serves the requests it had taken, and the pool
            # takes no more work. Hashes already in it finish; this one is refused as busy.
            raise HashingBusy() from None
        _hashed.set(True)
        return hashing.result()
    finally:
        if counted:
            pending.release()
