"""The admin review pages: evidence made by render_kernels, trust history, decisions; admins only."""

import io
import tempfile

import numpy as np
import pytest
from PIL import Image

from marketplace import blobs
from marketplace.disputes.models import Dispute
from marketplace.disputes.services import dispute_open
from marketplace.verification.models import CropCheck
from marketplace.verification.services import trust_record
from tests.fixtures.verification import CROP, crop_check, frame_check_of
from tests.payments.helpers import M, gradient, settled_frame, store_png, wallet

pytestmark = pytest.mark.django_db


@pytest.fixture
def dispute(media, artist, provider) -> Dispute:
    delivered = gradient()
    frame = settled_frame(
        artist=artist, provider=provider, price=10 * M, result_key=store_png("results/frame.png", delivered)
    )
    honest = delivered.copy()
    honest[7:11, 12:18] = [255, 0, 0]  # the delivered frame lacks this patch that an honest render has
    crop_check(frame, provider=provider, image=honest)
    trust_record(node_id=frame.node_id, passed=True, reason="crop matched", frame_id=frame.pk)
    return dispute_open(artist=artist, frame_id=frame.pk, reason="A red marker is missing.")


def store_exr(key: str, image: np.ndarray) -> None:
    import OpenEXR

    linear = image.astype(np.float32) / 255
    channels = {c: np.ascontiguousarray(linear[..., i]) for i, c in enumerate("RGB")}
    with tempfile.NamedTemporaryFile(suffix=".exr") as tmp:
        with OpenEXR.File({"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}, channels) as f:
            f.write(tmp.name)
        blobs.blob_put(key=key, fileobj=open(tmp.name, "rb"))


def decoded(response) -> np.ndarray:
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(response.content)))


def test_the_queue_lists_open_disputes_for_admins(client, admin_user, dispute):
    client.force_login(admin_user)
    page = client.get("/disputes/review/").content.decode()
    assert f"/disputes/review/{dispute.pk}/" in page and "A red marker is missing." in page


def test_the_detail_page_shows_evidence_metrics_trust_and_reason(client, admin_user, dispute):
    client.force_login(admin_user)
    page = client.get(f"/disputes/review/{dispute.pk}/").content.decode()
    assert "A red marker is missing." in page
    assert "Check passed" in page and "crop matched" in page  # the node's trust history
    assert "Pixels over tolerance" in page and "No verification crop" not in page
    crop = CropCheck.objects.get()
    assert f"re-rendered by node #{crop.verify_lease.node_id}" in page
    for view in ("candidate", "reference", "heatmap"):
        assert f"/disputes/review/{dispute.pk}/evidence/{crop.pk}/{view}.png" in page


def test_the_heatmap_is_bright_where_the_frame_differs(client, admin_user, dispute):
    client.force_login(admin_user)
    crop = CropCheck.objects.get()
    heatmap = decoded(client.get(f"/disputes/review/{dispute.pk}/evidence/{crop.pk}/heatmap.png"))
    assert heatmap.shape == (CROP["h"], CROP["w"], 3)
    # crop (10, 5): the tampered patch rows 7-10, cols 12-17 sit at rows 2-5, cols 2-7 of the crop
    assert heatmap[2:6, 2:8].mean() > 100 and heatmap[:2].max() < 10
    candidate = decoded(client.get(f"/disputes/review/{dispute.pk}/evidence/{crop.pk}/candidate.png"))
    reference = decoded(client.get(f"/disputes/review/{dispute.pk}/evidence/{crop.pk}/reference.png"))
    assert candidate.shape == reference.shape == heatmap.shape
    frame = decoded(client.get(f"/disputes/review/{dispute.pk}/evidence/frame.png"))
    assert frame.shape == (30, 40, 3)


def test_without_crops_the_admin_judges_the_frame_alone(client, media, admin_user, artist, provider):
    frame = settled_frame(artist=artist, provider=provider, result_key=store_png("results/alone.png", gradient()))
    dispute = dispute_open(artist=artist, frame_id=frame.pk, reason="It looks too dark.")
    client.force_login(admin_user)
    page = client.get(f"/disputes/review/{dispute.pk}/").content.decode()
    assert "No verification crop was re-rendered for this frame" in page
    assert client.get(f"/disputes/review/{dispute.pk}/evidence/frame.png").status_code == 200


def test_a_missing_image_is_explained_not_a_crash(client, media, admin_user, artist, provider):
    frame = settled_frame(artist=artist, provider=provider, result_key="results/gone.png")
    crop_check(frame, provider=provider, image=gradient())
    dispute = dispute_open(artist=artist, frame_id=frame.pk, reason="Where is my frame?")
    client.force_login(admin_user)
    page = client.get(f"/disputes/review/{dispute.pk}/")
    assert page.status_code == 200 and "is not in storage" in page.content.decode()
    assert client.get(f"/disputes/review/{dispute.pk}/evidence/frame.png").status_code == 404


def test_an_admin_upholds_from_the_page(client, admin_user, artist, dispute):
    client.force_login(admin_user)
    response = client.post(
        f"/disputes/review/{dispute.pk}/decide/", {"decision": "upheld", "note": "Marker gone."}, follow=True
    )
    assert "Dispute" in response.content.decode() and "upheld" in response.content.decode()
    assert Dispute.objects.get().state == Dispute.State.UPHELD
    assert wallet(artist) == 0  # refunded and held again for the re-render


