import io
import json
import re
import socket
from types import SimpleNamespace
from unittest import mock

import pytest
from django.test import Client, RequestFactory

from accounts import tokens
from auth_service import exceptions, server_errors
from auth_service.schema import NEW_PASSWORD_MARK
from conftest import cut_off_redis
from testing.wsgi import call, cut_short

CONTRACT_PATHS = [
    "/api/v1/auth/register/",
    "/api/v1/auth/login/",
    "/api/v1/auth/token/refresh/",
    "/api/v1/auth/logout/",
    "/api/v1/auth/me/",
    "/api/v1/auth/password/change/",
]


@pytest.fixture
def schema(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    return response.json()


def test_schema_is_openapi_3_listing_every_contract_path(schema):
    assert schema["openapi"].startswith("3.")
    for path in CONTRACT_PATHS:
        assert path in schema["paths"], path


def test_every_operation_has_a_summary_and_documented_errors(schema):
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert operation.get("summary"), f"{method} {path}"
            assert any(code.startswith("4") for code in operation["responses"]), f"{method} {path}"


def request_fields(schema, path):
    body = schema["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    return schema["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]["properties"]


NEW_PASSWORDS = [
    ("/api/v1/auth/register/", "password"),
    ("/api/v1/auth/password/change/", "new_password"),
    ("/api/v1/auth/password/reset/", "password"),
]


@pytest.mark.parametrize(("path", "field"), NEW_PASSWORDS)
def test_a_new_password_is_documented_with_the_rules_it_must_pass(schema, path, field):
    documented = request_fields(schema, path)[field]

    assert (documented["minLength"], documented["maxLength"]) == (10, 128)
    assert documented["writeOnly"] is True
    for rule in ("at least 10 characters", "commonly used password", "entirely numeric"):
        assert rule in documented["description"]


def test_no_marker_of_the_schema_hooks_is_left_in_the_document(schema):
    assert NEW_PASSWORD_MARK not in json.dumps(schema)


@pytest.mark.django_db
def test_a_password_shorter_than_the_documented_minimum_is_refused(schema, api):
    minimum = request_fields(schema, "/api/v1/auth/register/")["password"]["minLength"]
    body = {"full_name": "Ada", "email": "ada@example.com", "password": "q7#Lm2!xZp"}

    short = api.post("/api/v1/auth/register/", {**body, "password": "q7#Lm2!xZ"}, format="json")
    enough = api.post("/api/v1/auth/register/", body, format="json")

    assert len(body["password"]) == minimum
    assert short.status_code == 400
    assert "at least 10 characters" in short.json()["password"][0]
    assert enough.status_code == 201


@pytest.mark.parametrize(
    ("path", "field"),
    [("/api/v1/auth/login/", "password"), ("/api/v1/auth/password/change/", "current_password")],
)
def test_a_password_being_proven_has_no_minimum_beyond_non_empty(schema, path, field):
    # An account may hold a password set under older, laxer rules: clients must still send it.
    assert request_fields(schema, path)[field]["minLength"] == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/auth/me/"),
        ("post", "/api/v1/auth/logout/"),
        ("post", "/api/v1/auth/password/change/"),
    ],
)
def test_each_401_a_bearer_endpoint_sends_is_one_of_its_documented_examples(
    schema, api, method, path
):
    documented = schema["paths"][path][method]["responses"]["401"]["content"]["application/json"]
    examples = [example["value"] for example in documented["examples"].values()]

    for authorization in (None, "Bearer not-a-token"):
        headers = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
        response = getattr(api, method)(path, {}, format="json", **headers)
        assert response.status_code == 401
        assert response.json() in examples, authorization


def test_every_response_declares_its_request_id(schema, client):
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for status_code, response in operation["responses"].items():
                # gunicorn's own 501, for a coding it does not know, is sent before the app
                required = status_code != "501"
                assert response["headers"]["X-Request-ID"]["required"] is required, (
                    method,
                    path,
                    status_code,
                )
    assert client.get("/api/schema/")["X-Request-ID"]


def test_me_declares_bearer_auth(schema):
    me = schema["paths"]["/api/v1/auth/me/"]["get"]
    assert me["security"] == [{"jwtAuth": []}]
    assert schema["components"]["securitySchemes"]["jwtAuth"]["scheme"] == "bearer"


