from django.db import migrations

# Frames whose pay matured before `Frame.pay_matured_at` existed: the maturations say when.
BACKFILL = """
UPDATE jobs_frame SET pay_matured_at = (
    SELECT m.matured_at FROM payments_earningmaturation m WHERE m.frame_id = jobs_frame.id
) WHERE id IN (SELECT frame_id FROM payments_earningmaturation)
"""


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0009_frame_pay_matured"),
        ("payments", "0002_topup_refunds_and_dispute_apart"),
    ]

    operations = [migrations.RunSQL(BACKFILL, migrations.RunSQL.noop)]
