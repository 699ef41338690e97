"""The API against its own OpenAPI schema, with schemathesis: every operation, generated requests, an artist's
API token (a node's token for the agent API). No answer may be a 5xx, and every answer (status code, content type,
body, headers) must be one the schema documents, errors included (RFC 9457 problem details)."""

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings
from schemathesis import checks

from marketplace.accounts.services import api_token_create
from marketplace.api.schema import PROBLEM_MEDIA
from marketplace.nodes.services import node_create
from tests.fixtures.money import fund

pytestmark = pytest.mark.django_db

# The schema as /api/schema/ serves it, built once at collection (no database needed for that).
SCHEMA = schemathesis.openapi.from_dict(SchemaGenerator().get_schema(request=None, public=True))
SCHEMA.app = get_wsgi_application()  # requests go straight into Django (WSGI), no server, no network
# Business rules are not all in the schema (a frame range within the scene's, a ready scene, enough tokens), so a
# schema-valid request may rightly be refused (400/402); and DRF reads 1 as true and "12" as 12, which a strict
# JSON-schema reading calls invalid. Every other built-in check runs: no 5xx, documented status codes, content
# types, headers and bodies, 405 for undeclared methods.
NOT_CHECKED = [checks.positive_data_acceptance, checks.negative_data_rejection]
EXAMPLES = 15  # per operation: 31 operations (some with negative cases too) in about a minute here


@pytest.fixture
def auth(artist, provider, settings_dev_payments) -> dict[str, str]:
    """Authorization headers: the artist's API token, and a node token for the agent API."""
    fund(artist, 1_000 * 1_000_000)
    _, node_token = node_create(owner=provider, name="schemathesis-node")
    return {"api": f"Bearer {api_token_create(user=artist, name='schemathesis')[1]}", "agent": f"Node {node_token}"}


@pytest.fixture(autouse=True)
def keep_the_test_connection():
    """As Django's test client does: a request must not close the connection holding the test's transaction."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def settings_dev_payments(settings):
    settings.STRIPE_SECRET_KEY = ""
    settings.PAYMENTS_DEV_PROVIDER = True  # top-ups through the simulated provider, not a 503 for want of keys
    settings.ALLOWED_HOSTS = ["*"]


@SCHEMA.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_every_operation_answers_as_documented_and_never_5xx(case, auth):
    kind = "agent" if case.operation.path.startswith("/api/v1/agent/") else "api"
    response = case.call_and_validate(headers={"Authorization": auth[kind]}, excluded_checks=NOT_CHECKED)
    assert response.status_code < 500
    if response.status_code >= 400:
        assert response.headers["content-type"][0].startswith(PROBLEM_MEDIA)
        body = response.json()
        assert body["status"] == response.status_code and body["detail"], body
