"""Decoding is bounded before any pixel is decoded: a tiny upload whose header claims a huge image is refused from
its header, and the web process does not grow (measured in a fresh process, peak RSS)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.test import Client
from rest_framework.test import APIClient

from marketplace.dispatch import queues, services
from marketplace.dispatch.models import FrameLease
from marketplace.jobs.models import Frame
from marketplace.jobs.states import FrameState
from tests.fixtures.bombs import exr_bomb, png_bomb
from tests.fixtures.market import make_node, make_queued_job

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("agent_queues")]
ROOT = Path(__file__).resolve().parents[2]
GROWTH_LIMIT_MIB = 50


def probe(*args: str) -> dict:
    """Run tests/fixtures/rss_probe.py in a fresh interpreter (same environment) and return its JSON answer."""
    out = subprocess.run(
        [sys.executable, "-m", "tests.fixtures.rss_probe", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("name", "bomb", "size"),
    [
        ("png", png_bomb, (11000, 11000)),
        ("exr", exr_bomb, (8000, 8000)),
    ],
)
def test_a_huge_image_in_a_tiny_upload_is_refused_from_its_header(funded_artist, provider, name, bomb, size):
    job = make_queued_job(funded_artist, frames=1)
    node, node_token = make_node(provider, unchecked=True)
    assert services.match_frames() == 1
    msg = json.loads(redis.Redis.from_url(settings.AGENT_BROKER_URL).rpop(queues.queue_key(node.pk)))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Node {node_token}")
    details = client.get(f"/api/v1/agent/leases/{msg['lease']}/", HTTP_X_LEASE_TOKEN=msg["token"]).json()
    data = bomb(*size)
    assert len(data) < 150_000  # the whole attack is ~120-140 KB
    stored = Client().generic(
        "PUT", details["upload_url"].removeprefix(settings.PUBLIC_URL), data, content_type="application/octet-stream"
    )
    assert stored.status_code == 201

    answer = probe("report", connection.settings_dict["NAME"], str(msg["lease"]), node_token, msg["token"])

    assert answer["status"] == 422, answer
    assert answer["body"]["detail"] == f"image is {size[0]}x{size[1]}, leased 32x24"
    print(f"{name} {size[0]}x{size[1]}: the report grew the process by {answer['grew_mib']:.1f} MiB")
    assert answer["grew_mib"] < GROWTH_LIMIT_MIB, f"the report grew the process by {answer['grew_mib']:.0f} MiB"
    assert FrameLease.objects.get(pk=msg["lease"]).state == FrameLease.State.FAILED
    assert Frame.objects.get(job=job).state in (FrameState.QUEUED, FrameState.LEASED)  # back to the queue


def test_render_kernels_refuses_an_image_over_its_pixel_cap_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_bomb(11000, 11000))
    answer = probe("render_kernels", "png", str(path))
    assert answer["answer"].startswith("refused: the image is 11000x11000 pixels, over the limit of 67108864")
    assert answer["grew_mib"] < GROWTH_LIMIT_MIB
