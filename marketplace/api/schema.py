"""OpenAPI descriptions of our two bearer schemes (artist/provider API tokens and agent node tokens)."""
from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiTokenScheme(OpenApiAuthenticationExtension):
    target_class = "marketplace.accounts.auth.ApiTokenAuthentication"
    name = "apiToken"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "API token from /accounts/tokens/"}


class NodeTokenScheme(OpenApiAuthenticationExtension):
    target_class = "marketplace.dispatch.agent_auth.NodeTokenAuthentication"
    name = "nodeToken"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "header", "name": "Authorization",
                "description": "`Node <token>`: the node token shown once when the node was created"}
