"""The tables every frame, lease, heartbeat and settlement writes carry no index that another one covers: each
write of a row adds an entry to every index of its table (unless no indexed column changed), so a redundant one is
paid for on the hot path and used by no read."""

import pytest
from django.db import connection

from tests.bench._writes import HOT_TABLES  # the tables whose writes the benches count

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def _indexes(table: str) -> list[tuple[str, list[str], bool, bool, str]]:
    """(name, columns, unique, partial, definition) of each index of `table`."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT c.relname, i.indkey::text, i.indisunique, i.indpred IS NOT NULL, pg_get_indexdef(i.indexrelid)"
            " FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = %s::regclass",
            [table],
        )
        return [(name, keys.split(), unique, partial, definition) for name, keys, unique, partial, definition in cur]


@pytest.mark.parametrize("table", HOT_TABLES)
def test_no_index_of_a_hot_table_is_covered_by_another(table):
    indexes = _indexes(table)
    covered = [
        f"{name} by {other}"
        for name, keys, unique, partial, _ in indexes
        if not unique and not partial
        for other, other_keys, _, other_partial, _ in indexes
        if other != name and not other_partial and other_keys[: len(keys)] == keys
    ]
    assert covered == []


@pytest.mark.parametrize("table", HOT_TABLES)
def test_no_hot_table_keeps_a_like_index(table):
    # Django adds one (varchar_pattern_ops) to every indexed or unique CharField; no read of these tables is a LIKE.
    assert [name for name, *_, definition in _indexes(table) if "pattern_ops" in definition] == []


@pytest.mark.parametrize(("table", "percent"), [("nodes_workernode", 70), ("dispatch_framelease", 90)])
def test_the_tables_heartbeats_rewrite_keep_room_in_their_pages(table, percent):
    # Without room on its page, an updated row's new version goes to another page, with an entry in every index.
    with connection.cursor() as cur:
        cur.execute("SELECT reloptions FROM pg_class WHERE relname = %s", [table])
        assert cur.fetchone()[0] == [f"fillfactor={percent}"]
