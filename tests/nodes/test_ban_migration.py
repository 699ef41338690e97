"""Issue 14: the migration to one ban flag keeps every node that failed checks banned."""

from datetime import timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from marketplace.accounts.models import User
from marketplace.accounts.services import user_create

BEFORE = [("verification", "0003_trustevent_abandoned"), ("nodes", "0004_node_state_facts")]
AFTER = [("verification", "0004_ban_on_node_or_account")]


@pytest.fixture
def executor(transactional_db):
    yield MigrationExecutor(connection)
    latest = MigrationExecutor(connection)
    latest.migrate(latest.loader.graph.leaf_nodes())  # the rest of the suite runs on the latest schema


def test_a_node_banned_by_failed_checks_stays_banned_after_the_move(executor):
    owner = user_create(username="provider", password="x" * 12, role=User.Role.PROVIDER)
    executor.migrate(BEFORE)
    apps = executor.loader.project_state(BEFORE).apps
    WorkerNode = apps.get_model("nodes", "WorkerNode")
    NodeTrust = apps.get_model("verification", "NodeTrust")
    banned_at = timezone.now().replace(microsecond=0)
    nodes = {
        name: WorkerNode.objects.create(owner_id=owner.pk, name=name, token_prefix=name[:12], token_hash="x")
        for name in ("cheat", "honest", "admin banned", "no trust")
    }
    NodeTrust.objects.create(node=nodes["cheat"], checks_failed=3, banned_at=banned_at)
    NodeTrust.objects.create(node=nodes["honest"], checks_passed=3)
    earlier = banned_at - timedelta(days=1)
    WorkerNode.objects.filter(pk=nodes["admin banned"].pk).update(banned_at=earlier)
    NodeTrust.objects.create(node=nodes["admin banned"], checks_failed=3, banned_at=banned_at)

    executor = MigrationExecutor(connection)
    executor.migrate(AFTER)
    WorkerNode = executor.loader.project_state(AFTER).apps.get_model("nodes", "WorkerNode")
    after = dict(WorkerNode.objects.values_list("name", "banned_at"))
    assert after == {"cheat": banned_at, "honest": None, "admin banned": earlier, "no trust": None}
