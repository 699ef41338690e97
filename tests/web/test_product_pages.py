"""What a person reads on the pages (other than the job page): amounts in tokens with sensible precision, account
names in words, a next step on a new user's home page, the dispute and earnings pages, the admin's review layout."""

import re
from pathlib import Path

import pytest
from django.contrib.staticfiles import finders
from django.urls import reverse
from django.utils import timezone

from marketplace.disputes.selectors import disputable_frame_ids
from marketplace.disputes.services import dispute_open
from marketplace.jobs.models import Frame
from marketplace.jobs.services import job_quote
from marketplace.money import cents, tokens, tokens_decimal
from marketplace.payments import services as payment_services
from tests.fixtures.money import fund
from tests.jobs.conftest import calibrated_scene
from tests.payments.helpers import M, settled_frame

pytestmark = pytest.mark.django_db
REASON = "The cube is missing its shadow."


def page(client, user, url: str, **kwargs) -> str:
    client.force_login(user)
    response = client.get(url, **kwargs)
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def visible_text(html: str) -> str:
    """The page's text as read, without tags and attributes (an account kind may stay in a data attribute)."""
    return re.sub(r"<[^>]+>", " ", html)


@pytest.mark.parametrize(
    ("micro", "shown", "exact"),
    [
        (0, "0.00", "0.00"),
        (5, "0.000005", "0.000005"),
        (4_321, "0.004321", "0.004321"),
        (123_456, "0.1235", "0.123456"),
        (500_000, "0.50", "0.50"),
        (1_000_000, "1.00", "1.00"),
        (1_234_567, "1.23", "1.234567"),
        (12_500_000, "12.50", "12.50"),
        (1_000_000_000, "1,000.00", "1000.00"),
        (-2_500_000, "-2.50", "-2.50"),
    ],
)
def test_amounts_read_with_two_decimals_and_the_api_keeps_them_exact(micro, shown, exact):
    assert tokens(micro) == shown and tokens_decimal(micro) == exact
    assert cents(1234) == "12.34" and tokens(None) == "0.00" and tokens_decimal(None) is None


def test_a_new_artist_is_asked_to_upload_a_first_scene(client, artist):
    html = page(client, artist, reverse("home"))
    assert "Upload your first scene" in html and reverse("scenes:upload") in html
    assert "Register your first node" not in html


def test_a_new_provider_is_asked_to_register_a_first_node(client, provider):
    html = page(client, provider, reverse("home"))
    assert "Register your first node" in html and reverse("nodes:dashboard") in html
    assert "Upload your first scene" not in html


def test_an_admin_is_sent_to_the_open_disputes_and_sees_no_earnings_link(client, admin_user, artist, provider):
    frame = settled_frame(artist=artist, provider=provider, price=10 * M)
    dispute_open(artist=artist, frame_id=frame.pk, reason=REASON)
    html = page(client, admin_user, reverse("home"))
    assert "1 open dispute waits" in html and reverse("disputes:review") in html
    assert reverse("payments:earnings") not in html  # the page is for providers: no link to a 403


def test_balances_read_as_account_names_in_tokens(client, artist):
    fund(artist, 1_500 * M)
    for url in (reverse("home"), reverse("ledger"), reverse("payments:wallet")):
        text = visible_text(page(client, artist, url))
        assert "1,500.00" in text, url
        assert "artist_wallet" not in text and "Artist wallet" not in text, url
    assert "Wallet" in visible_text(page(client, artist, reverse("ledger")))


def test_the_simulated_top_up_confirms_in_tokens(client, artist, settings):
    settings.STRIPE_SECRET_KEY, settings.PAYMENTS_DEV_PROVIDER = "", True
    _, url = payment_services.topup_start(user=artist, amount_cents=1_000)  # $10 at 100 tokens per dollar
    client.force_login(artist)
    html = client.post(url, follow=True).content.decode()
    assert "1,000.00 tokens were added to your wallet" in html
    assert "micro-tokens" not in html and str(1_000 * M) not in html


