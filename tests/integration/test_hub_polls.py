"""A centre's task goes to the pull that can answer it, not to one its caller gave up.

Found by bench/analyses.py, which restarts every centre's connector before each cold fit: the
first query after a restart failed now and then with "too few participants: 2 accepted, 3
needed". The stopped connector's last long poll was still open at the hub; woken by the new
query, it took the centre's prepare — marked delivered, sent to nobody — and the new
connector's pull got it only when a delivered task is sent again (after 10 s), the length of
the whole prepare window. Here two pulls of one centre are opened by hand, over real mutual-TLS
gRPC to a real hub, as a connector's old and new call.
"""

from __future__ import annotations

import time

import grpc
import pytest
from federation_world import make_world

from oncofed.keys.tls import channel_credentials, load_tls_files
from oncofed.transport.channel import make_channel
from oncofed.v1 import federation_pb2 as fpb
from oncofed.v1 import federation_pb2_grpc as fgrpc


@pytest.fixture
def world(tmp_path):
    w = make_world(tmp_path / "fed", centres=("centre-a", "centre-b"), patients=40)
    w.start_hub()
    yield w
    w.close()


def _stub(world, centre: str) -> tuple[grpc.Channel, fgrpc.HubStub]:
    tls = load_tls_files(world.fed.cert_path("centre", centre), world.fed.tls_keys[centre],
                         world.fed.directory / "root.cert.pem")
    channel = make_channel(world.target, channel_credentials(tls.cert_pem, tls.key_pem, tls.root_cert_pem))
    return channel, fgrpc.HubStub(channel)


def _pulling(stub: fgrpc.HubStub, wait_ms: int) -> grpc.Future:
    call = stub.Pull.future(fpb.PullRequest(wait_ms=wait_ms), timeout=wait_ms / 1000 + 10)
    time.sleep(0.3)                                    # the hub is waiting in it
    return call


def _prepares(reply: fpb.PullReply) -> int:
    return sum(1 for t in reply.tasks if t.kind == fpb.Task.KIND_PREPARE)


def _delivered(world) -> list[str]:
    return [c for _, c, state in world.hub.store.conn.execute(
        "SELECT query_hash, centre, state FROM tasks").fetchall() if state == "delivered"]


def _calls(world) -> dict[str, int]:
    """Count every call of each centre at the hub from now on (each Pull and Push passes `_seen`
    once)."""
    service = world.hub.service
    calls: dict[str, int] = {}
    seen = service._seen

    def counting(centre: str, head: bytes) -> None:
        calls[centre] = calls.get(centre, 0) + 1
        seen(centre, head)

    service._seen = counting
    return calls


def test_a_pull_its_caller_cancelled_takes_no_task(world) -> None:
    old_channel, old = _stub(world, "centre-a")
    new_channel, new = _stub(world, "centre-a")
    try:
        abandoned = _pulling(old, 5_000)
        abandoned.cancel()                             # the connector stopped: its call is gone
        world.client().submit(world.body("count"))
        time.sleep(1.5)                                # the abandoned call's wait wakes (≤ 1 s) and ends
        assert "centre-a" not in _delivered(world)     # it took nothing (it took the prepare before)
        reply = new.Pull(fpb.PullRequest(wait_ms=2_000), timeout=15)
        assert _prepares(reply) == 1                   # the new connector's first pull gets it at once
    finally:
        old_channel.close()
        new_channel.close()


def test_an_older_pull_of_the_same_centre_gives_its_task_to_the_newer(world) -> None:
    """A pull the hub has not yet seen end (a process killed, the connection not yet closed)
    must not race its successor for the task: a connector has one pull open at a time."""
    old_channel, old = _stub(world, "centre-a")
    new_channel, new = _stub(world, "centre-a")
    try:
        for _ in range(3):                             # both woken by the same task, every time
            stale = _pulling(old, 5_000)
            fresh = _pulling(new, 5_000)
            world.client().submit(world.body("count"))
            assert _prepares(fresh.result()) == 1
            assert _prepares(stale.result()) == 0
    finally:
        old_channel.close()
        new_channel.close()


def test_a_query_costs_a_connected_centre_two_calls_its_pushes_bring_back_the_next_tasks(world) -> None:
    """The push of a centre's last reply is its next pull (`PushRequest.wait_ms`): the accept's
    call brings back the answer task, and the answer's call waits for the next query's prepare.
    Counted at the real hub, every call of each real connector (each Pull and Push passes
    `_seen` once), over queries that must all come out right."""
    from oncofed import dictionary as dictmod

    calls = _calls(world)
    for c in world.centres.values():
        c.start(world.fed, world.target)
    world.wait_connected()
    client, d = world.client(), dictmod.load()
    body = world.body("count")
    expected = client.run(body, dictionary=d, timeout=60).result
    time.sleep(0.3)                                    # both answers' calls are waiting for work now
    calls.clear()
    queries = 4
    for _ in range(queries):
        assert client.run(world.body("count"), dictionary=d, timeout=60).result == expected
    time.sleep(0.3)
    assert calls == {"centre-a": 2 * queries, "centre-b": 2 * queries}, calls
