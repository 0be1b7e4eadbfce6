"""OS scheduling priority per thread, and the request threads' share of it.

Linux keeps a nice value per thread. Under gunicorn's threaded workers the request threads run
at WEB_REQUEST_NICENESS (5) and the password-hash threads at PASSWORD_HASH_NICENESS (0): when
both want the cores, the kernel gives each hash thread about three times a request thread's
share. Hashes are few (PASSWORD_HASH_SLOTS per instance) and request threads many, so a login
burst gets the cores it can use while `me` and `refresh` still get enough to answer in tens of
milliseconds (benchmark: hashing 0.29 instead of 0.12 of the hash ceiling under the mixed load,
`me` and `refresh` p95 59 and 71 ms). Priority is only ever lowered: raising it would need
privileges a container does not have.
"""

import logging
import os
import sys
import threading

from django.conf import settings

logger = logging.getLogger(__name__)


def lower_thread_priority(niceness: int) -> None:
    """Run the calling thread at least this nice (Linux only: elsewhere it is per process).

    A sandbox that refuses the call (some refuse every priority change) costs the scheduling
    preference, never the request or the hash thread: logged, and the thread runs as it is.
    """
    if sys.platform != "linux" or niceness <= 0:
        return
    thread = threading.get_native_id()
    try:
        current = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, max(current, niceness))
    except OSError as error:
        logger.warning("thread priority left unchanged: %s", type(error).__name__)


_request_thread = threading.local()


class RequestPriorityMiddleware:
    """Lowers each request thread to WEB_REQUEST_NICENESS on its first request.

    Only threads other than the main one: gunicorn's request threads (and runserver's); a
    process that serves requests on its main thread (tests, a sync worker) keeps its priority.
    """

    def __init__(self, get_response):
        self.get_response = get_response
        self.niceness = settings.WEB_REQUEST_NICENESS
        # The app loads in the thread that will spawn request threads (gunicorn's worker main
        # thread): hash threads started now keep its priority. (Imported here: hash_pool
        # imports this module.)
        from accounts import hash_pool

        hash_pool.start()

    def __call__(self, request):
        if not getattr(_request_thread, "lowered", False):
            _request_thread.lowered = True
            if threading.current_thread() is not threading.main_thread():
                lower_thread_priority(self.niceness)
        return self.get_response(request)
