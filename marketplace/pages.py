"""Room in a table's pages for its rows' next versions, for migrations of tables whose rows are rewritten often.

Postgres writes an updated row's new version in the same page, with no new index entry, when no indexed column
changed and the page has room (a HOT update). A table filled to the brim by inserts has none; its fill factor keeps
part of every page free. It applies to pages written from then on: a table that existed before gets it at its next
rewrite (VACUUM FULL, pg_repack). SQLite has no fill factor.
"""

from django.db import migrations


def fill_factor(table: str, percent: int) -> migrations.RunPython:
    """A migration operation filling `table`'s new pages to `percent` (and back to Postgres' default, 100)."""

    def forwards(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(f"ALTER TABLE {schema_editor.quote_name(table)} SET (fillfactor = {int(percent)})")

    def backwards(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(f"ALTER TABLE {schema_editor.quote_name(table)} RESET (fillfactor)")

    return migrations.RunPython(forwards, backwards)
