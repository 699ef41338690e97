"""What agents upload for leases is deleted once no upload URL can write it (`services.lease_uploads_clear`): a
lease that ended without a result (a refused report, a release, an expiry) left its upload for good, so a provider
could fill the market's storage by uploading for every lease and never reporting; a PUT after a report (an S3 URL
cannot be revoked) likewise. Results that were reported, frozen under their digest, are never touched."""

import io
from collections import Counter
from datetime import timedelta

import pytest
from django.core.files.storage import default_storage
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from marketplace import blobs
from marketplace.dispatch import conf, services
from marketplace.dispatch.manifests import image_size, noisy_key
from marketplace.dispatch.models import FrameLease
from marketplace.jobs.models import Frame, Job
from tests.fixtures.market import make_node, make_queued_job, png_bytes

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("agent_queues")]

WRITABLE_FOR = timedelta(seconds=conf.SIGNED_URL_SECONDS + conf.UPLOADS_CLEAR_AFTER_SLACK_SECONDS)


def leased(node) -> tuple[FrameLease, str]:
    delivery = services.lease_create_for_node(node=node)
    assert delivery is not None
    lease = FrameLease.objects.get(pk=delivery.lease_id)
    assert lease.upload_key == lease.result_key and lease.upload_key.startswith("results/")
    return lease, delivery.token


def upload(lease: FrameLease, *, flat: bool = False, seed: int = 0) -> None:
    """What the agent PUTs to its upload URL."""
    data = png_bytes(*image_size(lease.manifest), flat=flat, seed=seed)
    blobs.blob_put(key=lease.upload_key, fileobj=io.BytesIO(data))


@pytest.fixture(autouse=True)
def manual_matching(monkeypatch):
    """Matching runs only when a test leases explicitly (a report or a release asks for it otherwise)."""
    monkeypatch.setattr(services, "_after_commit_match", lambda: None)


@pytest.fixture
def farm(funded_artist, provider):
    make_queued_job(funded_artist, frames=6)
    return [make_node(provider, name=f"n{i}", unchecked=True)[0] for i in range(4)]


def test_the_uploads_of_leases_that_ended_without_a_result_are_deleted_once_no_url_can_write(farm):
    refused_node, released_node, expired_node, busy_node = farm
    refused, token = leased(refused_node)
    upload(refused, flat=True)  # a blank frame: the report is refused
    assert not services.lease_report(node=refused_node, lease_id=refused.pk, token=token, ok=True).accepted
    released, token = leased(released_node)
    upload(released)
    services.lease_release(node=released_node, lease_id=released.pk, token=token)
    expired, _ = leased(expired_node)
    upload(expired)
    FrameLease.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert services.leases_reap() == 1
    active, _ = leased(busy_node)
    upload(active)
    ended = [refused, released, expired]
    assert set(FrameLease.objects.filter(pk__in=[x.pk for x in ended]).values_list("state", flat=True)) == {
        "failed",
        "released",
        "expired",
    }

    # Their URLs may still write: nothing is deleted yet.
    assert services.lease_uploads_clear(now=timezone.now() + WRITABLE_FOR - timedelta(seconds=5)) == 0
    assert all(blobs.blob_exists(x.upload_key) for x in [*ended, active])

    assert services.lease_uploads_clear(now=timezone.now() + WRITABLE_FOR + timedelta(seconds=5)) == 3
    assert not any(blobs.blob_exists(x.upload_key) for x in ended)
    assert blobs.blob_exists(active.upload_key)  # its agent is still rendering
    assert services.lease_uploads_clear(now=timezone.now() + 2 * WRITABLE_FOR) == 0  # each lease once


