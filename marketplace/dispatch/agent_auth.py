from rest_framework import authentication, exceptions, permissions

from marketplace.accounts import throttle
from marketplace.logs import bind
from marketplace.nodes.models import WorkerNode
from marketplace.nodes.services import node_authenticate


class NodeTokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Node nd….secret`: the agent's per-node token. request.auth is the WorkerNode."""

    keyword = "Node"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode(errors="replace")
        if not header.startswith(self.keyword + " "):
            return None
        plaintext = header[len(self.keyword) + 1 :]
        credentials = throttle.bearer_credentials(kind="node-token", plaintext=plaintext)
        throttle.bearer_allowed(request._request, credentials)
        node = node_authenticate(plaintext=plaintext)
        if node is None:
            throttle.bearer_failed(request._request, credentials)
            raise exceptions.AuthenticationFailed("invalid node token")
        if node.owner.banned_at is not None:  # no broker user, lease or report for a banned provider's nodes
            raise exceptions.PermissionDenied("this provider account is banned from the market")
        if node.banned_at is not None:  # nor for a node an admin banned: its agent's hello would undo the revoke
            raise exceptions.PermissionDenied("this node is banned from the market")
        bind(node_id=node.pk, user_id=node.owner_id)  # the rest of the call's lines name the node and its owner
        return node.owner, node

    def authenticate_header(self, request) -> str:
        return self.keyword


class IsNode(permissions.BasePermission):
    def has_permission(self, request, view) -> bool:
        return isinstance(request.auth, WorkerNode)
