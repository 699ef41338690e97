"""What the cluster test asks the market itself, run as `python -m tests.cluster.market <command> …` in the
cluster's environment (production settings: its Postgres, its S3, its brokers). Each command prints one line
`RESULT=<json>`; a wait that runs out exits non-zero with the frames' states.

  seed DIR FRAMES NODES   an artist with tokens, NODES providers with one node each, the demo job (FRAMES frames)
  wait-settled JOB N S    at least N of the job's frames settled, within S seconds
  report JOB              frames, settlements per frame, ledger total and drift, leases per state
"""

import json
import secrets
import sys
import time
from pathlib import Path

import django

django.setup()

from django.db.models import Q  # noqa: E402

from marketplace.accounts.models import User  # noqa: E402
from marketplace.accounts.services import user_create  # noqa: E402
from marketplace.dispatch.models import FrameLease  # noqa: E402
from marketplace.jobs.models import Frame  # noqa: E402
from marketplace.jobs.selectors import leased_count_drift  # noqa: E402
from marketplace.jobs.states import FrameState  # noqa: E402
from marketplace.ledger import selectors  # noqa: E402
from marketplace.ledger.models import LedgerTransaction  # noqa: E402
from marketplace.nodes.services import node_create  # noqa: E402
from tests.fixtures.farm import demo_job  # noqa: E402
from tests.fixtures.money import fund  # noqa: E402


def seed(directory: str, frames: str, nodes: str) -> dict:
    from workers.blend import make_demo_scene

    # Big enough that a frame takes a second or two here: the test kills an agent while it holds one.
    size = {"width": 96, "height": 54, "samples": 32}
    blend = Path(directory) / "demo.blend"
    make_demo_scene(blend, frames=int(frames), resolution=(size["width"], size["height"]), samples=size["samples"])
    password = secrets.token_urlsafe(16)
    artist = user_create(username="cluster-artist", password=password, role=User.Role.ARTIST)
    fund(artist, 100_000_000)
    job = demo_job(artist, blend, frames=int(frames), **size)
    made = []
    for n in range(1, int(nodes) + 1):  # one provider each, so crops are verified across providers
        provider = user_create(username=f"cluster-provider-{n}", password=password, role=User.Role.PROVIDER)
        # No hello yet: the node is offered frames only once its real agent says hello.
        node, token = node_create(owner=provider, name=f"host-{n}")
        made.append({"id": node.pk, "token": token})
    return {"job": job.pk, "nodes": made}


def wait_settled(job: str, count: str, seconds: str) -> dict:
    settled = Frame.objects.filter(job_id=int(job), state=FrameState.SETTLED)
    deadline = time.monotonic() + float(seconds)
    while settled.count() < int(count):
        if time.monotonic() > deadline:
            frames = Frame.objects.filter(job_id=int(job)).order_by("number")
            sys.exit(f"timed out waiting for {count} settled frames: {list(frames.values_list('number', 'state'))}")
        time.sleep(0.5)
    return {"settled": settled.count()}


def report(job: str) -> dict:
    frames = Frame.objects.filter(job_id=int(job)).order_by("number")
    settlements = {}
    for frame in frames:
        key = f"settle:frame:{frame.pk}"  # later settlements of a frame would be settle:frame:<id>:<n>
        found = LedgerTransaction.objects.filter(Q(idempotency_key=key) | Q(idempotency_key__startswith=f"{key}:"))
        settlements[frame.number] = found.count()
    return {
        "frames": {f.number: f.state for f in frames},
        "settle_count": {f.number: f.settle_count for f in frames},
        "settlements": settlements,
        "ledger_total": selectors.ledger_total(),
        "ledger_drift": [str(d) for d in selectors.ledger_drift()],
        "leased_count_drift": {str(k): v for k, v in leased_count_drift().items()},
        "leases_by_id": {
            pk: {"state": state, "node": node, "kind": kind, "frame": frame}
            for pk, state, node, kind, frame in FrameLease.objects.filter(frame__job_id=int(job)).values_list(
                "id", "state", "node_id", "kind", "frame_id"
            )
        },
        "frame_nodes": dict(frames.values_list("id", "node_id")),
    }


COMMANDS = {"seed": seed, "wait-settled": wait_settled, "report": report}

if __name__ == "__main__":
    result = COMMANDS[sys.argv[1]](*sys.argv[2:])
    print("RESULT=" + json.dumps(result, default=str), flush=True)
