"""gunicorn settings for the web process, the one place they live; the tunable ones read the
environment.

Used everywhere the web process starts: `gunicorn --config gunicorn.conf.py auth_service.wsgi`.
"""

import gc
import os
import shutil
import tempfile

from auth_service import read_timeout, server_errors
from auth_service.env import env_bool, env_int, env_str

# Requests gunicorn refuses itself (oversized or malformed) get the API's JSON errors, not HTML.
server_errors.install()

bind = f"0.0.0.0:{env_int('PORT', 8000, minimum=1, maximum=65535)}"
workers = env_int("WEB_CONCURRENCY", 2, minimum=1)
# Threads keep a worker answering while another request waits on PostgreSQL or Redis, or on
# one of the worker's password-hash threads (accounts/hash_pool.py): a login burst parks a
# thread per login, and 16 leave enough free for cheap requests. Each thread that touches the
# database holds a persistent connection: WEB_CONCURRENCY x threads per instance at most.
worker_class = env_str("GUNICORN_WORKER_CLASS", "gthread")
threads = env_int("GUNICORN_THREADS", 16, minimum=1)

# A request that takes longer than this is stuck (its dependencies time out within about 5 s).
timeout = env_int("GUNICORN_TIMEOUT", 30, minimum=1)
# Finish in-flight requests on SIGTERM; the platform waits 30 s before it kills the process.
graceful_timeout = env_int("GUNICORN_GRACEFUL_TIMEOUT", 25, minimum=1)
# Idle keep-alive connections stay open longer than the proxy in front keeps its pooled ones
# idle (60-100 s on common proxies): a connection gunicorn closed first could take the proxy's
# next request and answer it with a 502. Idle connections wait in the poller, not in a thread.
keepalive = env_int("GUNICORN_KEEPALIVE", 120, minimum=1)

# The heartbeat file on a disk-backed /tmp can stall workers; memory is always fast.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108  # nosec B108
# No runtime control interface: it would want a writable socket in the home directory.
control_socket_disable = True


def on_starting(server):
    """The directory of the password-hash slots every worker shares (accounts/hash_pool.py)."""
    shared_memory = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108  # nosec B108
    os.environ["PASSWORD_HASH_SLOTS_DIR"] = tempfile.mkdtemp(
        prefix="auth_service-hash-slots-", dir=shared_memory
    )


def on_exit(server):
    shutil.rmtree(os.environ.pop("PASSWORD_HASH_SLOTS_DIR", ""), ignore_errors=True)


def post_fork(server, worker):
    """With --preload the app loaded in the master, and the master started the hash threads:
    a worker starts its own here, from its main thread at full priority. Started later by a
    request thread, they would inherit its lower priority (auth_service/priority.py)."""
    if server.cfg.preload_app:
        from accounts import hash_pool

        hash_pool.start()


# Seconds a request has, from its first bytes, to arrive whole (auth_service/read_timeout.py).
request_read_timeout = env_int("REQUEST_READ_TIMEOUT", 10, minimum=1)


def post_worker_init(worker):
    _warn_if_static_files_uncollected(worker)
    _freeze_loaded_app()
    _watch_spare_threads(worker)
    if getattr(worker, "tpool", None) is not None:  # gthread
        read_timeout.install(worker, request_read_timeout)


def _warn_if_static_files_uncollected(worker):
    """Say so at start-up rather than leave the first visit to the reset page to find out."""
    from auth_service.static_files import uncollected_warning

    message = uncollected_warning()
    if message and worker is not None:
        worker.log.warning(message)


def _freeze_loaded_app():
    """Keep the loaded app out of the cyclic garbage collector's full passes.

    Django, DRF and the rest are some 85,000 objects that live as long as the worker; every
    full collection walked them all, holding the GIL for 40-47 ms of CPU and so pausing every
    request thread of the worker at once (6-9 ms once they are frozen; bench/README.md).
    """
    gc.collect()
    gc.freeze()


def _watch_spare_threads(worker):
    """Tell the hash pool whether this worker has more connections with a request under way
    than request threads: one of those requests may then wait for a thread that a hash holds,
    so past its pending limit the pool sheds hashes only then (accounts/hash_pool.py).

    Idle kept-alive connections (gthread keeps them in its poller, not in a thread) do not
    count: a proxy's pool of them, or a client's, would otherwise keep the worker "short".
    """
    if getattr(worker, "tpool", None) is None:  # not gthread
        return
    from accounts import hash_pool

    threads = worker.cfg.threads

    def short() -> bool:
        idle = len(worker.keepalived_conns) + len(worker.pending_conns)
        return worker.nr_conns - idle > threads

    hash_pool.watch_thread_shortage(short)


accesslog = "-"
errorlog = "-"
# Path without the query string: reset links carry their token there. The logger class builds
# only the atoms this format uses (auth_service/access_log.py).
access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms %({x-request-id}o)s'
logger_class = "auth_service.access_log.AccessLogger"
if not env_bool("DEBUG", default=False):
    logconfig_dict = {
        "formatters": {"json": {"()": "auth_service.logging.JsonFormatter"}},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stdout",
            },
        },
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": ["console"], "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": ["console"], "propagate": False},
        },
        "root": {"level": "INFO", "handlers": ["console"]},
    }
