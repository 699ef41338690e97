"""One error body for the whole API: RFC 9457 problem details, whatever failed (validation, authentication,
permission, routing, method, media type, a service's refusal)."""

import pytest
import yaml
from django.core.management import call_command
from rest_framework.test import APIClient

from marketplace.nodes.services import node_create
from tests.fixtures.api import bearer

pytestmark = pytest.mark.django_db
PROBLEM = "application/problem+json"


def problem_of(response, status: int) -> dict:
    assert response.status_code == status, (response.status_code, response.content)
    assert response["Content-Type"] == PROBLEM
    body = response.json()
    assert body["type"] == "about:blank" and body["status"] == status and body["title"] and body["detail"], body
    return body


def test_field_errors_come_as_errors_of_a_400(artist):
    body = problem_of(bearer(artist).post("/api/v1/jobs/", {"scene": "x", "samples": "many"}, format="json"), 400)
    assert set(body["errors"]) == {"scene", "samples"} and body["errors"]["samples"] == ["A valid integer is required."]


def test_no_credentials_is_a_401_problem_that_names_the_scheme():
    response = APIClient().get("/api/v1/jobs/")
    problem_of(response, 401)
    assert response["WWW-Authenticate"] == "Bearer"


def test_a_service_refusal_keeps_its_words(artist):
    assert problem_of(bearer(artist).get("/api/v1/scenes/12345/"), 404)["detail"] == "no such scene"


def test_the_wrong_role_is_a_403_problem(provider):
    assert "artist accounts" in problem_of(bearer(provider).get("/api/v1/wallet/"), 403)["detail"]


def test_an_unknown_api_path_a_wrong_method_and_a_form_body_are_problems(artist):
    api = bearer(artist)
    problem_of(api.get("/api/v1/jobs/not-a-number/"), 404)
    problem_of(api.put("/api/v1/jobs/", {}, format="json"), 405)
    problem_of(api.post("/api/v1/jobs/", {"scene": 1}), 415)  # multipart: bodies are JSON (the upload excepted)


def test_the_schema_documents_the_problem_shape_for_every_error(tmp_path):
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--file", str(out))
    schema = yaml.safe_load(out.read_text())
    assert schema["components"]["schemas"]["Problem"]["required"] == ["type", "title", "status", "detail"]
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            errors = {code: r for code, r in operation["responses"].items() if code[0] in "45"}
            assert {"400", "401", "403"} <= set(errors), (method, path)
            for code, response in errors.items():
                assert list(response["content"]) == [PROBLEM], (method, path, code)
            assert operation["description"] and operation["summary"], (method, path)
    upload = schema["paths"]["/api/v1/scenes/"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    file_field = schema["components"]["schemas"][upload["$ref"].rsplit("/", 1)[1]]["properties"]["file"]
    assert file_field["format"] == "binary"


def test_a_number_beyond_the_columns_range_is_a_400_not_a_database_error(provider):
    # Found by the schemathesis test: ram_mb above 2**31 reached the database (a 500).
    _, token = node_create(owner=provider, name="huge")
    agent = APIClient()
    agent.credentials(HTTP_AUTHORIZATION=f"Node {token}")
    hello = {"blender_version": "5.0.1", "cpu_cores": 4, "devices": [], "ram_mb": 2**70}
    assert "ram_mb" in problem_of(agent.post("/api/v1/agent/hello/", hello, format="json"), 400)["errors"]
    beat = agent.post("/api/v1/agent/heartbeat/", {"leases": [2**70]}, format="json")
    assert "leases" in problem_of(beat, 400)["errors"]


@pytest.mark.django_db
def test_json_that_postgres_cannot_store_is_a_bad_request_not_a_server_error(provider):
    """Schemathesis found a 500: a NUL or an unpaired surrogate in a JSON string reached a jsonb column."""
    _, token = node_create(owner=provider, name="rig")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Node {token}")
    for body in ('{"results": {"CPU\\u0000": 1.0}}', '{"results": {"\\ud93e": 1.0}}'):
        response = client.post("/api/v1/agent/bench/", body, content_type="application/json")
        assert response.status_code == 400, response.content
        assert response["Content-Type"] == PROBLEM and "NUL" in response.json()["detail"]
