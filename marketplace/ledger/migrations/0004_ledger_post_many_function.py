"""`ledger_post_many`: many transfers' writes in one statement on Postgres (settling a batch of frames).

The same steps as `ledger_post` (0003), set-oriented: insert every transaction row whose key is free (in key
order, so two batches with shared keys wait on each other in one order), the postings of those inserted, and
each account's net change over the whole batch, in ascending account id order (one UPDATE per account, not
per transfer; the same lock order as `ledger_post`). Keys already taken are replays: nothing is written for
them and the caller compares their postings. The overdraft CHECK and the deferred zero-sum trigger (0002)
still guard every write.
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION ledger_post_many(p_keys text[], p_memos text[], p_metadata jsonb[], p_leg_of int[],
                                            p_accounts bigint[], p_amounts bigint[], p_now timestamptz)
RETURNS TABLE (transaction_id bigint, created boolean) AS $$
#variable_conflict use_column
DECLARE
    new_ids bigint[];
    new_ords int[];
    acc bigint;
    delta bigint;
BEGIN
    WITH inserted AS (
        INSERT INTO ledger_ledgertransaction (idempotency_key, memo, metadata, created_at)
            SELECT t.k, t.m, t.md, p_now FROM unnest(p_keys, p_memos, p_metadata) AS t(k, m, md) ORDER BY t.k
            ON CONFLICT (idempotency_key) DO NOTHING
            RETURNING id, idempotency_key
    )
    SELECT array_agg(i.id), array_agg(t.ord::int) INTO new_ids, new_ords
      FROM inserted i JOIN unnest(p_keys) WITH ORDINALITY AS t(k, ord) ON t.k = i.idempotency_key;
    IF new_ids IS NOT NULL THEN
        INSERT INTO ledger_posting (transaction_id, account_id, amount)
            SELECT n.id, l.account, l.amount
              FROM unnest(new_ids, new_ords) AS n(id, ord)
              JOIN unnest(p_leg_of, p_accounts, p_amounts) AS l(ord, account, amount) ON l.ord = n.ord;
        FOR acc, delta IN
            SELECT l.account, SUM(l.amount)
              FROM unnest(new_ords) AS n(ord)
              JOIN unnest(p_leg_of, p_accounts, p_amounts) AS l(ord, account, amount) ON l.ord = n.ord
             GROUP BY l.account HAVING SUM(l.amount) <> 0 ORDER BY l.account
        LOOP
            UPDATE ledger_account SET balance = balance + delta WHERE id = acc;
        END LOOP;
    END IF;
    RETURN QUERY
        SELECT COALESCE(n.id, old.id), n.id IS NOT NULL
          FROM unnest(p_keys) WITH ORDINALITY AS t(k, ord)
          LEFT JOIN unnest(new_ids, new_ords) AS n(id, ord) ON n.ord = t.ord
          LEFT JOIN ledger_ledgertransaction old ON n.id IS NULL AND old.idempotency_key = t.k
         ORDER BY t.ord;
END $$ LANGUAGE plpgsql;
"""

DROP = "DROP FUNCTION IF EXISTS ledger_post_many(text[], text[], jsonb[], int[], bigint[], bigint[], timestamptz);"


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("ledger", "0003_ledger_post_function")]
    operations = [migrations.RunPython(forwards, backwards)]
