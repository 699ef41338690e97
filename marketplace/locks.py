"""A mutex named by a string for the length of a transaction, for work that no row lock covers."""

from __future__ import annotations

from django.db import connection


def advisory_xact_lock(name: str) -> None:
    """Wait for Postgres' advisory lock on `name` and hold it until the current transaction ends (call it inside
    one). SQLite, one writer at a time, needs none."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [name])
