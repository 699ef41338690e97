"""The zero-sum rule checked once per INSERT statement instead of once per posting at COMMIT (issue 17).

0002's deferred constraint trigger ran its sum once per posting row, so a settled frame (three postings) paid
three sums and three trigger calls, and a batch of a hundred settlements three hundred: about a tenth of the
Postgres time of a frame (bench_dispatch). This trigger runs once per statement and checks, in one query,
every ledger transaction the statement added postings to. Every writer inserts a transaction's postings in one
statement (`ledger_post`, `ledger_post_many`, SQLite's `_post_rows`), and postings are append-only, so the
rule now holds after every statement, not only at COMMIT: stricter than before, never looser.
"""

from importlib import import_module

from django.db import migrations

PER_STATEMENT = """
DROP TRIGGER IF EXISTS ledger_posting_balanced ON ledger_posting;
DROP FUNCTION IF EXISTS ledger_check_balanced();

CREATE OR REPLACE FUNCTION ledger_check_balanced_statement() RETURNS trigger AS $$
DECLARE bad record;
BEGIN
    SELECT t.transaction_id, s.total, s.n INTO bad
      FROM (SELECT DISTINCT transaction_id FROM new_postings) t
      CROSS JOIN LATERAL (SELECT COALESCE(SUM(p.amount), 0) AS total, COUNT(*) AS n
                            FROM ledger_posting p WHERE p.transaction_id = t.transaction_id) s
     WHERE s.total <> 0 OR s.n < 2
     ORDER BY t.transaction_id LIMIT 1;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF bad.total <> 0 THEN
        RAISE EXCEPTION 'ledger transaction % is unbalanced: postings sum to %', bad.transaction_id, bad.total
            USING ERRCODE = 'check_violation';
    END IF;
    RAISE EXCEPTION 'ledger transaction % has fewer than two postings', bad.transaction_id
        USING ERRCODE = 'check_violation';
END $$ LANGUAGE plpgsql;

CREATE TRIGGER ledger_posting_balanced
    AFTER INSERT ON ledger_posting
    REFERENCING NEW TABLE AS new_postings
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_check_balanced_statement();
"""

# Back to 0002's rule: one deferred check per posting.
PER_ROW = (
    """
DROP TRIGGER IF EXISTS ledger_posting_balanced ON ledger_posting;
DROP FUNCTION IF EXISTS ledger_check_balanced_statement();
"""
    + import_module("marketplace.ledger.migrations.0002_postgres_rules").ZERO_SUM_PER_ROW
)


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(PER_STATEMENT, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(PER_ROW, params=None)


class Migration(migrations.Migration):
    dependencies = [("ledger", "0004_ledger_post_many_function")]
    operations = [migrations.RunPython(forwards, backwards)]
