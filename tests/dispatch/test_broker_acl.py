"""The agent broker as compose starts it: `default` off, the market as its own ACL user, one user per node.

A real redis-server started with exactly the arguments of compose.yaml's agent-broker service.
"""

import secrets
import socket

import pytest
import redis

from marketplace.dispatch import queues
from marketplace.nodes import broker
from scripts.services import Redis, free_port
from tests.deploy.helpers import compose, interpolate


@pytest.fixture
def acl_broker(tmp_path, settings, monkeypatch):
    password = secrets.token_urlsafe(32)
    argv = [
        interpolate(a, {"AGENT_BROKER_PASSWORD": password}) for a in compose()["services"]["agent-broker"]["command"]
    ]
    assert argv[0] == "redis-server"
    server = Redis(port=free_port(), workdir=tmp_path / "broker", args=argv[1:]).start()
    settings.AGENT_BROKER_URL = f"redis://market:{password}@127.0.0.1:{server.port}/0"
    settings.AGENT_BROKER_PUBLIC_URL = ""
    monkeypatch.setattr(broker, "_client", None)
    yield server
    broker._client = None
    server.stop()


def _raw(port: int, command: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(command)
        return s.recv(200)


def test_a_client_that_does_not_authenticate_gets_noauth(acl_broker):
    assert _raw(acl_broker.port, b"PING\r\n").startswith(b"-NOAUTH")
    assert _raw(acl_broker.port, b"LRANGE agent:node:1:queue 0 -1\r\n").startswith(b"-NOAUTH")
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(port=acl_broker.port).ping()
    with pytest.raises(redis.exceptions.AuthenticationError):  # `default` is off, whatever the password
        redis.Redis(port=acl_broker.port, username="default", password="").ping()
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(port=acl_broker.port, username="market", password="wrong").ping()


def test_the_market_delivers_and_each_node_reaches_only_its_own_queue(acl_broker):
    own_url, other_url = broker.node_broker_url(node_id=1), broker.node_broker_url(node_id=2)
    assert "market" not in own_url and own_url.startswith("redis://node-1:")
    queues.deliver(node_id=1, message={"lease": 10})
    queues.deliver(node_id=2, message={"lease": 20})
    own = redis.Redis.from_url(own_url)
    assert own.blmove(queues.queue_key(1), "agent:node:1:processing", 1, "RIGHT", "LEFT") == b'{"lease": 10}'
    for forbidden in (
        lambda: own.llen(queues.queue_key(2)),
        lambda: own.lrange(queues.queue_key(2), 0, -1),
        lambda: own.blmove(queues.queue_key(2), "agent:node:1:processing", 1, "RIGHT", "LEFT"),
        lambda: own.lpush(queues.queue_key(1), "forged"),
        lambda: own.keys("*"),
        lambda: own.execute_command("ACL", "LIST"),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            forbidden()
    assert redis.Redis.from_url(other_url).llen(queues.queue_key(2)) == 1  # node 2's message untouched


def test_a_revoked_node_user_cannot_log_in(acl_broker):
    url = broker.node_broker_url(node_id=3)
    assert redis.Redis.from_url(url).ping()
    broker.node_broker_revoke(node_id=3)
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis.from_url(url).ping()
