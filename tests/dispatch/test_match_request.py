"""A burst of changes asks for one `dispatch.match`, not one each (issue 17), and none is ever lost."""

import pytest

from marketplace.dispatch import conf, services
from marketplace.dispatch.models import FrameLease
from tests.fixtures.market import make_node, make_queued_job

PENDING = "task:pending:dispatch.match"  # marketplace.celery.delay_once's mark


@pytest.mark.django_db
def test_a_burst_of_requests_queues_one_match_and_a_request_after_it_starts_queues_another(
    celery_queue, funded_artist, provider
):
    for _ in range(50):
        services.match_request()
    assert celery_queue.llen("celery") == 1
    assert 0 < celery_queue.ttl(PENDING) <= conf.MATCH_REQUEST_TTL_SECONDS  # a lost message
    # The queued match starts (it clears the mark first) and finds work made before it started ...
    job = make_queued_job(funded_artist, frames=2)
    make_node(provider, name="n0", unchecked=True)
    assert services.match_run() == 1
    # ... and a change made once it started asks again.
    services.match_request()
    assert celery_queue.llen("celery") == 2
    make_node(provider, name="n1", unchecked=True)
    assert services.match_run() == 1
    assert FrameLease.objects.filter(frame__job=job, state="active").count() == 2


@pytest.mark.django_db
def test_a_match_runs_rounds_until_one_falls_short(monkeypatch, funded_artist, provider):
    monkeypatch.setattr(conf, "MATCH_ROUND", 2)
    make_queued_job(funded_artist, frames=5)
    for i in range(5):
        make_node(provider, name=f"n{i}", unchecked=True)
    assert services.match_run() == 5  # rounds of 2, 2, 1
    assert FrameLease.objects.filter(state="active").count() == 5
