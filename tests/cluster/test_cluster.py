"""The production topology (tests/cluster/topology.py) with three agents on three network hosts, then chaos:
one agent host vanishes mid-lease, the agent broker restarts, a Celery worker is SIGKILLed. Every frame must
settle exactly once and the ledger must sum to zero."""

import socket
import subprocess
import sys

import pytest

from tests.cluster.topology import running_cluster, unavailable

UNAVAILABLE = unavailable()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(UNAVAILABLE is not None, reason=UNAVAILABLE or "")]
FRAMES = 8
AGENTS = 3


@pytest.fixture
def cluster(tmp_path):
    with running_cluster(tmp_path, agent_hosts=AGENTS) as running:
        yield running


def refused_from(host, address: str, port: int) -> bool:
    """Whether a TCP connection from inside the agent host to address:port is refused."""
    probe = f"import socket; socket.create_connection(({address!r}, {port}), timeout=3)"
    done = subprocess.run(
        ["ip", "netns", "exec", host.netns, sys.executable, "-c", probe], check=False, capture_output=True
    )
    return done.returncode != 0 and b"ConnectionRefusedError" in done.stderr


def test_every_frame_settles_once_through_a_lost_host_a_broker_restart_and_a_killed_worker(cluster):
    seeded = cluster.market("seed", str(cluster.tmp), str(FRAMES), str(AGENTS))
    job, nodes = seeded["job"], seeded["nodes"]
    cluster.mark(f"seeded job {job}: {FRAMES} frames")
    hosts = [cluster.start_agent(n, node["token"]) for n, node in enumerate(nodes, start=1)]

    # Agents reach the market only at its public address over their veth: their loopback has nothing on it.
    assert refused_from(hosts[0], "127.0.0.1", cluster.web_port)
    assert refused_from(hosts[0], "127.0.0.1", cluster.broker_port)
    # The agent broker's `default` user is off: a client that does not authenticate gets NOAUTH.
    with socket.create_connection((cluster.network.public_ip, cluster.broker_port), timeout=5) as raw:
        raw.sendall(b"PING\r\n")
        assert raw.recv(100).startswith(b"-NOAUTH")

    doomed = cluster.wait_active_lease(nodes[0]["id"])
    cluster.kill_agent_host(1)  # the whole machine, mid-lease: processes, namespace and veth gone
    cluster.mark(f"agent host 1 killed holding {doomed}")
    cluster.market("wait-settled", str(job), "1", "120")
    cluster.restart_broker()  # queued messages and per-node ACL users are lost
    cluster.mark("agent broker restarted")
    cluster.kill("celery-default")
    cluster.start_celery("default")
    cluster.mark("celery worker SIGKILLed and restarted")
    cluster.market("wait-settled", str(job), str(FRAMES), "180")

    cluster.mark("all frames settled")
    result = cluster.market("report", str(job))
    assert set(result["frames"].values()) == {"settled"}, result
    assert list(result["settlements"].values()) == [1] * FRAMES, result["settlements"]
    assert list(result["settle_count"].values()) == [1] * FRAMES, result["settle_count"]
    assert result["ledger_total"] == 0 and result["ledger_drift"] == [], result
    assert result["leased_count_drift"] == {}, result  # the kept busy counts survived the kills
    # The killed host's lease ran out and its frame was rendered by a host that is still there.
    assert result["leases_by_id"][str(doomed["lease"])]["state"] == "expired", (doomed, result)
    assert result["frame_nodes"][str(doomed["frame"])] != nodes[0]["id"], (doomed, result)

    # Everything the agents did went over their veth addresses: the web saw them there, never on loopback, and
    # the surviving agents came back to the restarted broker as their own (new) ACL users from the same place.
    assert {h.ip for h in hosts} <= cluster.web_clients() and "127.0.0.1" not in cluster.web_clients()
    node_users = {c["user"]: c["addr"].rsplit(":", 1)[0] for c in cluster.broker_clients() if c["user"] != "market"}
    for node, host in zip(nodes[1:], hosts[1:], strict=True):
        assert node_users.get(f"node-{node['id']}") == host.ip, node_users
