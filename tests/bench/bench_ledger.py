"""Ledger throughput on Postgres: concurrent transfers per second with N worker processes, and drift.

Each worker process has its own connection and moves money between random wallets of a shared pool
(so workers contend on rows, as settlements of one job would). After each run the ledger must sum to
zero and every cached balance must equal the sum of its postings.

Three ways to post, on the same input: `ledger_post` (migration 0003's function, one statement, what
`transfer` does on Postgres), the same inside a caller's transaction (a savepoint, as a settlement inside
`frame_settle` does), and the baseline: one statement per row from Python (`_post_rows`, what SQLite uses
and what Postgres used before 0003).
Run with `make bench BENCH=ledger` (starts Postgres); prints a table, writes bench/results/ledger.json.
"""

import json
import multiprocessing as mp
import os
import platform
import random
import sys
import time
from pathlib import Path

import django

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
WALLETS = 200
SECONDS = float(os.environ.get("BENCH_SECONDS", "6"))


def setup() -> list[int]:
    from django.core.management import call_command

    from marketplace.accounts.models import User
    from marketplace.ledger.models import Account
    from marketplace.ledger.services import Leg, account_get, transfer

    call_command("migrate", verbosity=0)
    clearing = account_get(kind=Account.Kind.PAYMENT_CLEARING)
    ids = []
    for i in range(WALLETS):
        user, _ = User.objects.get_or_create(username=f"bench{i}")
        wallet = account_get(kind=Account.Kind.ARTIST_WALLET, owner=user)
        transfer(key=f"bench:fund:{i}", memo="bench funding", legs=[Leg(clearing, -(10**12)), Leg(wallet, 10**12)])
        ids.append(wallet.pk)
    return ids


MODES = ("function", "function in caller's transaction", "row statements (baseline)")


def worker(ids: list[int], seconds: float, run: str, n: int, mode: str, out: mp.Queue) -> None:
    django.setup()
    from contextlib import nullcontext

    from django.db import transaction

    from marketplace.ledger import services
    from marketplace.ledger.models import Account
    from marketplace.ledger.services import Leg, transfer

    if mode == MODES[2]:
        services._post_in_database = services._post_rows
    outer = transaction.atomic if mode == MODES[1] else nullcontext

    accounts = {a.pk: a for a in Account.objects.filter(pk__in=ids)}
    rng = random.Random(n)
    done = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        a, b = rng.sample(ids, 2)
        with outer():
            transfer(
                key=f"bench:{run}:{n}:{done}", memo="bench", legs=[Leg(accounts[a], -1000), Leg(accounts[b], 1000)]
            )
        done += 1
    out.put(done)


def main() -> None:
    django.setup()
    from django.db import connection, connections

    from marketplace.ledger import selectors

    if connection.vendor != "postgresql":
        sys.exit("bench_ledger needs Postgres: run `make bench BENCH=ledger`")
    ids = setup()
    connections.close_all()
    rows = []
    for mode, workers in ((mode, workers) for mode in MODES for workers in (1, 2, 4, 8)):
        run = f"{workers}-{time.time_ns()}"
        out: mp.Queue = mp.Queue()
        procs = [mp.Process(target=worker, args=(ids, SECONDS, run, n, mode, out)) for n in range(workers)]
        start = time.perf_counter()
        for p in procs:
            p.start()
        total = sum(out.get() for _ in procs)
        for p in procs:
            p.join()
        elapsed = time.perf_counter() - start
        drift = len(selectors.ledger_drift())
        rows.append(
            {
                "mode": mode,
                "workers": workers,
                "transfers": total,
                "seconds": round(elapsed, 2),
                "transfers_per_s": round(total / SECONDS, 1),
                "ledger_total": selectors.ledger_total(),
                "drifting_accounts": drift,
            }
        )
        connections.close_all()
    print(f"{'mode':<34} {'workers':>8} {'transfers':>10} {'per second':>11} {'ledger sum':>11} {'drift':>6}")
    for r in rows:
        print(
            f"{r['mode']:<34} {r['workers']:>8} {r['transfers']:>10} {r['transfers_per_s']:>11} "
            f"{r['ledger_total']:>11} {r['drifting_accounts']:>6}"
        )
    baseline = {r["workers"]: r["transfers_per_s"] for r in rows if r["mode"] == MODES[2]}
    speedup = {
        r["workers"]: round(r["transfers_per_s"] / baseline[r["workers"]], 2) for r in rows if r["mode"] == MODES[0]
    }
    print("function vs baseline, by workers: " + ", ".join(f"{w}: {x}x" for w, x in speedup.items()))
    result = {
        "bench": "ledger",
        "machine": f"{platform.machine()} cores={os.cpu_count()}",
        "seconds_per_run": SECONDS,
        "wallets": WALLETS,
        "rows": rows,
        "function_vs_baseline": speedup,
    }
    path = ROOT / "bench" / "results" / "ledger.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
