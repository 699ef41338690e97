"""What the hot tables' writes cost Postgres, for the benches: rows inserted and updated per table, the share of
updates that were HOT, the indexes each write had to add an entry to, and the WAL written meanwhile.

A HOT update changed no indexed column and found room on its page: it adds no index entry. Any other update, and
every insert, adds an entry to each index whose condition the row meets, and WAL for each."""

# The tables every frame, lease and heartbeat writes.
HOT_TABLES = ("jobs_frame", "dispatch_framelease", "nodes_workernode", "ledger_posting", "ledger_account")


def table_writes() -> dict:
    """Per hot table (indexes, rows inserted, rows updated, HOT updates), as pg_stat_user_tables counts them, and the
    WAL position (`wal`, bytes). Other backends' counts arrive when they commit or end; this one's are sent first."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT pg_stat_force_next_flush()")
        cur.execute(
            "SELECT t.relname, (SELECT COUNT(*) FROM pg_index i WHERE i.indrelid = t.relid), t.n_tup_ins, t.n_tup_upd,"
            " t.n_tup_hot_upd FROM pg_stat_user_tables t WHERE t.relname = ANY(%s)",
            [list(HOT_TABLES)],
        )
        counts = {name: tuple(rest) for name, *rest in cur.fetchall()}
        cur.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint")
        return {"tables": counts, "wal": cur.fetchone()[0]}


def table_writes_per(before: dict, after: dict, per: int) -> dict:
    """`table_writes` between two reads, per unit of work (`per` of them: frames settled, beats flushed)."""
    tables = {}
    for name in HOT_TABLES:
        ins, upd, hot = (a - b for a, b in zip(after["tables"][name][1:], before["tables"][name][1:], strict=True))
        tables[name] = {
            "indexes": after["tables"][name][0],
            "inserts": round(ins / per, 2),
            "updates": round(upd / per, 2),
            "hot_share": round(hot / upd, 3) if upd else None,
        }
    return {"wal_bytes": round((after["wal"] - before["wal"]) / per), "tables": tables}


def table_writes_print(writes: dict, unit: str) -> None:
    print(f"  WAL {writes['wal_bytes']} bytes per {unit}")
    for name, stat in writes["tables"].items():
        print(
            f"  writes {name:<22} {stat['indexes']} indexes; per {unit} {stat['inserts']} inserts,"
            f" {stat['updates']} updates, HOT {stat['hot_share']}"
        )
