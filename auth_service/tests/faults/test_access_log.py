"""Access lines of the real gunicorn (shared with the fault tests): JSON, no secrets."""

import json


def access_lines(output: str) -> list[dict]:
    lines = [json.loads(x) for x in output.splitlines() if x.startswith("{")]
    return [line for line in lines if line.get("logger") == "gunicorn.access"]


def test_access_lines_name_the_request_but_never_its_token_or_credentials(web, api, account):
    seen = len(web.output())

    api.get("/api/v1/auth/me/", token=account.access)
    api.get("/reset-password/?token=s3cr3t-reset-token")
    api.post("/api/v1/auth/login/", {"email": account.email, "password": account.password})

    output = web.output()[seen:]
    assert account.access not in output
    assert "s3cr3t-reset-token" not in output
    assert account.password not in output
    requests = {(line["method"], line["path"], line["status"]) for line in access_lines(output)}
    assert requests >= {
        ("GET", "/api/v1/auth/me/", 200),
        ("GET", "/reset-password/", 200),
        ("POST", "/api/v1/auth/login/", 200),
    }
    for line in access_lines(output):
        assert line["remote_addr"] == "127.0.0.1"
        assert isinstance(line["duration_ms"], int)