@pytest.mark.parametrize("who", ["artist", "provider", "outsider"])
def test_non_admins_get_no_review_page_or_action(request, client, dispute, who):
    client.force_login(request.getfixturevalue(who))
    crop = CropCheck.objects.get()
    for url in (
        "/disputes/review/",
        f"/disputes/review/{dispute.pk}/",
        f"/disputes/review/{dispute.pk}/evidence/frame.png",
        f"/disputes/review/{dispute.pk}/evidence/{crop.pk}/heatmap.png",
    ):
        assert client.get(url).status_code == 403, url
    assert client.post(f"/disputes/review/{dispute.pk}/decide/", {"decision": "upheld", "note": "x"}).status_code == 403
    assert Dispute.objects.get().state == Dispute.State.OPEN


def test_anonymous_visitors_are_sent_to_log_in(client, dispute):
    response = client.get(f"/disputes/review/{dispute.pk}/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_a_crop_too_small_for_metrics_still_shows_its_images(client, media, admin_user, artist, provider):
    frame = settled_frame(artist=artist, provider=provider, result_key=store_png("results/small.png", gradient()))
    crop = crop_check(frame, provider=provider, image=gradient(), crop={"x": 0, "y": 0, "w": 4, "h": 4})
    dispute = dispute_open(artist=artist, frame_id=frame.pk, reason="Something is off here.")
    client.force_login(admin_user)
    page = client.get(f"/disputes/review/{dispute.pk}/").content.decode()
    assert "no metrics for this crop" in page
    assert f"/evidence/{crop.pk}/heatmap.png" in page
    assert decoded(client.get(f"/disputes/review/{dispute.pk}/evidence/{crop.pk}/heatmap.png")).shape == (4, 4, 3)


def test_an_unknown_crop_or_view_is_404(client, admin_user, dispute):
    client.force_login(admin_user)
    crop = CropCheck.objects.get()
    assert client.get(f"/disputes/review/{dispute.pk}/evidence/{crop.pk}/secrets.png").status_code == 404
    assert client.get(f"/disputes/review/{dispute.pk}/evidence/{crop.pk + 99}/heatmap.png").status_code == 404


def test_crops_rendered_by_the_platform_are_evidence_too(client, media, admin_user, artist, provider):
    """In a market with one provider the platform verifier renders every crop: the admin still gets a reference."""
    delivered = gradient()
    frame = settled_frame(artist=artist, provider=provider, result_key=store_png("results/solo.png", delivered))
    honest = delivered.copy()
    honest[7:11, 12:18] = [255, 0, 0]
    crop = crop_check(frame, image=honest, verifier=CropCheck.Verifier.PLATFORM)
    dispute = dispute_open(artist=artist, frame_id=frame.pk, reason="A red marker is missing.")
    client.force_login(admin_user)
    page = client.get(f"/disputes/review/{dispute.pk}/").content.decode()
    assert "re-rendered by the platform" in page and "No verification crop" not in page
    assert 'data-crop-verdict="passed"' in page and "Pixels over tolerance" in page
    heatmap = decoded(client.get(f"/disputes/review/{dispute.pk}/evidence/{crop.pk}/heatmap.png"))
    assert heatmap[2:6, 2:8].mean() > 100 and heatmap[:2].max() < 10


def test_a_denoised_frame_is_compared_through_its_pre_denoise_pass(client, media, admin_user, artist, provider):
    """Checks compared crops with the noisy pass (the denoiser is not deterministic across GPUs); so does the page."""
    frame = settled_frame(artist=artist, provider=provider, result_key=store_png("results/den.png", gradient()))
    noisy = gradient()
    noisy[5:17, 10:26] = 0  # where the noisy pass differs from the denoised frame: the reference matches it
    store_exr("results/den.noisy.exr", noisy)
    frame_check_of(frame, manifest={"use_denoising": True})
    crop = crop_check(frame, image=noisy, verifier=CropCheck.Verifier.PLATFORM)
    dispute = dispute_open(artist=artist, frame_id=frame.pk, reason="Blotchy shadows.")
    client.force_login(admin_user)
    page = client.get(f"/disputes/review/{dispute.pk}/").content.decode()
    assert "Delivered frame before denoising" in page
    assert decoded(client.get(f"/disputes/review/{dispute.pk}/evidence/{crop.pk}/heatmap.png")).max() < 10


def test_crops_of_an_earlier_result_of_the_frame_are_not_shown(client, media, admin_user, artist, provider):
    frame = settled_frame(artist=artist, provider=provider, result_key=store_png("results/v1.png", gradient()))
    old = crop_check(frame, image=gradient(), verifier=CropCheck.Verifier.PLATFORM)
    type(frame).objects.filter(pk=frame.pk).update(result_key=store_png("results/v2.png", gradient()))
    frame.refresh_from_db()
    new = crop_check(frame, image=gradient(), verifier=CropCheck.Verifier.PLATFORM)
    dispute = dispute_open(artist=artist, frame_id=frame.pk, reason="Still wrong after the re-render.")
    client.force_login(admin_user)
    page = client.get(f"/disputes/review/{dispute.pk}/").content.decode()
    assert f"/evidence/{new.pk}/heatmap.png" in page and f"/evidence/{old.pk}/" not in page
    assert client.get(f"/disputes/review/{dispute.pk}/evidence/{old.pk}/heatmap.png").status_code == 404
