from django.db import migrations
from django.db.models import OuterRef, Subquery


def trust_bans_to_nodes(apps, schema_editor):
    """A node banned by failed checks stays banned: its trust row's ban moves to the node's own flag (the one
    `nodes.selectors.node_banned_q` reads with the account's). Its provider's account was banned with it."""
    NodeTrust = apps.get_model("verification", "NodeTrust")
    WorkerNode = apps.get_model("nodes", "WorkerNode")
    banned = NodeTrust.objects.filter(node=OuterRef("pk"), banned_at__isnull=False).values("banned_at")[:1]
    WorkerNode.objects.filter(banned_at__isnull=True, trust__banned_at__isnull=False).update(
        banned_at=Subquery(banned)
    )


class Migration(migrations.Migration):
    dependencies = [
        ("nodes", "0004_node_state_facts"),
        ("verification", "0003_trustevent_abandoned"),
    ]

    operations = [
        migrations.RunPython(trust_bans_to_nodes, migrations.RunPython.noop),
        migrations.RemoveField(model_name="nodetrust", name="banned_at"),
    ]
