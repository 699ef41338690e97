"""CPU time as Linux's /proc counts it, for the benches: the database server's, a process group's, the
hypervisor's steal. Each returns None (or nothing) where there is no /proc."""

import os
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int | str) -> list[str]:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2 :].split()  # fields from the 3rd on (the name may hold spaces)


def _cpu_s(fields: list[str], *, reaped: bool = True) -> float:
    """utime + stime, plus what the process reaped of its children (cutime + cstime)."""
    return sum(int(x) for x in fields[11 : 15 if reaped else 13]) / TICK


def postmaster_pid() -> int:
    """The pid of this database's Postgres server (the parent of this connection's backend)."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        backend = cur.fetchone()[0]
    status = Path(f"/proc/{backend}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))


def postgres_cpu_seconds() -> float:
    """CPU time of this database's Postgres server: the postmaster, its live children, and children it reaped."""
    postmaster = postmaster_pid()
    total = _cpu_s(_stat_fields(postmaster))
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == postmaster:
            continue
        try:
            fields = _stat_fields(proc.name)
        except OSError:
            continue
        if int(fields[1]) == postmaster:  # parent pid
            total += _cpu_s(fields, reaped=False)
    return total


def process_trees_cpu_s(roots: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each named process tree ({name: its root's pid}, with every live descendant, a
    sandbox's new session included), a Blender render server's apart as "<name> blender"."""
    procs: dict[int, tuple[int, float, bool]] = {}  # pid: (parent, CPU seconds, a render server)
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = _stat_fields(proc.name)
            server = b"render_server" in (proc / "cmdline").read_bytes()
        except OSError:
            continue
        procs[int(proc.name)] = (int(fields[1]), _cpu_s(fields), server)
    names = {pid: name for name, pid in roots.items()}
    out: dict[str, float] = defaultdict(float)
    for pid, (_parent, seconds, server) in procs.items():
        root = pid
        while root not in names and root in procs and root > 1:
            root = procs[root][0]
        if root in names:
            out[f"{names[root]} blender" if server else names[root]] += seconds
    return dict(out)


def cpu_ticks() -> tuple[int, int] | None:
    """(stolen, all) CPU ticks of this machine since boot (/proc/stat); None where there is no /proc."""
    try:
        ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except OSError:
        return None
    return ticks[7], sum(ticks)


def steal_share(before: tuple[int, int] | None) -> float | None:
    """The share of the machine's CPU time since `before` that the hypervisor gave to other guests: a phase
    with more of it ran slower for reasons no side of a comparison owns."""
    after = cpu_ticks()
    if before is None or after is None or after[1] == before[1]:
        return None
    return round((after[0] - before[0]) / (after[1] - before[1]), 4)


@contextmanager
def on_cpus(cpus: set[int] | None) -> Iterator[None]:
    """Run the block on `cpus`, and what it starts (a child inherits its parent's CPUs); None: as it is."""
    if cpus is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def pin_tree(root: int, cpus: set[int]) -> None:
    """Move a running process, its threads and its live children (with theirs) to `cpus`; a child it starts later
    inherits them."""
    parents: dict[int, int] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                parents[int(proc.name)] = int(_stat_fields(proc.name)[1])
            except OSError:
                continue
    tree, grew = {root}, True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree, grew = tree | more, bool(more)
    for pid in tree:
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                os.sched_setaffinity(int(task.name), cpus)
            except OSError:  # it ended meanwhile
                continue


def pids_running(*needles: bytes) -> list[int]:
    """The processes whose command line holds each of `needles`."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and all(n in (proc / "cmdline").read_bytes() for n in needles):
                found.append(int(proc.name))
        except OSError:
            continue
    return found
