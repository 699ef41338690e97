"""Shared by the payments, disputes and money-flow tests: Stripe-signed webhooks, settled frames, races."""

import hashlib
import hmac
import io
import json
import secrets
import time
import uuid
from datetime import datetime

import numpy as np
from django.test import Client
from django.utils import timezone
from PIL import Image

from marketplace import blobs
from marketplace.jobs.models import Frame, Job
from marketplace.jobs.states import FrameState, JobState
from marketplace.ledger.models import Account
from marketplace.ledger.selectors import account_balance
from marketplace.ledger.services import account_get, hold_escrow, release_escrow
from marketplace.nodes.models import WorkerNode
from marketplace.scenes.models import Scene
from tests.fixtures.money import fund

M = 1_000_000
WEBHOOK_SECRET = "whsec_test_secret"
WEBHOOK_URL = "/payments/stripe/webhook/"


def balance(kind: str, owner=None) -> int:
    return account_balance(account=account_get(kind=kind, owner=owner))


# --- Stripe webhooks --------------------------------------------------------------------------


def stripe_signature(payload: str, *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    """The Stripe-Signature header exactly as Stripe builds it: t=<unix>,v1=HMAC-SHA256(secret, "t.payload")."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def stripe_event(event_type: str, obj: dict, *, event_id: str | None = None) -> dict:
    return {
        "id": event_id or f"evt_{uuid.uuid4().hex[:24]}",
        "object": "event",
        "type": event_type,
        "api_version": "2025-08-27.basil",
        "created": int(time.time()),
        "livemode": False,
        "data": {"object": obj},
    }


def post_event(client: Client, event: dict, **sign_kwargs):
    payload = json.dumps(event)
    return client.post(
        WEBHOOK_URL,
        data=payload,
        content_type="application/json",
        headers={"Stripe-Signature": stripe_signature(payload, **sign_kwargs)},
    )


def session_completed(topup, *, amount: int | None = None, payment_intent: str = "pi_test_1") -> dict:
    return stripe_event(
        "checkout.session.completed",
        {
            "id": topup.session_id,
            "object": "checkout.session",
            "payment_status": "paid",
            "status": "complete",
            "amount_total": topup.amount_cents if amount is None else amount,
            "currency": topup.currency,
            "payment_intent": payment_intent,
            "client_reference_id": str(topup.user_id),
            "metadata": {"topup_ref": str(topup.ref)},
        },
    )


def charge_refunded(topup, *, amount_refunded: int, payment_intent: str = "pi_test_1") -> dict:
    return stripe_event(
        "charge.refunded",
        {
            "id": "ch_test_1",
            "object": "charge",
            "amount": topup.amount_cents,
            "amount_refunded": amount_refunded,
            "refunded": amount_refunded == topup.amount_cents,
            "payment_intent": payment_intent,
            "metadata": {"topup_ref": str(topup.ref)},
        },
    )


def charge_dispute(
    event_type: str, *, amount: int, status: str, payment_intent: str = "pi_test_1", dispute_id: str = "dp_test_1"
) -> dict:
    """A `charge.dispute.*` event: the whole dispute object as Stripe sends it at that point of its life."""
    return stripe_event(
        event_type,
        {
            "id": dispute_id,
            "object": "dispute",
            "amount": amount,
            "charge": "ch_test_1",
            "currency": "usd",
            "payment_intent": payment_intent,
            "status": status,
            "reason": "fraudulent",
            "metadata": {},
        },
    )


def charge_dispute_created(*, amount: int, payment_intent: str = "pi_test_1", status: str = "needs_response") -> dict:
    return charge_dispute("charge.dispute.created", amount=amount, status=status, payment_intent=payment_intent)


def charge_dispute_funds_withdrawn(*, amount: int, payment_intent: str = "pi_test_1") -> dict:
    return charge_dispute(
        "charge.dispute.funds_withdrawn", amount=amount, status="needs_response", payment_intent=payment_intent
    )


def charge_dispute_closed(*, amount: int, status: str, payment_intent: str = "pi_test_1") -> dict:
    """Closed with `status` won, lost, warning_closed (an inquiry) or prevented."""
    return charge_dispute("charge.dispute.closed", amount=amount, status=status, payment_intent=payment_intent)


def charge_dispute_funds_reinstated(*, amount: int, payment_intent: str = "pi_test_1", status: str = "won") -> dict:
    return charge_dispute(
        "charge.dispute.funds_reinstated", amount=amount, status=status, payment_intent=payment_intent
    )


# --- frames -----------------------------------------------------------------------------------


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def gradient(width: int = 40, height: int = 30) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // width, y * 255 // height, np.full_like(x, 128)], axis=-1).astype(np.uint8)


def store_png(key: str, array: np.ndarray) -> str:
    return blobs.blob_put(key=key, fileobj=io.BytesIO(png_bytes(array)))


def settled_frame(
    *,
    artist,
    provider,
    price: int = 10 * M,
    settled_at: datetime | None = None,
    job_state: str = JobState.RUNNING,
    result_key: str = "",
    fund_artist: bool = True,
) -> Frame:
    """A frame of `artist`'s job rendered by `provider`'s node and settled.

    The settlement is posted exactly as `jobs.services.frame_settle` is specified to post it (escrow ->
    provider pending minus the fee -> platform revenue, key settle:frame:<id>), through the ledger service.
    """
    scene = Scene.objects.create(
        owner=artist,
        name="scene",
        kind=Scene.Kind.BLEND,
        sha256=secrets.token_hex(32),
        size=1,
        blend_path="scene.blend",
        status=Scene.Status.READY,
    )
    job = Job.objects.create(
        owner=artist,
        scene=scene,
        name="Spinning cube",
        state=job_state,
        frame_start=1,
        frame_end=1,
        resolution_x=40,
        resolution_y=30,
        samples=8,
        price_per_frame=price,
    )
    node = WorkerNode.objects.create(
        owner=provider, name=f"gpu-{secrets.token_hex(3)}", token_prefix=secrets.token_hex(6), token_hash="unused"
    )
    if fund_artist:
        fund(artist, price)
    hold_escrow(artist=artist, job_ref=job.escrow_ref, amount=price, key=f"hold:job:{job.pk}")
    frame = Frame.objects.create(job=job, number=1, price=price, state=FrameState.QUEUED)
    release_escrow(
        artist=artist, job_ref=job.escrow_ref, provider=provider, amount=price, key=f"settle:frame:{frame.pk}"
    )
    Frame.objects.filter(pk=frame.pk).update(
        state=FrameState.SETTLED,
        node=node,
        result_key=result_key,
        settled_at=settled_at or timezone.now(),
        rendered_at=timezone.now(),
    )
    frame.refresh_from_db()
    return frame


def pending(user) -> int:
    return balance(Account.Kind.PROVIDER_PENDING, user)


def available(user) -> int:
    return balance(Account.Kind.PROVIDER_AVAILABLE, user)


def wallet(user) -> int:
    return balance(Account.Kind.ARTIST_WALLET, user)
