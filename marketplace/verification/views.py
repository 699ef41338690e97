from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from marketplace.verification import policy, selectors


@login_required
def node_verification(request: HttpRequest, node_id: int) -> HttpResponse:
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
