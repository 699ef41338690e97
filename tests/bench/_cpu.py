"""Processes as Linux's /proc shows them, for the benches: CPU time of the database server and of process trees,
the hypervisor's steal, and which CPUs a process may run on."""

import os
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int | str) -> list[str]:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2 :].split()  # fields from the 3rd on (the name may hold spaces)


def _processes() -> dict[int, list[str]]:
    """Every live process's /proc/<pid>/stat fields (from the 3rd on: state, parent pid, ...), by pid."""
    table = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                table[int(proc.name)] = _stat_fields(proc.name)
            except OSError:  # it ended meanwhile
                continue
    return table


def _tree(root: int, table: dict[int, list[str]]) -> set[int]:
    """`root` and its live descendants (none if it ended)."""
    tree, grew = {root} & table.keys(), True
    while grew:
        more = {pid for pid, fields in table.items() if int(fields[1]) in tree} - tree
        tree, grew = tree | more, bool(more)
    return tree


def postmaster_pid() -> int:
    """The pid of this database's Postgres server (the parent of this connection's backend)."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        backend = cur.fetchone()[0]
    status = Path(f"/proc/{backend}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))


def process_trees_cpu_s(roots: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each named process tree ({name: its root's pid}): utime + stime of the root and every
    live descendant (a sandbox's new session included), plus what each reaped of its children (cutime + cstime);
    a Blender render server's apart as "<name> blender"."""
    table = _processes()
    out: dict[str, float] = defaultdict(float)
    for name, root in roots.items():
        for pid in _tree(root, table):
            try:
                server = b"render_server" in Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            out[f"{name} blender" if server else name] += sum(int(x) for x in table[pid][11:15]) / TICK
    return dict(out)


def postgres_cpu_seconds() -> float:
    """CPU time of this database's Postgres server: the postmaster, its live children, and children it reaped."""
    return process_trees_cpu_s({"postgres": postmaster_pid()})["postgres"]


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
    """Move a running process, its threads and its live descendants to `cpus`; a child it starts later inherits
    them."""
    for pid in _tree(root, _processes()):
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
