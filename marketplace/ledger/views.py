from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from marketplace.ledger import selectors


@login_required
def ledger_page(request: HttpRequest) -> HttpResponse:
    page = Paginator(selectors.user_postings(user=request.user), 50).get_page(request.GET.get("page"))
    return render(
        request,
        "ledger/ledger.html",
        {
            "balances": selectors.user_balances(user=request.user),
            "escrow": selectors.user_escrow_total(user=request.user),
            "page": page,
        },
    )
