"""Money end to end in real Chromium: a simulated top-up, a settled frame, a dispute, an admin upholding it
with the diff heatmap on screen, and the balances on both sides, read from the pages."""
import re

import pytest

from marketplace.disputes.models import Dispute
from marketplace.jobs.models import Job
from tests.fixtures.personas import PASSWORD
from tests.payments.helpers import M, gradient, settled_frame, store_png, verify_crop

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
PRICE = 100 * M


@pytest.fixture(autouse=True)
def dev_payments(settings):
    settings.STRIPE_SECRET_KEY = ""
    settings.PAYMENTS_DEV_PROVIDER = True


def logged_in(browser, live_server, user):
    page = browser.new_context().new_page()
    page.set_default_timeout(15_000)
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"^(?!.*/accounts/login/)"))
    return page


def shown(page, url: str, balance: str) -> str:
    page.goto(url)
    return page.inner_text(f'[data-balance="{balance}"]')


def test_top_up_dispute_uphold_and_both_balances(browser, live_server, artist, provider, admin_user):
    wallet_url = f"{live_server.url}/payments/wallet/"
    earnings_url = f"{live_server.url}/payments/earnings/"

    # The artist buys 2,000 tokens on the simulated checkout.
    art = logged_in(browser, live_server, artist)
    art.goto(wallet_url)
    art.fill("#id_amount", "20")
    art.click("text=Top up")
    assert "SIMULATED PAYMENT — no real money" in art.inner_text("h1")
    art.click("text=Complete simulated payment")
    art.wait_for_url(wallet_url)
    assert art.inner_text('[data-balance="artist_wallet"]') == "2,000"

    # A frame of the artist's job is rendered, checked by a crop re-render on another node, and settled.
    delivered = gradient()
    honest = delivered.copy()
    honest[7:11, 12:18] = [255, 0, 0]
    frame = settled_frame(artist=artist, provider=provider, price=PRICE, fund_artist=False,
                          result_key=store_png("results/e2e-frame.png", delivered))
    verify_crop(frame, provider=provider, image=honest)
    Job.objects.filter(pk=frame.job_id).update(state="done")
    assert shown(art, wallet_url, "artist_wallet") == "1,900"
    assert art.inner_text('[data-balance="escrow"]') == "0"
    gpu = logged_in(browser, live_server, provider)
    assert shown(gpu, earnings_url, "provider_pending") == "90"

    # The artist disputes it.
    art.goto(f"{live_server.url}/disputes/new/{frame.pk}/")
    art.fill("#id_reason", "The red marker in the middle is missing.")
    art.click("text=Send dispute")
    assert art.inner_text("[data-dispute-state]") == "Open"
    gpu.goto(earnings_url)
    assert "frozen: under dispute" in gpu.content()

    # An admin reviews it with the heatmap on screen and upholds it.
    admin = logged_in(browser, live_server, admin_user)
    admin.goto(f"{live_server.url}/disputes/review/")
    admin.click(f"text=frame 1 of job {frame.job_id}")
    admin.wait_for_function("""() => {
        const img = document.querySelector('img[data-evidence="heatmap"]');
        return img && img.complete && img.naturalWidth > 0;
    }""")
    assert admin.eval_on_selector('img[data-evidence="heatmap"]', "img => img.naturalWidth") == 16
    assert "The red marker in the middle is missing." in admin.content()
    admin.fill("#id_note", "The crop re-render shows the marker; the delivered frame lacks it.")
    admin.click("text=Uphold")
    assert admin.inner_text("[data-dispute-state]") == "Upheld"

    # The provider's pending pay is gone; the artist's price is back in escrow for the re-render.
    assert shown(gpu, earnings_url, "provider_pending") == "0"
    assert shown(art, wallet_url, "artist_wallet") == "1,900"
    assert art.inner_text('[data-balance="escrow"]') == "100"
    dispute = Dispute.objects.get()
    assert art.locator(f'a[href="/disputes/{dispute.pk}/"]').count() >= 1  # the history links the dispute
