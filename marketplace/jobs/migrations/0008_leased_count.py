"""`LeasedCount`: each artist's leased frames, kept on Postgres by statement triggers on the frame table.

Each INSERT, UPDATE or DELETE of frames adds, per artist, the frames it made leased less those it made no longer
leased (from the statement's transition tables: one upsert per statement, however many frames it wrote, in
artist order so two statements lock rows in one order) to the row of the connection's slot
(`pg_backend_pid() % 16`). The count starts from the frames leased when the migration runs, with the frame table
locked against writes meanwhile. SQLite keeps no count (the matcher counts there).
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

SLOTS = 16  # rows per artist: concurrent connections rarely share one

# What a statement changes, per job, then per artist: the artist of each job through its primary key, so the
# plan is an index lookup per job however many rows the statement that planned it first wrote (a join's plan
# cached from a bulk write would read every job on each later one-frame write).
UPSERT = f"""
        INSERT INTO jobs_leasedcount (owner_id, slot, frames)
            SELECT o.owner_id, pg_backend_pid() % {SLOTS}, SUM(o.n)
              FROM (SELECT (SELECT j.owner_id FROM jobs_job j WHERE j.id = d.job_id) AS owner_id, SUM(d.n) AS n
                      FROM ({{changes}}) d GROUP BY d.job_id) o
             GROUP BY o.owner_id HAVING SUM(o.n) <> 0 ORDER BY o.owner_id
            ON CONFLICT (owner_id, slot) DO UPDATE SET frames = jobs_leasedcount.frames + EXCLUDED.frames;"""
LEASED = "SELECT job_id, 1 AS n FROM new_frames WHERE state = 'leased'"
NO_LONGER = "SELECT job_id, -1 AS n FROM old_frames WHERE state = 'leased'"

# One function for the three triggers: each sees only the transition tables its event has. A frame's job never
# changes, so a frame leased before and after an UPDATE adds 1 and takes 1 from one artist.
CREATE = f"""
CREATE OR REPLACE FUNCTION jobs_frame_leased_count() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN{UPSERT.format(changes=LEASED)}
    ELSIF TG_OP = 'DELETE' THEN{UPSERT.format(changes=NO_LONGER)}
    ELSE{UPSERT.format(changes=f"{LEASED} UNION ALL {NO_LONGER}")}
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql;

-- Rewritten all the time: room on each page for the new version of a row (a HOT update, no index write).
ALTER TABLE jobs_leasedcount SET (fillfactor = 50);

LOCK TABLE jobs_frame IN SHARE ROW EXCLUSIVE MODE;

CREATE TRIGGER jobs_frame_leased_count_insert AFTER INSERT ON jobs_frame
    REFERENCING NEW TABLE AS new_frames FOR EACH STATEMENT EXECUTE FUNCTION jobs_frame_leased_count();
CREATE TRIGGER jobs_frame_leased_count_update AFTER UPDATE ON jobs_frame
    REFERENCING OLD TABLE AS old_frames NEW TABLE AS new_frames
    FOR EACH STATEMENT EXECUTE FUNCTION jobs_frame_leased_count();
CREATE TRIGGER jobs_frame_leased_count_delete AFTER DELETE ON jobs_frame
    REFERENCING OLD TABLE AS old_frames FOR EACH STATEMENT EXECUTE FUNCTION jobs_frame_leased_count();

INSERT INTO jobs_leasedcount (owner_id, slot, frames)
    SELECT j.owner_id, 0, COUNT(*) FROM jobs_frame f JOIN jobs_job j ON j.id = f.job_id
     WHERE f.state = 'leased' GROUP BY j.owner_id;
"""

DROP = """
DROP TRIGGER IF EXISTS jobs_frame_leased_count_insert ON jobs_frame;
DROP TRIGGER IF EXISTS jobs_frame_leased_count_update ON jobs_frame;
DROP TRIGGER IF EXISTS jobs_frame_leased_count_delete ON jobs_frame;
DROP FUNCTION IF EXISTS jobs_frame_leased_count();
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):

    dependencies = [
        ('jobs', '0007_frame_queued_by_job_number'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='LeasedCount',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('slot', models.SmallIntegerField()),
                ('frames', models.IntegerField(default=0)),
                ('owner', models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'constraints': [models.UniqueConstraint(fields=('owner', 'slot'), name='leased_count_one_row_per_slot')],
            },
        ),
        migrations.RunPython(forwards, backwards),
    ]