def test_401_and_429_responses_declare_the_headers_they_carry(schema):
    responses = [
        (status, operation["responses"][status])
        for operations in schema["paths"].values()
        for operation in operations.values()
        for status in ("401", "429")
        if status in operation["responses"]
    ]

    assert {status for status, _ in responses} == {"401", "429"}
    for status, response in responses:
        header = {"401": "WWW-Authenticate", "429": "Retry-After"}[status]
        assert response["headers"][header]["required"] is True


def test_503_responses_declare_the_retry_after_a_busy_hash_pool_sends(schema):
    # A generated client only reads the headers a response declares: the busy 503's Retry-After
    # is how it knows to retry a login or registration a second later.
    unavailable = [
        operation["responses"]["503"]
        for operations in schema["paths"].values()
        for operation in operations.values()
        if "503" in operation["responses"]
    ]

    assert unavailable
    for response in unavailable:
        assert response["headers"]["Retry-After"]["required"] is False


def enum_of_error_codes(schema) -> set[str]:
    code = schema["components"]["schemas"]["Error"]["properties"]["code"]
    name = code["allOf"][0]["$ref"].rsplit("/", 1)[-1]
    return set(schema["components"]["schemas"][name]["enum"])


# One request per code the service can answer with, through the same stack clients reach.
ME = "/api/v1/auth/me/"
REGISTER = "/api/v1/auth/register/"
RESET = "/api/v1/auth/password/reset/"
UNKNOWN_TOKEN = {"token": "x" * 43, "password": "a-brand-new-passphrase"}


def post_json(client, path, body):
    return client.post(path, body, content_type="application/json")


def throttled(client, settings):
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "reset_ip": "1/hour"}
    post_json(client, RESET, UNKNOWN_TOKEN)
    return post_json(client, RESET, UNKNOWN_TOKEN)


def service_unavailable(client, settings):
    cut_off_redis(settings)
    return post_json(client, "/api/v1/auth/password/forgot/", {"email": "ada@example.com"})


def permission_denied(client, settings):
    settings.DISALLOWED_USER_AGENTS = [re.compile("BadBot")]
    return client.get(ME, HTTP_USER_AGENT="BadBot/1.0")


def bad_request(client, settings):
    settings.ALLOWED_HOSTS = ["auth.example.com"]
    return client.get(ME, HTTP_HOST="evil.example")


def server_error(client, settings):
    return exceptions.server_error(RequestFactory().get(ME))


def written_by_the_server(status: int):
    """What gunicorn writes for a request it refuses before the app (test_http_framing sends
    real ones through the real server)."""

    def emit(client, settings):
        ours, theirs = socket.socketpair()
        with ours, theirs:
            server_errors.write_json_error(ours, status, "Refused", "")
            answer = theirs.recv(65536)
        return SimpleNamespace(content=answer.partition(b"\r\n\r\n")[2])

    return emit


STATIC_FILE = "/static/admin/css/base.css"


def range_not_satisfiable(client, settings):
    settings.WHITENOISE_USE_FINDERS = True  # the app's own files: no collectstatic in tests
    return Client().get(STATIC_FILE, HTTP_RANGE="bytes=99999999-")


