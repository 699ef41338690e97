"""`marketplace.compiled`: statements compiled once with marks, and rows loaded as the ORM loads them (the
dispatch hot path's building blocks, issue 17)."""

import pytest
from django.db import connection
from django.forms.models import model_to_dict

from marketplace.compiled import Compiled, _compiled_in, id_marks, instance, read_in, text_marks
from marketplace.dispatch import batch
from marketplace.dispatch.models import FrameLease
from marketplace.jobs.models import Frame
from marketplace.ledger.models import Account
from tests.fixtures.market import make_node, make_queued_job

pytestmark = pytest.mark.django_db


def test_a_mark_missing_from_the_statement_is_refused_and_every_occurrence_is_swapped():
    a, b = id_marks(2)
    with pytest.raises(AssertionError):
        Compiled.of("SELECT %s", [a], [a, b], alias=connection.alias)
    statement = Compiled.of("SELECT %s, %s, %s, %s", [a, "x", a, b], [a, b], alias=connection.alias)
    if connection.vendor == "postgresql":  # the constant is in the text (`Compiled.of`), the marks stay parameters
        assert statement.sql == "SELECT %s, 'x', %s, %s" and statement.params_with([7, 8]) == [7, 7, 8]
    else:
        assert statement.params_with([7, 8]) == [7, "x", 7, 8]
    with pytest.raises(ValueError):
        statement.params_with([7])  # one value per mark


def test_constants_written_into_the_text_keep_their_values_quotes_and_percent_signs_included():
    (a,) = id_marks(1)
    constants = ["it's 50% off", True, 3, None]
    statement = Compiled.of("SELECT %s, %s, %s, %s, %s, '%%'", [a, *constants], [a], alias=connection.alias)
    with connection.cursor() as cur:
        cur.execute(statement.sql, statement.params_with([7]))
        assert list(cur.fetchone()) == [7, *constants, "%"]


def test_a_row_read_by_hand_loads_as_the_orm_loads_it(funded_artist, provider, agent_queues):
    """JSON decoded, dates parsed (text on SQLite), and with `only` the other fields deferred, not wrong."""
    make_queued_job(funded_artist, frames=1)
    node, _ = make_node(provider, unchecked=True)
    (delivery,) = batch.leases_create(node=node)
    columns = ", ".join(f.column for f in FrameLease._meta.concrete_fields)
    with connection.cursor() as cur:
        cur.execute(f"SELECT {columns} FROM {FrameLease._meta.db_table} WHERE id = %s", [delivery.lease_id])
        row = cur.fetchone()
    by_hand, orm = instance(FrameLease, row, using=connection.alias), FrameLease.objects.get(pk=delivery.lease_id)
    assert model_to_dict(by_hand) == model_to_dict(orm)
    assert by_hand.manifest["frame"] == orm.frame.number and by_hand.created_at == orm.created_at
    frame = Frame.objects.get(pk=orm.frame_id)
    partial = instance(Frame, (frame.pk, frame.job_id), using=connection.alias, only=("id", "job_id"))
    assert partial.get_deferred_fields() >= {"state", "number"}
    assert partial.number == frame.number  # a deferred field loads on first access


def _accounts_of(keys: list[str]):
    return Account.objects.filter(key__in=keys).order_by("key")


def _frames_of(ids: list[int]):
    return Frame.objects.filter(pk__in=ids, state="queued").select_related("job").order_by("-pk")


def test_a_list_read_returns_what_its_queryset_does_for_each_count_of_values(funded_artist):
    """One statement compiled per count of values: the values of each call are its own (keys with quotes, percent
    signs and colons included), never a previous call's of the same count."""
    keys = ["kind:1:it's", "kind:2:50%", "kind:3:a:b"]
    for key in keys:
        Account.objects.create(key=key, kind="artist_wallet", ref="")
    _compiled_in.cache_clear()
    for chosen in ([keys[0]], [keys[1]], keys[1:], keys, ["kind:9:none", keys[2]]):
        assert [a.key for a in read_in(_accounts_of, chosen, marks=text_marks)] == sorted(set(chosen) & set(keys))
    assert _compiled_in.cache_info().currsize == 3  # counts 1, 2 and 3
    job = make_queued_job(funded_artist, frames=3)
    ids = sorted(job.frames.values_list("pk", flat=True))
    by_hand, orm = read_in(_frames_of, ids[:2]), list(_frames_of(ids[:2]))
    assert [model_to_dict(f) for f in by_hand] == [model_to_dict(f) for f in orm]
    assert [f.job.escrow_ref for f in by_hand] == [job.escrow_ref] * 2  # its select_related loaded too
    assert read_in(_frames_of, []) == []


def test_postgres_parses_and_plans_a_statement_the_hot_path_repeats_once_per_connection():
    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are Postgres's (SQLite's module caches its own)")
    from marketplace.dispatch.services import LeaseRefused, _lease_of_node
    from marketplace.nodes.models import WorkerNode

    def prepared() -> list[str]:
        with connection.cursor() as cur:
            cur.execute("SELECT statement FROM pg_prepared_statements WHERE statement LIKE %s", ["%JOIN jobs_frame f%"])
            return [row[0] for row in cur.fetchall()]

    assert prepared() == []
    for _ in range(6):  # psycopg prepares a statement on its 6th run on a connection (prepare_threshold 5)
        with pytest.raises(LeaseRefused):
            _lease_of_node(node=WorkerNode(pk=10**9), lease_id=10**9, token="")
    statements = prepared()
    assert len(statements) == 1 and "FROM dispatch_framelease l JOIN" in statements[0]
