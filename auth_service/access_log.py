"""gunicorn's logger, with access records that carry only the fields the access format uses.

For every request gunicorn's own logger builds a dict of every request header, response
header and WSGI environ entry, in case the format names one. That was 7 % of a login's Python
time (py-spy, GIL samples), and it put every header, Authorization included, in the access
record's arguments. These atoms are the ones `access_log_format` (gunicorn.conf.py) and
JsonFormatter.access_fields read; any other atom a format names prints as "-".
"""

from gunicorn.glogging import Logger


class AccessLogger(Logger):
    def atoms(self, resp, req, environ, request_time) -> dict:
        status = resp.status
        if isinstance(status, str):
            status = status.split(None, 1)[0]
        return {
            "h": environ.get("REMOTE_ADDR", "-"),
            "m": environ.get("REQUEST_METHOD"),
            "U": environ.get("PATH_INFO"),
            "H": environ.get("SERVER_PROTOCOL"),
            "s": status,
            "B": getattr(resp, "sent", None),
            "M": request_time.seconds * 1000 + request_time.microseconds // 1000,
        }
