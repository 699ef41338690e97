"""The OpenAPI schema: our two bearer schemes, descriptions written for the API's users, problem details."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema


class AutoSchema(SpectacularAutoSchema):
    """Descriptions come only from `extend_schema(description=...)`: a view's docstring is for developers."""

    def get_description(self) -> str:
        return ""


class ApiTokenScheme(OpenApiAuthenticationExtension):
    target_class = "marketplace.accounts.auth.ApiTokenAuthentication"
    name = "apiToken"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "API token from /accounts/tokens/"}


class NodeTokenScheme(OpenApiAuthenticationExtension):
    target_class = "marketplace.dispatch.agent_auth.NodeTokenAuthentication"
    name = "nodeToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Node <token>`: the node token shown once when the node was created",
        }


PROBLEM_MEDIA = "application/problem+json"
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
PROBLEM_SCHEMA = {
    "type": "object",
    "description": "RFC 9457 problem details: the body of every API error.",
    "properties": {
        "type": {
            "type": "string",
            "description": "a URI naming the kind of problem; `about:blank`: the status says it",
        },
        "title": {"type": "string", "description": "the HTTP status phrase, e.g. `Not Found`"},
        "status": {"type": "integer", "description": "the HTTP status code"},
        "detail": {"type": "string", "description": "what went wrong, for a person to read"},
        "errors": {
            "type": "object",
            "additionalProperties": {},
            "description": "field errors of a refused request body: field name -> list of messages",
        },
    },
    "required": ["type", "title", "status", "detail"],
}
# What any operation may answer besides what it declares: a refused body (400), no or a bad token (401/403),
# a method, media type or Accept it does not take (405/406/415).
COMMON_ERRORS = {
    "400": "The request is invalid: `detail` says why, `errors` lists field errors.",
    "401": "No valid credentials.",
    "403": "The credentials do not allow this.",
    "405": "The method is not allowed here.",
    "406": "The Accept header asks for a media type this endpoint cannot give.",
    "415": "The request's media type is not accepted here.",
}


def problem_responses(result: dict, generator, request, public) -> dict:
    """drf-spectacular post-processing hook: every 4xx/5xx answer is a Problem (`application/problem+json`)."""
    result.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    for path, methods in result.get("paths", {}).items():
        for operation in methods.values():
            responses = operation.setdefault("responses", {})
            for code, description in COMMON_ERRORS.items():
                responses.setdefault(code, {"description": description})
            if "{" in path:
                responses.setdefault(
                    "404",
                    {"description": "No such object for this user (another user's is a 404 too: ids reveal nothing)."},
                )
            for code, response in responses.items():
                if code[0] in "45":
                    response["content"] = {PROBLEM_MEDIA: {"schema": PROBLEM_REF}}
                    response.setdefault("description", HTTP_PHRASES.get(code, "Error"))
    return result


HTTP_PHRASES = {
    "402": "Payment required: the wallet cannot cover it.",
    "409": "Conflict with the current state.",
    "413": "The upload is too large.",
    "422": "Unprocessable.",
    "503": "The service is unavailable.",
}
