"""An active lease's row is written at every heartbeat flush that names it (its expiry moved on): no index on the
expiry, and room in each page, so that Postgres writes the new version beside the old one without an entry in any
index (a HOT update). Postgres only: SQLite has no fill factor. A fill factor applies to the pages written from now
on; an existing table's pages get it at their next rewrite (VACUUM FULL, pg_repack)."""

from django.db import migrations, models

FILLFACTOR = 90  # of each page filled by inserts: the rest is room for its active leases' next versions


def room_for_updates(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE dispatch_framelease SET (fillfactor = {FILLFACTOR})")


def no_room_for_updates(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE dispatch_framelease RESET (fillfactor)")


class Migration(migrations.Migration):
    dependencies = [
        ("dispatch", "0007_lease_uploads"),
    ]

    operations = [
        migrations.AlterField(
            model_name="framelease",
            name="expires_at",
            field=models.DateTimeField(),
        ),
        migrations.RunPython(room_for_updates, no_room_for_updates),
    ]