def test_discarding_a_quote_says_so(client, artist):
    fund(artist, 100 * M)
    job = job_quote(owner=artist, scene=calibrated_scene(artist))
    client.force_login(artist)
    html = client.post(reverse("jobs:cancel", args=[job.pk]), follow=True).content.decode()
    assert "Quote discarded." in html and "frames stopped" not in html


def test_the_dispute_form_shows_the_frame_being_disputed(client, artist, provider):
    frame = settled_frame(artist=artist, provider=provider, price=10 * M)
    Frame.objects.filter(pk=frame.pk).update(thumbnail_key="thumbs/f.png")
    html = page(client, artist, reverse("disputes:new", args=[frame.pk]))
    assert f'src="{reverse("jobs:thumb", args=[frame.job_id, frame.pk])}"' in html
    assert f"Frame {frame.number}" in html


def test_a_disputed_frame_offers_no_second_dispute(client, artist, provider):
    frame = settled_frame(artist=artist, provider=provider, price=10 * M)
    dispute_link = f'href="{reverse("disputes:new", args=[frame.pk])}"'
    assert disputable_frame_ids(frame_ids=[frame.pk]) == {frame.pk}
    assert dispute_link in page(client, artist, reverse("jobs:detail", args=[frame.job_id]))
    dispute = dispute_open(artist=artist, frame_id=frame.pk, reason=REASON)
    assert disputable_frame_ids(frame_ids=[frame.pk]) == set()
    assert dispute_link not in page(client, artist, reverse("jobs:detail", args=[frame.job_id]))
    response = client.get(reverse("disputes:new", args=[frame.pk]))
    assert response.status_code == 302 and response["Location"] == reverse("disputes:detail", args=[dispute.pk])


def test_earnings_show_the_tiles_of_a_still_as_one_row(client, artist, provider):
    first = settled_frame(artist=artist, provider=provider, price=4 * M)
    tiles = [first] + [settled_frame(artist=artist, provider=provider, price=4 * M) for _ in range(3)]
    for i, tile in enumerate(tiles):  # four tiles of frame 1 of one job
        Frame.objects.filter(pk=tile.pk).update(job=first.job, tile_x=i % 2, tile_y=i // 2, tile_w=20, tile_h=15)
    single = settled_frame(artist=artist, provider=provider, price=4 * M, settled_at=timezone.now())
    html = page(client, provider, reverse("payments:earnings"))
    assert html.count(f"frame 1 of job {first.job_id}") == 1 and "4 tiles of the still" in html
    assert html.count(f"frame 1 of job {single.job_id}") == 1
    share = 4 * M - (4 * M) // 10  # the default 10 % fee
    assert f">{tokens(4 * share)}<" in html and f">{tokens(share)}<" in html


def test_the_review_page_puts_the_decision_next_to_the_evidence(client, admin_user, artist, provider):
    frame = settled_frame(artist=artist, provider=provider, price=10 * M)
    dispute = dispute_open(artist=artist, frame_id=frame.pk, reason=REASON)
    html = page(client, admin_user, reverse("disputes:review_detail", args=[dispute.pk]))
    panel, evidence = html.index('class="decision-panel"'), html.index('class="evidence"')
    assert panel < html.index('value="upheld"') < evidence < html.index("Verification crops")
    css = Path(finders.find("web/site.css")).read_text()
    assert re.search(r"\.decision-panel\{[^}]*position:sticky", css)


def test_the_stylesheet_lays_out_only_non_table_frames_as_a_grid():
    css = Path(finders.find("web/site.css")).read_text()
    grids = re.findall(r"([^{}]+)\{[^}]*display:grid", css)
    assert all("frames" not in selector or ":not(table)" in selector for selector in grids), grids
    assert "http://" not in css and "https://" not in css and "@import" not in css  # no CDN
