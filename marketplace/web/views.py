from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from marketplace.ledger import selectors as ledger_selectors


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "web/home.html", {"balances": ledger_selectors.user_balances(user=request.user)})
