"""Property-based fuzzing of the whole API from its own OpenAPI document.

Schemathesis generates valid and invalid requests for every operation the schema describes and
checks each response against the schema: never a 5xx, only documented status codes, documented
content types and bodies of the documented shape.
"""

import json

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from django.test import override_settings
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, settings

from accounts import tokens
from auth_service.wsgi import application

# A fixed seed keeps CI reproducible; the example budget keeps the run well under a minute.
SEED = 20261124
MAX_EXAMPLES = 150
# Rate limits would turn most generated requests into 429s and hide real behaviour.
UNLIMITED = {
    scope: "100000/min"
    for scope in ("login_ip", "login_email", "reset_ip", "reset_email", "password_change")
    + ("register_ip",)
}
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
]


@pytest.fixture
def wsgi_inside_the_test_transaction():
    """Like Django's test client: requests must not close the test's database connection."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


def load_schema() -> schemathesis.BaseSchema:
    """The document /api/schema/ serves, bound to the WSGI app so calls stay in-process."""
    document = SchemaGenerator().get_schema(request=None, public=True)
    loaded = schemathesis.openapi.from_dict(
        json.loads(OpenApiJsonRenderer().render(document)),
        config=schemathesis.Config(seed=SEED),
    )
    loaded.app = application
    loaded.config.generation.update(max_examples=MAX_EXAMPLES, database="none")
    return loaded


# Loaded at import because schemathesis' fixture-based loader does not support this pytest.
schema = load_schema()


@pytest.fixture
def bearer(settings, user, wsgi_inside_the_test_transaction) -> dict:
    """A signed-in user's header, so operations behind auth are explored beyond 401."""
    settings.ALLOWED_HOSTS = ["localhost"]  # the host schemathesis' WSGI client sends
    return {"Authorization": f"Bearer {tokens.token_pair_for(user=user)['access']}"}


@pytest.mark.django_db
@schema.parametrize()
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_api_conforms_to_its_schema(case, bearer):
    with override_settings(THROTTLE_RATES=UNLIMITED):
        case.call_and_validate(headers=bearer, checks=CHECKS)
