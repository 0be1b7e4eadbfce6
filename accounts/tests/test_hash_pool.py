"""Password hashing runs in a few low-priority threads, so cheap requests are served first."""

import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.conf import settings
from django.contrib.auth.hashers import check_password, make_password

from accounts import hash_pool
from conftest import PASSWORD


def niceness() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_passwords_are_hashed_and_verified_in_the_hash_threads(monkeypatch):
    # Given a record of the threads that ran hashing work
    threads = []
    run = hash_pool.hash_run

    def recording(function, *args):
        return run(lambda: (threads.append(threading.current_thread().name), function(*args))[1])

    monkeypatch.setattr("accounts.hashers.hash_run", recording)

    # When a password is hashed and verified
    encoded = make_password(PASSWORD)

    # Then both ran in the pool and the result is an ordinary, verifiable hash
    assert check_password(PASSWORD, encoded)
    assert not check_password("not the password", encoded)
    assert len(threads) == 3
    assert all(name.startswith("password-hash") for name in threads)


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread priority is a Linux feature")
def test_hash_threads_run_below_the_priority_of_request_threads():
    caller = niceness()

    in_pool = hash_pool.hash_run(niceness)

    assert in_pool == max(caller, settings.PASSWORD_HASH_NICENESS)
    assert niceness() == caller


def test_no_more_hashes_run_at_once_than_there_are_hash_threads():
    # Given more simultaneous hashing requests than hash threads
    size = settings.PASSWORD_HASH_THREADS
    running, peak, lock = 0, 0, threading.Lock()
    # Each hash waits until `size` of them run together, so the peak is reached for certain.
    together = threading.Barrier(size)

    def slow_hash():
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        together.wait(timeout=30)
        with lock:
            running -= 1

    # When they all arrive together
    with ThreadPoolExecutor(size * 3) as requests:
        results = [requests.submit(hash_pool.hash_run, slow_hash) for _ in range(size * 3)]

    # Then all of them ran, never more at once than the pool has threads (nor the memory)
    assert [result.exception() for result in results] == [None] * size * 3
    assert peak == size
