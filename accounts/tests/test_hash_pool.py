"""Password hashing runs in a few threads above the request threads' priority, at most
PASSWORD_HASH_SLOTS hashes at once across the workers."""

import fcntl
import os
import runpy
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.hashers import check_password, make_password

from accounts import hash_pool
from auth_service.priority import RequestPriorityMiddleware
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


linux_only = pytest.mark.skipif(
    sys.platform != "linux", reason="per-thread priority is a Linux feature"
)


@linux_only
def test_request_threads_run_below_the_priority_of_hash_threads():
    # Given a request served on a thread other than the main one, as gunicorn's request threads
    seen = {}

    def view(request):
        seen["request"] = niceness()
        seen["hash"] = hash_pool.hash_run(niceness)
        return None

    middleware = RequestPriorityMiddleware(view)
    caller = niceness()

    # When it is served
    thread = threading.Thread(target=middleware, args=(None,))
    thread.start()
    thread.join()

    # Then the request thread was lowered and hashing ran above it, the main thread untouched
    assert seen["request"] == max(caller, settings.WEB_REQUEST_NICENESS)
    assert seen["hash"] == max(caller, settings.PASSWORD_HASH_NICENESS)
    assert seen["hash"] < seen["request"]
    middleware(None)
    assert niceness() == caller


@linux_only
def test_a_sandbox_that_refuses_priority_changes_costs_no_request(monkeypatch, caplog):
    def refused(*_):
        raise PermissionError("operation not permitted")

    monkeypatch.setattr(os, "setpriority", refused)
    middleware = RequestPriorityMiddleware(lambda request: "served")
    answers = []

    thread = threading.Thread(target=lambda: answers.append(middleware(None)))
    thread.start()
    thread.join()

    assert answers == ["served"]
    assert "thread priority left unchanged: PermissionError" in caplog.text


def test_hash_threads_are_started_by_the_thread_that_loads_the_app(monkeypatch):
    monkeypatch.setattr(hash_pool, "_executor", None)

    hash_pool.start()

    pool, _ = hash_pool._pool()
    try:
        assert len(pool._threads) == settings.PASSWORD_HASH_THREADS
        assert all(thread.is_alive() for thread in pool._threads)
    finally:
        pool.shutdown()


def test_a_forked_process_gets_its_own_hash_pool(monkeypatch):
    parent_pool, _ = hash_pool._pool()
    monkeypatch.setattr(hash_pool, "_executor", parent_pool)
    monkeypatch.setattr(hash_pool, "_executor_pid", -1)  # as seen from a forked child

    child_pool, _ = hash_pool._pool()
    try:
        assert child_pool is not parent_pool
        assert child_pool.submit(lambda: 42).result(timeout=10) == 42
    finally:
        child_pool.shutdown()


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


# --- Server-wide slots ---------------------------------------------------------------------


def hold_slots_together(slots: hash_pool.SlotFiles, *, callers: int, preferred=lambda i: i):
    """`callers` threads, each with its own descriptors, take a slot at once; the peak held."""
    running, peak, lock = 0, 0, threading.Lock()

    def take(index: int) -> None:
        nonlocal running, peak
        with slots.held(slots.open(), preferred(index)):
            with lock:
                running += 1
                peak = max(peak, running)
            time.sleep(0.05)
            with lock:
                running -= 1

    with ThreadPoolExecutor(callers) as pool:
        assert [f.exception() for f in [pool.submit(take, i) for i in range(callers)]] == [
            None
        ] * callers
    return peak


def test_no_more_hashes_than_slots_run_at_once_across_descriptors(tmp_path):
    slots = hash_pool.SlotFiles(tmp_path, 2)

    assert hold_slots_together(slots, callers=8) == 2


def test_a_busy_preferred_slot_does_not_stop_a_free_one_being_used(tmp_path):
    slots = hash_pool.SlotFiles(tmp_path, 2)

    # Every caller prefers slot 0, yet two run side by side.
    assert hold_slots_together(slots, callers=2, preferred=lambda _i: 0) == 2


