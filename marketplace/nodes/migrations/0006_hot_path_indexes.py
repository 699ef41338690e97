"""A node's row is written at every heartbeat flush and twice a frame (leased, then idle or busy again): only the
indexes a lookup needs, and room in each page so that Postgres can write a heartbeat's new version beside the old
one without an entry in any index (a HOT update: last_heartbeat is no longer indexed). Postgres only: SQLite has no
fill factor. A fill factor applies to the pages written from now on; an existing table's pages get it at their
next rewrite (VACUUM FULL, pg_repack)."""

from django.conf import settings
from django.db import migrations, models

FILLFACTOR = 70  # of each page filled by inserts: the rest is room for the rows' next versions


def room_for_updates(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE nodes_workernode SET (fillfactor = {FILLFACTOR})")


def no_room_for_updates(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE nodes_workernode RESET (fillfactor)")


class Migration(migrations.Migration):

    dependencies = [
        ('jobs', '0010_hot_path_indexes'),
        ('nodes', '0005_heartbeat_pace'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterField(
            model_name='workernode',
            name='last_heartbeat',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name='workernode',
            name='status',
            field=models.CharField(choices=[('idle', 'Idle'), ('busy', 'Busy'), ('paused', 'Paused'), ('offline', 'Offline'), ('banned', 'Banned')], default='offline', max_length=10),
        ),
        migrations.AlterField(
            model_name='workernode',
            name='token_prefix',
            field=models.CharField(max_length=12),
        ),
        migrations.AddIndex(
            model_name='workernode',
            index=models.Index(fields=['status', 'id'], name='node_status_id'),
        ),
        migrations.AddConstraint(
            model_name='workernode',
            constraint=models.UniqueConstraint(fields=('token_prefix',), name='node_token_prefix_unique'),
        ),
        migrations.RunPython(room_for_updates, no_room_for_updates),
    ]
