"""Money end to end in real Chromium, with the whole farm running: the artist tops up on the simulated
checkout, accepts a quote paid from that wallet, a real agent renders the frame with bpy, the platform
verifier re-renders crops of it, the frame settles; the artist disputes it, an admin reviews it with the
heatmap made from the platform's crops on screen and upholds it; the balances on both sides, read from
the pages, change as they should, and a second provider's agent renders the frame again.
"""

import pytest

from marketplace.disputes.models import Dispute
from marketplace.jobs.models import Frame, Job
from marketplace.jobs.states import FrameState, JobState
from marketplace.ledger import selectors as ledger
from marketplace.ledger.models import Account
from marketplace.ledger.services import fee_for
from marketplace.verification import policy
from marketplace.web.templatetags.money import tokens
from tests.fixtures.farm import demo_scene, wait_for
from tests.fixtures.market import make_node
from tests.fixtures.personas import PASSWORD
from tests.payments.helpers import balance

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
TOPUP_TOKENS = 2_000 * 1_000_000


@pytest.fixture(autouse=True)
def dev_payments(settings):
    settings.STRIPE_SECRET_KEY = ""
    settings.PAYMENTS_DEV_PROVIDER = True


@pytest.fixture
def demo_blend(tmp_path_factory):
    from workers.blend import make_demo_scene

    return make_demo_scene(tmp_path_factory.mktemp("demo") / "demo.blend", frames=1, resolution=(64, 36), samples=8)


@pytest.fixture
def second_provider(db):
    from marketplace.accounts.models import User
    from marketplace.accounts.services import user_create

    return user_create(username="ivy", password=PASSWORD, role=User.Role.PROVIDER)


def shown(page, url: str, balance_kind: str) -> str:
    page.goto(url)
    return page.inner_text(f'[data-balance="{balance_kind}"]')


def test_top_up_render_dispute_uphold_and_both_balances(
    login, farm, live_server, demo_blend, artist, provider, second_provider, admin_user
):
    wallet_url = f"{live_server.url}/payments/wallet/"
    earnings_url = f"{live_server.url}/payments/earnings/"

    # The artist buys 2,000 tokens on the simulated checkout.
    art = login(artist)
    art.goto(wallet_url)
    art.fill("#id_amount", "20")
    art.click("text=Top up")
    assert "SIMULATED PAYMENT — no real money" in art.inner_text("h1")
    art.click("text=Complete simulated payment")
    art.wait_for_url(wallet_url)
    assert art.inner_text('[data-balance="artist_wallet"]') == tokens(TOPUP_TOKENS)

    # ... quotes a one-frame render of the (stored, inspected) demo scene and pays it into escrow.
    scene = demo_scene(artist, demo_blend)
    art.goto(f"{live_server.url}/scenes/{scene.pk}/")
    art.click("#get-quote")
    art.click("text=Get a quote")
    art.wait_for_selector("#quote-total")
    job = Job.objects.get(owner=artist)
    price = job.price_per_frame
    assert job.quote["frames"] == 1 and job.quote["total"] == price > 0
    art.click("text=Accept and hold")
    art.wait_for_selector("#job-escrow")
    assert art.inner_text("#job-escrow") == f"{tokens(price)} tokens"

    # A real agent renders it; with no other provider online the platform verifier re-renders the crops.
    node, token = make_node(provider, name="gus-rig")
    farm.start_celery()
    farm.start_agent("agent-gus", token)
    art.set_default_timeout(240_000)
    art.wait_for_selector('tr[data-frame="1"][data-state="settled"]')  # the page's live grid, polled
    frame = Frame.objects.get(job=job)
    assert frame.node_id == node.pk and frame.thumbnail_key
    assert art.locator('tr[data-frame="1"] img').count() == 1  # the thumbnail arrived on the page
    art.set_default_timeout(20_000)
    share = price - fee_for(price)
    assert shown(art, wallet_url, "artist_wallet") == tokens(TOPUP_TOKENS - price)
    assert art.inner_text('[data-balance="escrow"]') == "0.00"  # amounts read with 2 decimals
    gpu = login(provider)
    assert shown(gpu, earnings_url, "provider_pending") == tokens(share)

    # The artist disputes it from the job page.
    art.goto(f"{live_server.url}/jobs/{job.pk}/")
    art.click('tr[data-frame="1"] >> text=Dispute')
    art.fill("#id_reason", "The cube's shadow is missing in this frame.")
    art.click("text=Send dispute")
    assert art.inner_text("[data-dispute-state]") == "Open"
    gpu.goto(earnings_url)
    assert "frozen: under dispute" in gpu.content()

    # An admin reviews it: the frame, the platform's crops, the heatmap on screen; and upholds it.
    admin = login(admin_user)
    admin.goto(f"{live_server.url}/disputes/review/")
    admin.click(f"text=frame 1 of job {job.pk}")
    admin.wait_for_function("""() => {
        const img = document.querySelector('img[data-evidence="heatmap"]');
        return img && img.complete && img.naturalWidth > 0;
    }""")
    assert admin.locator("section.crop").count() == policy.CROPS_PER_CHECK
    assert "re-rendered by the platform" in admin.inner_text("section.crop >> nth=0")
    assert admin.eval_on_selector("img.evidence-frame", "img => img.complete && img.naturalWidth") == 64
    assert "The cube's shadow is missing in this frame." in admin.content()
    admin.fill("#id_note", "Upheld for the test: the re-render goes to another provider.")
    admin.click("text=Uphold")
    assert admin.inner_text("[data-dispute-state]") == "Upheld"

    # The provider's pending pay is gone; the artist's price is back in escrow for the re-render.
    assert shown(gpu, earnings_url, "provider_pending") == "0.00"  # amounts read with 2 decimals
    assert shown(art, wallet_url, "artist_wallet") == tokens(TOPUP_TOKENS - price)
    assert art.inner_text('[data-balance="escrow"]') == tokens(price)
    dispute = Dispute.objects.get()
    assert art.locator(f'a[href="/disputes/{dispute.pk}/"]').count() >= 1  # the history links the dispute

    # Another provider's agent renders the frame again (the disputed node is blocked for this job).
    _, token_ivy = make_node(second_provider, name="ivy-rig")
    farm.start_agent("agent-ivy", token_ivy)
    wait_for(
        lambda: Frame.objects.filter(job=job, state=FrameState.SETTLED).exists(),
        timeout=240,
        farm=farm,
        what="the frame rendered again",
    )
    frame.refresh_from_db()
    assert frame.node.owner_id == second_provider.pk and frame.settle_count == 2
    ivy = login(second_provider)
    assert shown(ivy, earnings_url, "provider_pending") == tokens(share)
    assert shown(gpu, earnings_url, "provider_pending") == "0.00"  # amounts read with 2 decimals
    assert shown(art, wallet_url, "artist_wallet") == tokens(TOPUP_TOKENS - price)
    assert art.inner_text('[data-balance="escrow"]') == "0.00"  # amounts read with 2 decimals
    assert Job.objects.get(pk=job.pk).state == JobState.DONE
    assert balance(Account.Kind.PLATFORM_REVENUE) == fee_for(price)
    assert ledger.ledger_total() == 0 and ledger.ledger_drift() == []