def test_a_slot_held_by_a_killed_process_is_free_again(tmp_path):
    # Given another process that holds both slots, as a worker in the middle of two hashes
    holder = subprocess.Popen(  # noqa: S603 - this interpreter, a fixed script
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            "for name in ('slot-0', 'slot-1'):\n"
            "    fd = os.open(os.path.join(sys.argv[1], name), os.O_RDWR | os.O_CREAT)\n"
            "    fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('held', flush=True)\n"
            "time.sleep(60)\n",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    slots = hash_pool.SlotFiles(tmp_path, 2)
    descriptors = slots.open()
    assert not any(hash_pool._try_lock(fd) for fd in descriptors)

    # When it is killed without a chance to clean up
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)

    # Then its slots can be taken at once
    with slots.held(descriptors, 0), slots.held(slots.open(), 0):
        pass


def test_hash_threads_take_server_slots_when_gunicorn_made_the_directory(
    tmp_path, monkeypatch, settings
):
    # Given the directory gunicorn.conf.py's start-up hook creates for its workers
    config = runpy.run_path(str(settings.BASE_DIR / "gunicorn.conf.py"))
    monkeypatch.delenv(hash_pool.SLOTS_DIR_ENV, raising=False)
    config["on_starting"](None)
    directory = Path(os.environ[hash_pool.SLOTS_DIR_ENV])
    try:
        # When a fresh pool (as in a new worker) hashes while every slot is held elsewhere
        monkeypatch.setattr(hash_pool, "_executor", None)
        settings.PASSWORD_HASH_SLOTS = 1
        blocker = hash_pool.SlotFiles(directory, 1)
        blocked = blocker.open()
        fcntl.flock(blocked[0], fcntl.LOCK_EX)
        result = hash_pool._pool()[0].submit(hash_pool._in_slot, lambda: "hashed")
        time.sleep(0.2)
        waited = not result.done()
        fcntl.flock(blocked[0], fcntl.LOCK_UN)

        # Then it waited for the slot, and ran once the slot was free
        assert waited
        assert result.result(timeout=10) == "hashed"
    finally:
        hash_pool._pool()[0].shutdown()
        config["on_exit"](None)
    assert not directory.exists()


def test_legacy_pbkdf2_verifies_with_one_hash_thread_and_one_slot(monkeypatch, settings, tmp_path):
    # PBKDF2's verify encodes the password again, through the pool: from inside its only
    # thread, holding the only slot, that waited for itself forever
    monkeypatch.setattr(hash_pool, "_executor", None)
    monkeypatch.setenv(hash_pool.SLOTS_DIR_ENV, str(tmp_path))
    settings.PASSWORD_HASH_THREADS = 1
    settings.PASSWORD_HASH_SLOTS = 1
    encoded = make_password(PASSWORD, hasher="pbkdf2_sha256")
    callers = ThreadPoolExecutor(max_workers=2)

    checks = [callers.submit(check_password, PASSWORD, encoded) for _ in range(2)]

    assert [check.result(timeout=30) for check in checks] == [True, True]
    callers.shutdown()


@pytest.mark.django_db
def test_a_hash_past_the_pending_limit_is_a_503_at_once_and_frees_no_thread(
    api, user, hashing_full
):
    # Given a process whose hash pool already has its limit of hashes waiting or running
    # When one more login comes
    started = time.monotonic()
    response = api.post(
        "/api/v1/auth/login/", {"email": user.email, "password": PASSWORD}, format="json"
    )
    took = time.monotonic() - started
    hashing_full()

    # Then it is refused at once with the contract's 503 and a Retry-After
    assert response.status_code == 503
    assert response.json() == {
        "detail": "The service is busy. Try again in a second.",
        "code": "service_unavailable",
    }
    assert response["Retry-After"] == "1"
    assert took < 1

    # And once the burst is over, logins hash again
    ok = api.post("/api/v1/auth/login/", {"email": user.email, "password": PASSWORD}, format="json")
    assert ok.status_code == 200


@pytest.mark.parametrize("preloaded", [True, False])
def test_a_worker_of_a_preloaded_app_starts_its_hash_threads_from_its_main_thread(
    monkeypatch, settings, preloaded
):
    # With --preload the master loaded the app (and its hash threads) before forking
    config = runpy.run_path(str(settings.BASE_DIR / "gunicorn.conf.py"))
    starts = []
    monkeypatch.setattr(hash_pool, "start", lambda: starts.append(threading.current_thread()))

    class Server:
        class cfg:  # noqa: N801 - gunicorn's attribute name
            preload_app = preloaded

    config["post_fork"](Server(), None)

    assert starts == ([threading.main_thread()] if preloaded else [])