def https_required(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    return Client().get(ME)  # a new client: middleware reads the setting when it loads


EMITTED = {
    "invalid_credentials": lambda c, s: post_json(
        c, "/api/v1/auth/login/", {"email": "who@example.com", "password": "x"}
    ),
    "token_invalid": lambda c, s: c.get(ME, HTTP_AUTHORIZATION="Bearer garbage"),
    "not_authenticated": lambda c, s: c.get(ME),
    "reset_token_invalid": lambda c, s: post_json(c, RESET, UNKNOWN_TOKEN),
    "parse_error": lambda c, s: c.post(REGISTER, "{", content_type="application/json"),
    "unsupported_media_type": lambda c, s: c.post(REGISTER, {"email": "a@example.com"}),
    "payload_too_large": lambda c, s: post_json(c, REGISTER, {"email": "a" * 100_000}),
    "method_not_allowed": lambda c, s: c.get(REGISTER),
    "not_acceptable": lambda c, s: c.get(ME, HTTP_ACCEPT="text/html"),
    "not_found": lambda c, s: c.get("/api/v1/auth/nope/"),
    "trailing_slash_required": lambda c, s: c.get("/api/v1/auth/me"),
    "https_required": https_required,
    "range_not_satisfiable": range_not_satisfiable,
    "throttled": throttled,
    "bad_request": bad_request,
    "permission_denied": permission_denied,
    "service_unavailable": service_unavailable,
    "server_error": server_error,
    "uri_too_long": written_by_the_server(414),
    "headers_too_large": written_by_the_server(431),
    "not_implemented": written_by_the_server(501),
}


def test_every_documented_error_code_is_one_the_service_emits(schema):
    assert enum_of_error_codes(schema) == set(EMITTED)


@pytest.mark.django_db
@pytest.mark.parametrize("code", sorted(EMITTED))
def test_every_error_code_the_service_emits_is_in_the_schema_enum(schema, client, settings, code):
    response = EMITTED[code](client, settings)

    assert json.loads(response.content)["code"] == code
    assert code in enum_of_error_codes(schema)


@pytest.mark.parametrize("path", ["/api/docs/", "/api/redoc/"])
def test_docs_pages_use_only_local_assets(client, path):
    response = client.get(path)

    assert response.status_code == 200
    html = response.content.decode()
    assert "cdn." not in html
    assert "/static/drf_spectacular_sidecar/" in html


@pytest.mark.parametrize("path", ["/api/schema/", "/api/docs/", "/api/docs/?script", "/api/redoc/"])
def test_docs_ignore_a_stale_or_garbage_bearer_token(client, path):
    # Swagger UI keeps sending the token someone authorised it with, long after it expired.
    response = client.get(path, HTTP_AUTHORIZATION="Bearer garbage")

    assert response.status_code == 200


@pytest.mark.parametrize("path", ["/api/docs/", "/api/docs/?script"])
def test_swagger_ui_and_its_script_which_carries_a_csrf_token_are_not_cached(client, path):
    response = client.get(path)

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    assert "private" in response["Cache-Control"]


@pytest.mark.parametrize("path", ["/api/schema/", "/api/docs/", "/api/redoc/"])
def test_docs_answer_other_methods_with_a_json_405(client, path):
    for method in (client.options, client.post, client.delete):
        response = method(path)

        assert response.status_code == 405
        assert response.json()["code"] == "method_not_allowed"
        assert response["Allow"] == "GET, HEAD"


@pytest.mark.django_db
def test_every_operation_documents_the_framing_errors_it_can_get(schema, client):
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            expected = {"406", "413", "415"} if "requestBody" in operation else {"406"}
            assert expected <= set(operation["responses"]), (method, path)
    # And the service does answer them so
    login = "/api/v1/auth/login/"
    assert client.post(login, "{}", content_type="text/plain").status_code == 415
    assert client.post(login, {}, HTTP_ACCEPT="text/html").status_code == 406


def test_what_a_client_varies_in_its_request_does_not_build_the_document_again(client):
    from auth_service.schema import SchemaView, _documents_forget

    _documents_forget()
    json_type = "application/vnd.oai.openapi+json"
    real = SchemaView.generator_class.get_schema
    with mock.patch.object(
        SchemaView.generator_class, "get_schema", autospec=True, side_effect=real
    ) as built:
        answers = [
            client.get(f"/api/schema/{query}", HTTP_ACCEPT=accept)
            for query, accept in (
                ("", json_type),
                ("?lang=zz", json_type),  # a language Django has no name for
                ("?lang=fr", json_type),
                ("?lang=de&version=9", json_type),
                ("", f"{json_type}; indent=1"),
                ("", f"{json_type}; x=2"),
            )
        ]

    # Each would otherwise be some 25 ms of CPU that anyone could ask for in a loop
    assert built.call_count == 1
    assert {answer.status_code for answer in answers} == {200}
    assert {answer.content for answer in answers} == {answers[0].content}
    assert {answer["Content-Type"] for answer in answers} == {answers[0]["Content-Type"]}


def test_the_host_a_client_names_does_not_build_the_document_again(client, settings):
    from auth_service.schema import SchemaView, _documents_forget

    # The onrender.com name and a custom domain: the document names neither
    settings.ALLOWED_HOSTS = ["auth.example.com", "auth-service.onrender.com"]
    _documents_forget()
    real = SchemaView.generator_class.get_schema
    with mock.patch.object(
        SchemaView.generator_class, "get_schema", autospec=True, side_effect=real
    ) as built:
        answers = [
            client.get("/api/schema/", HTTP_HOST=host, secure=secure)
            for host, secure in (
                ("auth.example.com", True),
                ("auth-service.onrender.com", True),
                # Spellings ALLOWED_HOSTS lets through, as many as a client cares to send
                ("AUTH.example.com", True),
                ("auth.example.com:1", True),
                ("auth.example.com:2", True),
                ("auth.example.com.", True),
                ("auth.example.com", False),
            )
        ]

    # Each would otherwise be some 25 ms of CPU, and push the real ones out of the cache
    assert built.call_count == 1
    assert {answer.status_code for answer in answers} == {200}
    assert {answer.content for answer in answers} == {answers[0].content}


def test_the_document_is_built_once_per_format_and_served_alike(client):
    from auth_service.schema import SchemaView, _documents_forget

    _documents_forget()  # as a deploy starts: no document built yet
    json_type, yaml_type = "application/vnd.oai.openapi+json", "application/vnd.oai.openapi"
    real = SchemaView.generator_class.get_schema
    with mock.patch.object(
        SchemaView.generator_class, "get_schema", autospec=True, side_effect=real
    ) as built:
        answers = [
            client.get("/api/schema/", HTTP_ACCEPT=accept)
            for accept in (json_type, json_type, yaml_type, yaml_type)
        ]

    # Building and rendering it costs tens of milliseconds: not again for every request
    assert built.call_count == 2
    first_json, second_json, first_yaml, second_yaml = answers
    for first, again in ((first_json, second_json), (first_yaml, second_yaml)):
        assert again.status_code == first.status_code == 200
        assert again.content == first.content
        assert again["Content-Type"] == first["Content-Type"]
        assert again["Content-Disposition"] == first["Content-Disposition"]
    assert first_json["Content-Type"].startswith(json_type)
    assert first_yaml["Content-Type"].startswith(yaml_type)


# Requests any operation can get wrong in their framing, whatever it does: (code, whether only
# an operation that takes a body gets it, the body, and the rest of the request).
FRAMING_ERRORS = {
    "not_acceptable": ("not_acceptable", False, b"{}", lambda: {"HTTP_ACCEPT": "application/xml"}),
    "not_implemented": (
        "not_implemented",
        False,
        b"{}",
        lambda: {"HTTP_TRANSFER_ENCODING": "gzip, chunked", "wsgi.input_terminated": True},
    ),
    "parse_error": ("parse_error", True, b"{", dict),
    "text/plain": ("unsupported_media_type", True, b"{}", lambda: {"CONTENT_TYPE": "text/plain"}),
    "gzip": ("unsupported_media_type", True, b"{}", lambda: {"HTTP_CONTENT_ENCODING": "gzip"}),
    "too_large": ("payload_too_large", True, b'{"a": "' + b"a" * 70_000 + b'"}', dict),
    "cut_short": ("bad_request", True, b"", lambda: cut_short(b'{"email": "ada@example.com"}', 20)),
}


# Transactional: the application ends each request as a server's does, closing the connection.
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("case", sorted(FRAMING_ERRORS))
def test_every_operation_documents_each_framing_error_it_answers_with_and_its_code(
    schema, user, case
):
    # A client generated from the document decodes only the statuses it lists, and learns the
    # codes each one carries from its examples.
    code, needs_body, body, rest = FRAMING_ERRORS[case]
    bearer = f"Bearer {tokens.token_pair_for(user=user)['access']}"
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if needs_body and "requestBody" not in operation:
                continue
            environ = {
                "wsgi.input": io.BytesIO(body),
                "CONTENT_TYPE": "application/json",
                **({"CONTENT_LENGTH": str(len(body))} if body else {}),
                **rest(),
            }
            answered = call(method.upper(), path, HTTP_AUTHORIZATION=bearer, **environ)
            status, answer = answered.status, answered.json()

            assert answer["code"] == code, (method, path, answer)
            documented = operation["responses"].get(str(status))
            assert documented, (method, path, status)
            examples = documented["content"]["application/json"].get("examples", {}).values()
            assert code in {example["value"].get("code") for example in examples}, (
                method,
                path,
                status,
            )
