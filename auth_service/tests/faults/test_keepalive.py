"""The proxy in front pools connections to gunicorn: an idle one must still answer."""

import http.client
import time


def test_an_idle_keep_alive_connection_still_answers_after_seconds(web):
    conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=5)
    try:
        conn.request("GET", "/healthz")
        first = conn.getresponse()
        first.read()
        socket_before = conn.sock
        time.sleep(6)  # longer than gunicorn's own default of 2 s, and the 5 s this had before
        conn.request("GET", "/healthz")
        second = conn.getresponse()
        second.read()
        same_connection = conn.sock is socket_before
    finally:
        conn.close()

    assert (first.status, second.status) == (200, 200)
    assert same_connection
