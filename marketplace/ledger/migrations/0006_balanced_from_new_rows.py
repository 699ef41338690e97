"""The zero-sum rule checked on the statement's new postings alone, without reading the table back.

0005 summed, for every ledger transaction an INSERT statement added postings to, all of that transaction's
postings in the table: one index probe per transaction, a hundred per settlement batch, in a plan the trigger
function caches per connection (bench_dispatch caught one made while the table was nearly empty: a scan of the
whole table per transaction). Postings are append-only (0002) and every statement has been held to the rule,
so a transaction's postings sum to zero after a statement exactly when the statement's new postings of it do;
and as no posting is zero (CHECK `ledger_posting_nonzero`), those are then at least two. The rule is the same;
the check reads only the statement's transition table.
"""

from importlib import import_module

from django.db import migrations

FROM_NEW_ROWS = """
CREATE OR REPLACE FUNCTION ledger_check_balanced_statement() RETURNS trigger AS $$
DECLARE bad record;
BEGIN
    SELECT transaction_id, SUM(amount) AS total INTO bad
      FROM new_postings GROUP BY transaction_id HAVING SUM(amount) <> 0
     ORDER BY transaction_id LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger transaction % is unbalanced: postings sum to %', bad.transaction_id, bad.total
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql;
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FROM_NEW_ROWS, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            import_module("marketplace.ledger.migrations.0005_balanced_per_statement").PER_STATEMENT, params=None
        )


class Migration(migrations.Migration):
    dependencies = [("ledger", "0005_balanced_per_statement")]
    operations = [migrations.RunPython(forwards, backwards)]
