"""The agent's HTTP client (workers/client.py) against the OpenAPI schema the marketplace serves: every call it makes
is an operation of the schema, every body and header it sends is one the operation accepts, and every field it reads
is in the operation's answer. The fields read are the agent contract's (workers/contract.py): the TypedDicts the
client's methods return, and a lease manifest's RenderManifest fields. No hand-kept list of fields.

The marketplace is not called: each request is answered with the answer schema's fields, to see what goes out."""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import typing
from collections.abc import Callable
from typing import Any

import jsonschema
import pytest
import responses
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer

from workers.agent import capabilities
from workers.client import MarketClient
from workers.contract import RenderManifest

SERVER = "http://market.test"
# The schema as /api/schema/ serves it (JSON), built once at collection.
SCHEMA: dict[str, Any] = json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(public=True)))
COMPONENTS = {"components": SCHEMA["components"]}
# Headers every request carries, described by the schema's security scheme or by HTTP itself.
TRANSPORT_HEADERS = {"authorization", "user-agent", "accept", "accept-encoding", "connection"}
TRANSPORT_HEADERS |= {"content-type", "content-length"}

# One call of each of the client's methods, as the agent makes it (the hello body is the agent's own capabilities()).
CALLS: dict[str, Callable[[MarketClient], object]] = {
    "hello": lambda c: c.hello(
        capabilities(
            [{"type": "CUDA", "name": "RTX 4090", "id": "CUDA_0", "use": True}],
            "5.0.1",
            ["4.5", "5.0"],
            {"sandbox": "enforced", "sandbox_detail": "Landlock enabled (ABI 4)"},
        )
    ),
    "beat": lambda c: c.beat(leases=[12], paused=True),
    "goodbye": lambda c: c.goodbye(),
    "bench": lambda c: c.bench({"CUDA": 2.5e8}),
    "lease": lambda c: c.lease(12, "lease-token"),
    "report": lambda c: c.report(12, token="lease-token", ok=True, stats={"seconds": 1.5, "device": "CUDA"}),
    "next": lambda c: c.next(12, "lease-token"),
    "release": lambda c: c.release(12, "lease-token"),
}


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = SCHEMA["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def operation_for(method: str, path: str) -> tuple[str, dict[str, Any]]:
    """The schema's (path template, operation) of a request; fails if the schema has no such operation."""
    for template, operations in SCHEMA["paths"].items():
        if re.fullmatch(re.sub(r"\{[^}]+\}", r"[^/]+", template), path):
            assert method.lower() in operations, f"{method} {path}: the schema has only {sorted(operations)}"
            return template, operations[method.lower()]
    raise AssertionError(f"{method} {path} is no operation of the schema")


def undeclared(value: Any, schema: dict[str, Any], where: str = "") -> list[str]:
    """The keys of `value`, at any depth, that its schema does not list (where the schema lists its keys)."""
    schema = resolve(schema)
    if isinstance(value, dict) and "properties" in schema:
        return [f"{where}.{key}" for key in value if key not in schema["properties"]] + [
            found
            for key, item in value.items()
            if key in schema["properties"]
            for found in undeclared(item, schema["properties"][key], f"{where}.{key}")
        ]
    if isinstance(value, list) and "items" in schema:
        return [found for item in value for found in undeclared(item, schema["items"], f"{where}[]")]
    return []


def answer_schema(operation: dict[str, Any]) -> dict[str, Any]:
    return resolve(operation["responses"]["200"]["content"]["application/json"]["schema"])


def read_fields(name: str) -> Any:
    """What the client's method gives the agent to read: its return type, a contract TypedDict."""
    return typing.get_type_hints(getattr(MarketClient, name))["return"]


def test_every_method_of_the_client_is_exercised_here() -> None:
    public = {name for name, _ in inspect.getmembers(MarketClient, inspect.isfunction) if not name.startswith("_")}
    assert public - {"close"} == set(CALLS)  # `close` hangs up; every other public method is an API call


@pytest.mark.parametrize("name", sorted(CALLS))
@responses.activate
def test_the_client_call_is_an_operation_of_the_schema_that_takes_what_it_sends_and_gives_what_it_reads(name) -> None:
    sent: list[tuple[str, str, dict[str, str], Any]] = []

    def answer(request) -> tuple[int, dict[str, str], str]:
        path = request.path_url
        body = json.loads(request.body) if request.body else None
        sent.append((request.method, path, dict(request.headers), body))
        _, operation = operation_for(request.method, path)
        return 200, {}, json.dumps(dict.fromkeys(answer_schema(operation).get("properties", {})))

    responses.add_callback(responses.GET, re.compile(f"{SERVER}/.*"), callback=answer)
    responses.add_callback(responses.POST, re.compile(f"{SERVER}/.*"), callback=answer)
    CALLS[name](MarketClient(SERVER, "node-token"))

    [(method, path, headers, body)] = sent
    template, operation = operation_for(method, path)
    # What goes out: a body the operation's request schema takes, with no key it does not know, and only the
    # extra headers it declares.
    if body is not None:
        request_schema = operation["requestBody"]["content"]["application/json"]["schema"]
        jsonschema.Draft202012Validator({**request_schema, **COMPONENTS}).validate(body)
        assert undeclared(body, request_schema) == [], f"{method} {template} sends fields the schema does not take"
    else:
        assert not operation.get("requestBody", {}).get("required"), f"{method} {template} needs a body"
    declared = {p["name"].lower() for p in operation.get("parameters", []) if p["in"] == "header"}
    assert {h.lower() for h in headers} - TRANSPORT_HEADERS <= declared, f"{method} {template} sends undeclared headers"
    # What comes back: every field the client's return type promises is in the answer, a required one required.
    returned = read_fields(name)
    schema = answer_schema(operation)
    assert returned.__required_keys__ <= set(schema.get("required", [])), f"{method} {template} may omit a field"
    assert returned.__optional_keys__ <= set(schema["properties"]), f"{method} {template} lacks an optional field"


def test_a_lease_answer_carries_every_field_of_the_contracts_manifest() -> None:
    _, operation = operation_for("GET", "/api/v1/agent/leases/1/")
    manifest = resolve(answer_schema(operation)["properties"]["manifest"])
    fields = dataclasses.fields(RenderManifest)
    assert {f.name for f in fields} == set(manifest["properties"])
    # A manifest's settings with no default are required by the schema too (the scene's fields as well: a lease
    # always names its scene).
    no_default = {f.name for f in fields if f.default is dataclasses.MISSING}
    assert no_default <= set(manifest["required"])
