from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from marketplace.accounts.tokens import secret_issue, secret_matches, secret_split
from marketplace.nodes.models import WorkerNode

DEVICE_PREFERENCE = ("OPTIX", "CUDA", "HIP", "ONEAPI", "CPU")


class NodeError(Exception):
    pass


@transaction.atomic
def node_create(*, owner, name: str) -> tuple[WorkerNode, str]:
    """A new node and its token plaintext (shown once; only the hash is kept)."""
    if not owner.is_provider and not owner.is_market_admin:
        raise NodeError("only GPU providers can register nodes")
    name = name.strip()[:100]
    if not name:
        raise NodeError("a node needs a name")
    issued = secret_issue("nd")
    node = WorkerNode.objects.create(owner=owner, name=name, token_prefix=issued.prefix,
                                     token_hash=issued.secret_hash)
    return node, issued.plaintext


def node_authenticate(*, plaintext: str) -> WorkerNode | None:
    parts = secret_split(plaintext)
    if parts is None:
        return None
    node = WorkerNode.objects.select_related("owner").filter(token_prefix=parts[0]).first()
    if node is None or not secret_matches(parts[1], node.token_hash) or not node.owner.is_active:
        return None
    return node


@dataclass(frozen=True)
class Capabilities:
    devices: list[dict]
    cpu_cores: int
    ram_mb: int
    blender_version: str
    sandbox: str = WorkerNode.Sandbox.UNKNOWN
    sandbox_detail: str = ""


def _best_device(devices: list[dict]) -> tuple[str, int]:
    types = {str(d.get("type", "")).upper(): d for d in devices if d.get("use", True)}
    for kind in DEVICE_PREFERENCE:
        if kind in types:
            vram = max((int(d.get("vram_mb") or 0) for d in devices if str(d.get("type")).upper() == kind),
                       default=0)
            return kind, vram
    return "CPU", 0


@transaction.atomic
def node_hello(*, node: WorkerNode, capabilities: Capabilities) -> WorkerNode:
    """Record what the agent reports it has; the node becomes idle unless paused by its owner."""
    device, vram = _best_device(capabilities.devices)
    fields = {
        "devices": capabilities.devices[:32], "cpu_cores": max(0, capabilities.cpu_cores),
        "ram_mb": max(0, capabilities.ram_mb), "blender_version": capabilities.blender_version[:20],
        "device_type": device, "vram_mb": vram, "last_heartbeat": timezone.now(),
        "sandbox": capabilities.sandbox, "sandbox_detail": capabilities.sandbox_detail[:200],
    }
    WorkerNode.objects.filter(pk=node.pk).update(**fields)
    WorkerNode.objects.filter(pk=node.pk, status=WorkerNode.Status.OFFLINE).update(status=WorkerNode.Status.IDLE)
    node.refresh_from_db()
    return node


def node_bench_record(*, node: WorkerNode, results: dict[str, float]) -> WorkerNode:
    clean = {str(k)[:20]: float(v) for k, v in results.items() if isinstance(v, int | float) and v >= 0}
    if not clean:
        raise NodeError("benchmark results must map device names to samples per second")
    WorkerNode.objects.filter(pk=node.pk).update(bench=clean, bench_score=max(clean.values()))
    node.refresh_from_db()
    return node


def node_set_paused(*, owner, node_id: int, paused: bool) -> bool:
    qs = WorkerNode.objects.filter(pk=node_id, owner=owner)
    if paused:
        return bool(qs.update(status=WorkerNode.Status.PAUSED))
    return bool(qs.filter(status=WorkerNode.Status.PAUSED).update(status=WorkerNode.Status.IDLE))
