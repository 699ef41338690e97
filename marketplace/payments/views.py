from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from marketplace.ledger import selectors as ledger_selectors
from marketplace.money import tokens
from marketplace.payments import conf, payouts, selectors, services
from marketplace.payments.forms import PayoutForm, TopUpForm
from marketplace.payments.providers import (
    PaymentsUnavailable,
    ProviderError,
    ProviderOutcomeUnknown,
    WebhookRefused,
    dev_provider_active,
    stripe_event_verify,
)


@login_required
def wallet(request: HttpRequest) -> HttpResponse:
    page = Paginator(ledger_selectors.user_postings(user=request.user), 25).get_page(request.GET.get("page"))
    return render(
        request,
        "payments/wallet.html",
        {
            "balances": ledger_selectors.user_balances(user=request.user),
            "escrow": ledger_selectors.user_escrow_total(user=request.user),
            "debt": selectors.wallet_debt_micro(user=request.user),
            "topups": selectors.topups_of(user=request.user),
            "form": TopUpForm(),
            "tokens_per_usd": conf.tokens_per_usd(),
            "simulated": dev_provider_active(),
            "page": page,
            "rows": selectors.history_rows(page),
        },
    )


@login_required
@require_POST
def topup_create(request: HttpRequest) -> HttpResponse:
    form = TopUpForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(e for errors in form.errors.values() for e in errors))
        return redirect("payments:wallet")
    try:
        _, url = services.topup_start(user=request.user, amount_cents=form.amount_cents())
    except (services.TopUpRefused, PaymentsUnavailable) as exc:
        messages.error(request, str(exc))
        return redirect("payments:wallet")
    return redirect(url)


@login_required
def topup_return(request: HttpRequest, ref) -> HttpResponse:
    topup = selectors.topup_of(user=request.user, ref=ref)
    template = "payments/_topup_state.html" if request.headers.get("X-Fragment") else "payments/topup_return.html"
    return render(request, template, {"topup": topup})


@login_required
def dev_checkout(request: HttpRequest, ref) -> HttpResponse:
    """The simulated payment page. Exists only while the dev provider is the active one."""
    if not dev_provider_active():
        raise Http404("simulated payments are off on this server")
    topup = selectors.topup_of(user=request.user, ref=ref)
    if topup.provider != "dev":
        raise Http404("not a simulated payment")
    if request.method == "POST":
        # The same service the Stripe webhook calls for checkout.session.completed.
        outcome = services.topup_complete(
            ref=topup.ref,
            session_id=topup.session_id or "",
            payment_intent="",
            amount_cents=topup.amount_cents,
            currency=topup.currency,
        )
        topup.refresh_from_db()
        if topup.completed_at is not None:
            messages.success(
                request, f"Simulated payment done: {tokens(topup.credited_micro)} tokens were added to your wallet."
            )
        else:
            messages.error(request, f"Simulated payment not credited: {outcome}.")
        return redirect("payments:wallet")
    return render(request, "payments/dev_checkout.html", {"topup": topup})


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> HttpResponse:
    try:
        event = stripe_event_verify(payload=request.body, signature=request.headers.get("Stripe-Signature", ""))
    except WebhookRefused as exc:
        return JsonResponse({"error": str(exc)}, status=exc.status)
    return JsonResponse({"received": event["id"], "outcome": services.webhook_event_process(event=event)})


def _provider_only(request: HttpRequest) -> None:
    if not request.user.is_provider:
        raise PermissionDenied("earnings and payouts are for GPU provider accounts")


def _earnings_page(request: HttpRequest, *, form: PayoutForm, status: int = 200) -> HttpResponse:
    return render(
        request,
        "payments/earnings.html",
        {
            "balances": ledger_selectors.user_balances(user=request.user),
            "frames": selectors.earnings_by_image(selectors.provider_frame_earnings(provider=request.user)),
            "node_rates": selectors.provider_node_rates(provider=request.user),
            "payouts": selectors.payouts_of(user=request.user),
            "connect": selectors.connect_account_of(user=request.user),
            "payout_min": conf.payout_min_micro(),
            "form": form,
            "simulated": dev_provider_active(),
        },
        status=status,
    )


@login_required
def earnings(request: HttpRequest) -> HttpResponse:
    _provider_only(request)
    return _earnings_page(request, form=PayoutForm.fresh())


@login_required
@require_POST
def payout_create(request: HttpRequest) -> HttpResponse:
    _provider_only(request)
    form = PayoutForm(request.POST)
    if not form.is_valid():
        return _earnings_page(request, form=form, status=400)
    try:
        payout = payouts.payout_request(
            user=request.user, amount_micro=form.cleaned_data["tokens"], request_key=form.cleaned_data["request_key"]
        )
    except (payouts.PayoutRefused, PaymentsUnavailable) as exc:
        form.add_error(None, str(exc))
        return _earnings_page(request, form=form, status=exc.status)
    level = messages.error if payout.state == payout.State.FAILED else messages.success
    level(request, f"Payout {payout.pk}: {payout.get_state_display()}. {payout.error}".strip())
    return redirect("payments:earnings")


@login_required
@require_POST
def connect_onboard(request: HttpRequest) -> HttpResponse:
    _provider_only(request)
    try:
        return redirect(payouts.connect_onboard_start(user=request.user))
    except (payouts.PayoutRefused, PaymentsUnavailable, ProviderError, ProviderOutcomeUnknown) as exc:
        messages.error(request, str(exc))
        return redirect("payments:earnings")


@login_required
def connect_return(request: HttpRequest) -> HttpResponse:
    _provider_only(request)
    try:
        account = payouts.connect_refresh(user=request.user)
    except (PaymentsUnavailable, ProviderError, ProviderOutcomeUnknown) as exc:
        messages.error(request, str(exc))
        return redirect("payments:earnings")
    if account is not None and account.onboarded:
        messages.success(request, "Payout account ready.")
    else:
        messages.error(request, "Payout onboarding is not finished yet.")
    return redirect("payments:earnings")