def test_a_put_after_the_report_is_deleted_and_the_frozen_result_is_kept(farm, django_capture_on_commit_callbacks):
    node = farm[0]
    lease, token = leased(node)
    upload(lease, seed=3)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.lease_report(node=node, lease_id=lease.pk, token=token, ok=True).accepted
    frame = Frame.objects.get(pk=lease.frame_id)
    assert not blobs.blob_exists(lease.upload_key)  # deleted at the report
    upload(lease, seed=4)  # the agent writes to its S3 URL again, which works until it expires
    # Frozen results are shared by their content: even an ended lease naming one as its upload (none should)
    # leaves it.
    other, _ = leased(farm[1])
    ended_now = {"state": "failed", "finished_at": timezone.now()}
    FrameLease.objects.filter(pk=other.pk).update(upload_key=frame.result_key, **ended_now)
    assert services.lease_uploads_clear(now=timezone.now() + 2 * WRITABLE_FOR) == 2
    assert not blobs.blob_exists(lease.upload_key)
    assert blobs.blob_read_checked(frame.result_key, sha256=frame.result_sha256)
    assert blobs.blob_exists(frame.thumbnail_key)


def test_a_denoised_frame_s_pre_denoise_upload_is_deleted_too(farm):
    Job.objects.update(use_denoising=True)
    node = farm[0]
    lease, token = leased(node)
    assert lease.manifest["use_denoising"]
    upload(lease)
    noisy = noisy_key(lease.upload_key)
    blobs.blob_put(key=noisy, fileobj=io.BytesIO(b"the pre-denoise pass"))
    services.lease_release(node=node, lease_id=lease.pk, token=token)
    assert services.lease_uploads_clear(now=timezone.now() + 2 * WRITABLE_FOR) == 1
    assert not blobs.blob_exists(lease.upload_key) and not blobs.blob_exists(noisy)


def test_on_s3_a_thousand_leases_uploads_go_in_one_request(s3, farm, monkeypatch):
    monkeypatch.setattr(conf, "UPLOADS_CLEAR_BATCH", 2)
    ended = []
    for node in farm[:3]:
        lease, token = leased(node)
        upload(lease)
        services.lease_release(node=node, lease_id=lease.pk, token=token)
        ended.append(lease)
    # Ended in one reaper round, say: one time for all three, across the batches' boundary.
    FrameLease.objects.filter(pk__in=[x.pk for x in ended]).update(finished_at=timezone.now())
    sent: Counter[str] = Counter()
    default_storage.connection.meta.client.meta.events.register(
        "before-call.s3", lambda model, **_: sent.update([model.name])
    )
    # Batches of two leases here, until the leases waiting are cleared, in (finished_at, id) order.
    assert services.lease_uploads_clear(now=timezone.now() + 2 * WRITABLE_FOR, batches=5) == 3
    assert sent == {"DeleteObjects": 2}
    assert not any(blobs.blob_exists(x.upload_key) for x in ended)


@pytest.mark.django_db(transaction=True)
def test_the_migration_keeps_the_upload_keys_of_the_leases_not_yet_reported(farm):
    active, _ = leased(farm[0])
    failed, _ = leased(farm[1])
    done, _ = leased(farm[2])
    FrameLease.objects.filter(pk=failed.pk).update(state="failed", finished_at=timezone.now())
    FrameLease.objects.filter(pk=done.pk).update(state="done", result_key="results/sha256/" + "0" * 64 + ".png")
    executor = MigrationExecutor(connection)
    executor.migrate([("dispatch", "0006_lease_time_sampling")])
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    kept = dict(FrameLease.objects.values_list("pk", "upload_key"))
    assert kept == {active.pk: active.result_key, failed.pk: failed.result_key, done.pk: ""}


def test_a_run_goes_on_from_where_the_last_one_stopped(farm):
    first, token = leased(farm[0])
    upload(first)
    services.lease_release(node=farm[0], lease_id=first.pk, token=token)
    assert services.lease_uploads_clear(now=timezone.now() + 2 * WRITABLE_FOR) == 1
    upload(first)  # nothing deletes it again: that lease was cleared (a real URL has expired by then)
    later, token = leased(farm[1])
    upload(later)
    services.lease_release(node=farm[1], lease_id=later.pk, token=token)
    assert services.lease_uploads_clear(now=timezone.now() + 2 * WRITABLE_FOR) == 1
    assert not blobs.blob_exists(later.upload_key) and blobs.blob_exists(first.upload_key)
