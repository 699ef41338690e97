"""Every settlement inserts a posting per leg: the account's own index goes, (account, transaction) leads with it.
The account's key stays unique through a constraint, without the LIKE index `unique=True` adds."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('ledger', '0006_balanced_from_new_rows'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterField(
            model_name='account',
            name='key',
            field=models.CharField(max_length=128),
        ),
        migrations.AlterField(
            model_name='posting',
            name='account',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='postings', to='ledger.account'),
        ),
        migrations.AddConstraint(
            model_name='account',
            constraint=models.UniqueConstraint(fields=('key',), name='ledger_account_key_unique'),
        ),
    ]
