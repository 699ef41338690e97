from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from marketplace.accounts.models import User
from marketplace.verification import policy, selectors


class AuthenticatedHttpRequest(HttpRequest):
    """A request that login_required let through: its user is signed in (django-stubs' convention)."""

    user: User


@login_required
def node_verification(request: AuthenticatedHttpRequest, node_id: int) -> HttpResponse:
    """A node's trust, why it changed, and its recent checks: for the node's owner and admins (404 otherwise)."""
    view = selectors.node_verification(user=request.user, node_id=node_id)
    return render(
        request,
        "verification/node.html",
        {
            "v": view,
            "trusted_after": policy.TRUSTED_AFTER,
            "ban_after": policy.BAN_AFTER_FAILURES,
            "floor": policy.FLOOR,
            "is_admin": request.user.is_market_admin,
        },
    )
