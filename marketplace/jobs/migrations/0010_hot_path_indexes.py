"""A frame's row is written three times or more on its way (leased, rendered, settled), each time an entry in every
index of the table: the indexes others cover go (the job's, led by `frame_unique_in_job`; the state's and its LIKE
twin, led by (state, job))."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('jobs', '0009_frame_pay_matured'),
    ]

    operations = [
        migrations.AlterField(
            model_name='frame',
            name='job',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='frames', to='jobs.job'),
        ),
        migrations.AlterField(
            model_name='frame',
            name='state',
            field=models.CharField(choices=[('queued', 'Queued'), ('leased', 'Rendering'), ('rendered', 'Rendered, awaiting verification'), ('verifying', 'Verifying'), ('settled', 'Done'), ('failed', 'Failed'), ('cancelled', 'Cancelled')], default='queued', max_length=16),
        ),
    ]
