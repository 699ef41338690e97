from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from marketplace.disputes import selectors as dispute_selectors
from marketplace.jobs import selectors as job_selectors
from marketplace.ledger import selectors as ledger_selectors
from marketplace.nodes import selectors as node_selectors
from marketplace.scenes import selectors as scene_selectors


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """The signed-in user's start page: balances and, per role, the next thing to do."""
    user = request.user
    context: dict = {
        "balances": ledger_selectors.user_balances(user=user),
        "escrow": ledger_selectors.user_escrow_total(user=user),
    }
    if user.is_artist or user.is_market_admin:
        context["scenes"] = scene_selectors.scenes_of(owner=user).count()
        context["jobs"] = list(job_selectors.jobs_of(owner=user)[:5])
    if user.is_provider or user.is_market_admin:
        context["nodes"] = node_selectors.nodes_of(owner=user).count()
    if user.is_market_admin:
        context["open_disputes"] = dispute_selectors.review_queue().count()
    return render(request, "web/home.html", context)
