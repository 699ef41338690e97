"""A node's row is written at every heartbeat flush and twice a frame (leased, then idle or busy again): only the
indexes a lookup needs, and room in each page (`marketplace.pages`) so that Postgres can write a heartbeat's new
version beside the old one without an entry in any index (a HOT update: last_heartbeat is no longer indexed)."""

from django.conf import settings
from django.db import migrations, models

from marketplace.pages import fill_factor


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
        fill_factor("nodes_workernode", 70),  # 30 % of each page left for the rows' next versions
    ]
