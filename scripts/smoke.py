"""End-to-end checks against a running deployment of the service, standard library only.

Used by scripts/container-check.sh and scripts/rehearse-render.sh after they start the web and
worker processes:

    python scripts/smoke.py --base-url http://127.0.0.1:8180 [--maildir DIR] [--static]

It checks the probes, the HTTPS redirect behind a proxy, optionally the static files with their
far-future caching, and, with --maildir (where a local SMTP sink stores messages), the whole
password-reset round trip through the worker: register, log in, forgot, email, reset, log in.
Each failure says what was expected and what came back; the exit status is 1 on any failure.
"""

import argparse
import json
import mailbox
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

PROXY = {"X-Forwarded-Proto": "https"}  # what the platform's TLS proxy adds


class CheckFailed(Exception):
    pass


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


OPENER = urllib.request.build_opener(NoRedirect)


def request(base: str, method: str, path: str, body: dict | None = None, headers=None):
    """Send one request; return (status, headers, body bytes) whatever the status."""
    data = json.dumps(body).encode() if body is not None else None
    if not base.startswith(("http://", "https://")):
        raise CheckFailed(f"--base-url must be an http(s) URL, not {base!r}")
    req = urllib.request.Request(base + path, data=data, method=method)  # noqa: S310
    for name, value in {**PROXY, **(headers or {})}.items():
        req.add_header(name, value)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with OPENER.open(req, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def expect(base: str, method: str, path: str, status: int, body=None, headers=None):
    got, response_headers, content = request(base, method, path, body, headers)
    if got != status:
        text = content[:300].decode(errors="replace")
        raise CheckFailed(f"{method} {path}: expected {status}, got {got}: {text}")
    return response_headers, content


def say(message: str) -> None:
    print(f"  ok  {message}", flush=True)


def wait_ready(base: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            status, _, content = request(base, "GET", "/readyz")
            if status == 200:
                return
            last = f"{status} {content[:200].decode(errors='replace')}"
        except OSError as error:
            last = str(error)
        time.sleep(1)
    raise CheckFailed(f"/readyz did not answer 200 within {seconds:.0f} s (last: {last})")


def check_probes(base: str) -> None:
    _, content = expect(base, "GET", "/readyz", 200)
    body = json.loads(content)
    ready = {"database": "ok", "redis": "ok"}
    # A broker on a server of its own (CELERY_BROKER_URL) is checked as well.
    if body.get("status") != "ok" or body.get("checks") not in (ready, {**ready, "broker": "ok"}):
        raise CheckFailed(f"/readyz body is {body}")
    say(f"/readyz: {', '.join(body['checks'])} ok")
    # A probe over plain HTTP, by address, as the platform sends it.
    status, _, _ = request(base, "GET", "/healthz", headers={"X-Forwarded-Proto": "http"})
    if status != 200:
        raise CheckFailed(f"/healthz over plain HTTP answered {status}")
    say("/healthz answers a plain-HTTP probe")
    plain = {"X-Forwarded-Proto": "http"}
    # The API: a 308 (a client repeats its method and body); a page: the browsers' 301
    for path, status in (("/api/schema/", 308), ("/reset-password/", 301)):
        headers, _ = expect(base, "GET", path, status, headers=plain)
        if not headers.get("Location", "").startswith("https://"):
            raise CheckFailed(f"plain HTTP is redirected to {headers.get('Location')!r}")
    expect(base, "GET", "/api/schema/", 200)
    say("plain HTTP redirects to HTTPS; requests through the TLS proxy are served")


def check_static(base: str) -> None:
    _, page = expect(base, "GET", "/api/docs/", 200)
    assets = re.findall(r'(/static/[^"\']+\.js)', page.decode())
    if not assets:
        raise CheckFailed("/api/docs/ links no JavaScript under /static/")
    headers, _ = expect(base, "GET", assets[0], 200)
    cache = headers.get("Cache-Control", "")
    if "immutable" not in cache or "max-age=315360000" not in cache:
        raise CheckFailed(f"{assets[0]} has Cache-Control {cache!r}, expected far-future")
    say(f"Swagger UI assets served with hashed names and {cache!r}")


def wait_for_mail(maildir: str, recipient: str, seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for message in mailbox.Maildir(maildir, create=False):
            if recipient in message.get("To", ""):
                parts = message.walk() if message.is_multipart() else [message]
                return "\n".join(
                    part.get_payload(decode=True).decode(errors="replace")
                    for part in parts
                    if part.get_content_type() == "text/plain"
                )
        time.sleep(0.5)
    raise CheckFailed(f"no email to {recipient} reached the SMTP sink within {seconds:.0f} s")


def check_reset_round_trip(base: str, maildir: str, public_url: str) -> None:
    email = f"smoke-{uuid.uuid4().hex[:12]}@example.com"
    old, new = "first-Password-for-smoke-1", "second-Password-for-smoke-2"
    expect(
        base,
        "POST",
        "/api/v1/auth/register/",
        201,
        {"full_name": "Smoke Test", "email": email, "password": old},
    )
    expect(base, "POST", "/api/v1/auth/login/", 200, {"email": email, "password": old})
    say(f"registered and logged in {email}")

    expect(base, "POST", "/api/v1/auth/password/forgot/", 202, {"email": email})
    text = wait_for_mail(maildir, email, seconds=60)
    links = re.findall(r"(https?://\S+[?&]token=([\w\-]+))", text)
    if not links:
        raise CheckFailed(f"the reset email has no link with a token:\n{text[:500]}")
    link, token = links[0]
    if not link.startswith(public_url.rstrip("/") + "/"):
        raise CheckFailed(f"the reset link {link.split('?')[0]} is not under {public_url}")
    say("the worker sent the reset email with a link under the public URL")

    page_path = urllib.parse.urlsplit(link)
    expect(base, "GET", f"{page_path.path}?{page_path.query}", 200)
    expect(base, "POST", "/api/v1/auth/password/reset/", 200, {"token": token, "password": new})
    expect(base, "POST", "/api/v1/auth/password/reset/", 400, {"token": token, "password": new})
    expect(base, "POST", "/api/v1/auth/login/", 401, {"email": email, "password": old})
    expect(base, "POST", "/api/v1/auth/login/", 200, {"email": email, "password": new})
    say("reset page opens, the token resets the password once, the new password logs in")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--wait", type=float, default=60, help="seconds to wait for /readyz")
    parser.add_argument("--static", action="store_true", help="check static files and caching")
    parser.add_argument("--maildir", help="the SMTP sink's Maildir: run the reset round trip")
    parser.add_argument("--public-url", help="where reset links must point (default: base URL)")
    args = parser.parse_args()
    base = args.base_url.rstrip("/")
    try:
        wait_ready(base, args.wait)
        check_probes(base)
        if args.static:
            check_static(base)
        if args.maildir:
            check_reset_round_trip(base, args.maildir, args.public_url or base)
    except CheckFailed as failure:
        print(f"FAIL {failure}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
