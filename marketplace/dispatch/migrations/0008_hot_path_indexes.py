"""An active lease's row is written at every heartbeat flush that names it (its expiry moved on): no index on the
expiry, and room in each page (`marketplace.pages`), so that Postgres writes the new version beside the old one
without an entry in any index (a HOT update)."""

from django.db import migrations, models

from marketplace.pages import fill_factor


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
        fill_factor("dispatch_framelease", 90),  # 10 % of each page left for its active leases' next versions
    ]
