from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from marketplace.ledger import selectors as ledger_selectors
from marketplace.nodes import selectors, services


def _provider_only(request: HttpRequest) -> None:
    if not (request.user.is_provider or request.user.is_market_admin):
        raise Http404("no provider dashboard for this account")


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    _provider_only(request)
    context = {
        "nodes": selectors.nodes_of(owner=request.user),
        "balances": ledger_selectors.user_balances(user=request.user),
    }
    template = "nodes/_nodes.html" if request.headers.get("X-Fragment") else "nodes/dashboard.html"
    return render(request, template, context)


@login_required
@require_POST
def node_create(request: HttpRequest) -> HttpResponse:
    _provider_only(request)
    try:
        node, token = services.node_create(owner=request.user, name=request.POST.get("name", ""))
    except services.NodeError as exc:
        messages.error(request, str(exc))
        return redirect("nodes:dashboard")
    messages.success(request, f"Node {node.name} created. Its token is shown once: {token}")
    return redirect("nodes:dashboard")


@login_required
@require_POST
def node_pause(request: HttpRequest, node_id: int) -> HttpResponse:
    _provider_only(request)
    try:
        found = services.node_set_paused(
            owner=request.user,
            node_id=node_id,
            paused=request.POST.get("paused") == "1",
            mode=request.POST.get("mode") or "finish",
        )
    except services.NodeError as exc:
        messages.error(request, str(exc))
        return redirect("nodes:dashboard")
    if not found:
        raise Http404("no such node")
    return redirect("nodes:dashboard")
