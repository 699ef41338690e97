"""Builders for verification tests: a frame rendered through the real lease/report path, verifier nodes."""

from __future__ import annotations

import io
import json
import secrets

import numpy as np
import redis
from django.conf import settings
from PIL import Image

from marketplace import blobs
from marketplace.accounts.models import User
from marketplace.accounts.services import user_create
from marketplace.dispatch import queues
from marketplace.dispatch import services as dispatch
from marketplace.dispatch.models import FrameLease
from marketplace.verification.crops import Crop, noisy_key

W, H = 32, 24


def truth_image(seed: int = 0, width: int = W, height: int = H) -> np.ndarray:
    """A textured RGBA frame standing in for an honest render."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // width, y * 255 // height, (x * y) % 256], axis=-1)
    noisy = np.clip(base + rng.integers(-40, 40, base.shape), 0, 255)
    return np.concatenate([noisy, np.full((height, width, 1), 255)], axis=-1).astype(np.uint8)


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def other_provider(name: str = "hal") -> User:
    return user_create(username=f"{name}-{secrets.token_hex(3)}", password="x" * 12, role=User.Role.PROVIDER)


def take(node) -> dict:
    raw = redis.Redis.from_url(settings.AGENT_BROKER_URL).rpop(queues.queue_key(node.pk))
    assert raw is not None, "nothing was delivered to the node's queue"
    return json.loads(raw)


def lease_and_report(node, image: np.ndarray, *, noisy: np.ndarray | None = None) -> FrameLease:
    """The node takes its next frame and reports `image` for it (and its pre-denoise pass), through dispatch."""
    delivery = dispatch.lease_create_for_node(node=node)
    assert delivery is not None, "the node got no frame"
    assert take(node)["lease"] == delivery.lease_id  # the agent takes its message
    lease = FrameLease.objects.get(pk=delivery.lease_id)
    blobs.blob_put(key=lease.result_key, fileobj=io.BytesIO(png(image)))
    if noisy is not None:
        blobs.blob_put(key=noisy_key(lease.result_key), fileobj=io.BytesIO(png(noisy)))
    outcome = dispatch.lease_report(node=node, lease_id=lease.pk, token=delivery.token, ok=True, stats={"seconds": 1.0})
    assert outcome.accepted, outcome.message
    lease.refresh_from_db()
    return lease


def verify_and_report(verifier_node, truth: np.ndarray, *, tamper=None) -> FrameLease:
    """The verifier node takes its verify lease and uploads its crop of `truth` (optionally tampered)."""
    message = take(verifier_node)
    assert message["kind"] == "verify"
    lease = FrameLease.objects.get(pk=message["lease"])
    crop = Crop.from_dict(lease.crop).cut(truth).copy()
    if tamper is not None:
        crop = tamper(crop)
    blobs.blob_put(key=lease.result_key, fileobj=io.BytesIO(png(crop)))
    outcome = dispatch.lease_report(node=verifier_node, lease_id=lease.pk, token=message["token"], ok=True)
    assert outcome.accepted, outcome.message
    lease.refresh_from_db()
    return lease
