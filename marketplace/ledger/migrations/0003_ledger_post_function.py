"""`ledger_post`: a transfer's writes in one statement on Postgres (one round trip instead of five).

It inserts the transaction row (or finds the key taken: a replay), its postings, and applies each account's
net change in ascending account id order, so concurrent transfers lock shared accounts in one order. The
overdraft CHECK and the deferred zero-sum trigger (0002) still guard every write. SQLite keeps the same
steps in Python (`services._post_rows`).
"""
from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION ledger_post(p_key text, p_memo text, p_metadata jsonb, p_accounts bigint[],
                                       p_amounts bigint[], p_now timestamptz)
RETURNS TABLE (transaction_id bigint, created boolean) AS $$
DECLARE
    txn bigint;
    acc bigint;
    delta bigint;
BEGIN
    INSERT INTO ledger_ledgertransaction (idempotency_key, memo, metadata, created_at)
        VALUES (p_key, p_memo, p_metadata, p_now)
        ON CONFLICT (idempotency_key) DO NOTHING
        RETURNING id INTO txn;
    IF txn IS NULL THEN
        RETURN QUERY SELECT t.id, false FROM ledger_ledgertransaction t WHERE t.idempotency_key = p_key;
        RETURN;
    END IF;
    INSERT INTO ledger_posting (transaction_id, account_id, amount)
        SELECT txn, l.account, l.amount FROM unnest(p_accounts, p_amounts) AS l(account, amount);
    FOR acc, delta IN
        SELECT l.account, SUM(l.amount) FROM unnest(p_accounts, p_amounts) AS l(account, amount)
        GROUP BY l.account HAVING SUM(l.amount) <> 0 ORDER BY l.account
    LOOP
        UPDATE ledger_account SET balance = balance + delta WHERE id = acc;
    END LOOP;
    RETURN QUERY SELECT txn, true;
END $$ LANGUAGE plpgsql;
"""

DROP = "DROP FUNCTION IF EXISTS ledger_post(text, text, jsonb, bigint[], bigint[], timestamptz);"


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("ledger", "0002_postgres_rules")]
    operations = [migrations.RunPython(forwards, backwards)]
