"""A push can pull (D39): the cases a review of it tried as an adversary would, over a real hub
and real connectors (mutual TLS on 127.0.0.1), built as test_hub_polls.py builds its world: a
connector stopped while it handles the last task of a batch still sends that reply; a hub
stopped while pushes wait for work stops at once and a restarted one is served at once; a hub
that ignores `wait_ms` costs four calls a query and no spin; a batch of several tasks is
answered in full; a push held up before its wait does not take a task from a newer pull."""

from __future__ import annotations

import threading
import time

import pytest
from federation_world import make_world
from test_hub_polls import _calls

from oncofed.v1 import federation_pb2 as fpb


@pytest.fixture
def world(tmp_path):
    w = make_world(tmp_path / "fed", centres=("centre-a", "centre-b"), patients=40)
    w.start_hub()
    yield w
    w.close()


def _progress(world, qh: bytes) -> dict[str, str]:
    return {p.centre: p.state for p in world.hub.store.progress(qh)}


def _until(pred, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


@pytest.mark.parametrize("busy_hub", [False, True], ids=["idle-hub", "hub-reads-push-late"])
@pytest.mark.parametrize("kind", [fpb.Task.KIND_ANSWER, fpb.Task.KIND_PREPARE], ids=["answer", "prepare"])
def test_stop_while_the_last_task_of_a_batch_is_handled_still_sends_its_reply(world, kind, busy_hub,
                                                                             monkeypatch) -> None:
    """Connector.stop() says "a task being handled finishes": the reply of the last task of a
    batch, which is also the next long poll and so the call `stop()` cancels, must still reach
    the hub — it is an answer the node already released and recorded, or an accept it stored.
    gRPC drops a call cancelled before the server read its request, so the first version of the
    push-that-pulls lost it: at random with an idle hub (3 runs in 10), every time with a hub
    that takes 0.5 s to start reading the push (as a loaded hub does)."""
    from oncofed.transport import interceptor as icpt

    busy = threading.Event()
    intercept = icpt.AuthInterceptor.intercept_service

    def slow(self, continuation, details):
        if busy.is_set() and details.method.endswith("/Push"):
            time.sleep(0.5)
        return intercept(self, continuation, details)

    monkeypatch.setattr(icpt.AuthInterceptor, "intercept_service", slow)
    for c in world.centres.values():
        c.start(world.fed, world.target)
    world.wait_connected()
    a = world.centres["centre-a"]
    conn = a.connector
    original = conn.handle
    stopper: list[threading.Thread] = []

    def handle(task: fpb.Task):
        push = original(task)
        if task.kind == kind and not stopper:       # the node is told to stop while it handles this task
            t = threading.Thread(target=conn.stop)
            stopper.append(t)
            t.start()
            assert conn._stop.wait(5)
            if busy_hub:
                busy.set()
        return push

    conn.handle = handle
    sub = world.client().submit(world.body("count"))
    qh = sub.query_hash
    want = "answered" if kind == fpb.Task.KIND_ANSWER else "accepted"
    ok = _until(lambda: _progress(world, qh).get("centre-a") in (want, "answered"), 5)
    for t in stopper:
        t.join(15)
    assert ok, f"centre-a's {want} reply never reached the hub: {_progress(world, qh)}"


def test_hub_stop_during_push_waits_is_prompt_and_a_restarted_hub_is_served_at_once(world) -> None:
    from oncofed import dictionary as dictmod

    for c in world.centres.values():
        c.start(world.fed, world.target)
    world.wait_connected()
    client, d = world.client(), dictmod.load()
    expected = client.run(world.body("count"), dictionary=d, timeout=60).result
    time.sleep(0.5)                                    # both answers' pushes are waiting at the hub
    t0 = time.monotonic()
    world.hub.stop(grace=5)                            # close() must wake the pushes' waits
    world.hub = None
    stopped = time.monotonic() - t0
    assert stopped < 2.5, stopped
    assert _until(lambda: not any(c.connector.connected.is_set() for c in world.centres.values()), 5)
    world.start_hub()
    world.wait_connected()
    t0 = time.monotonic()
    assert world.client().run(world.body("count"), dictionary=d, timeout=60).result == expected
    assert time.monotonic() - t0 < 5


def test_an_old_hub_that_ignores_wait_ms_costs_four_calls_and_no_spin(world, monkeypatch) -> None:
    from oncofed import dictionary as dictmod
    from oncofed.federation.hub.service import HubService

    world.stop_hub()
    push = HubService.Push

    def old_push(self, request, context):             # a hub from before the field: no wait, no tasks
        plain = fpb.PushRequest()
        plain.CopyFrom(request)
        plain.wait_ms = 0
        return push(self, plain, context)

    monkeypatch.setattr(HubService, "Push", old_push)
    world.start_hub()
    calls = _calls(world)
    for c in world.centres.values():
        c.start(world.fed, world.target)
    world.wait_connected()
    client, d = world.client(), dictmod.load()
    expected = client.run(world.body("count"), dictionary=d, timeout=60).result
    time.sleep(0.3)
    calls.clear()
    for _ in range(3):
        assert client.run(world.body("count"), dictionary=d, timeout=60).result == expected
    time.sleep(1.0)
    assert calls == {"centre-a": 12, "centre-b": 12}, calls


def test_a_batch_of_several_prepares_is_answered_in_full(world, monkeypatch) -> None:
    """centre-a connects after two queries were queued: its first pull brings both prepares; the
    first accept is a plain push, the second the next poll. Both queries must complete, fast."""
    from oncofed.node.connector import Connector

    batches: list[tuple[str, int]] = []
    work = Connector._work

    def recording(self, stub, tasks):
        batches.append((self.me, len(tasks)))
        return work(self, stub, tasks)

    monkeypatch.setattr(Connector, "_work", recording)
    client = world.client()
    world.centres["centre-b"].start(world.fed, world.target)
    world.wait_connected(centres=("centre-b",))
    subs = [client.submit(world.body("count"), prepare_seconds=30) for _ in range(2)]
    time.sleep(0.5)
    t0 = time.monotonic()
    world.centres["centre-a"].start(world.fed, world.target)
    for s in subs:
        assert _until(lambda s=s: world.hub.store.query(s.query_hash).state == "complete", 20), \
            (world.hub.store.query(s.query_hash).state, _progress(world, s.query_hash))
    assert time.monotonic() - t0 < 8, time.monotonic() - t0
    assert ("centre-a", 2) in batches, batches


def test_an_older_push_whose_reply_is_slow_gives_its_task_to_the_newer_pull(world) -> None:
    """As test_hub_polls' older-pull test, with the older call a push that waits (the connector
    that sent it gone, its connection not yet seen closed). Its number must be taken as it
    arrives: taken after `_reply` (a store transaction, slow under load), it came out newer than
    the successor's pull that arrived meanwhile and took the centre's next task for nobody."""
    from test_hub_polls import _prepares, _stub

    service = world.hub.service
    reply = service._reply

    def slow_reply(centre, request, context):
        if request.query_hash == b"slow":          # stands for a reply queued behind the store lock
            time.sleep(1.0)
            return
        reply(centre, request, context)

    service._reply = slow_reply
    old_channel, old = _stub(world, "centre-a")
    new_channel, new = _stub(world, "centre-a")
    try:
        stale = old.Push.future(fpb.PushRequest(query_hash=b"slow", wait_ms=5_000), timeout=15)
        time.sleep(0.3)                            # the old push is in its _reply
        fresh = new.Pull.future(fpb.PullRequest(wait_ms=5_000), timeout=15)
        time.sleep(1.2)                            # the old push's _reply ended; it now waits too
        world.client().submit(world.body("count"))
        got_stale, got_fresh = _prepares(stale.result()), _prepares(fresh.result())
        assert (got_fresh, got_stale) == (1, 0), f"newer pull got {got_fresh}, the older push {got_stale}"
    finally:
        old_channel.close()
        new_channel.close()


def test_a_reply_the_hub_refuses_does_not_drop_the_rest_of_its_batch(world) -> None:
    """centre-a's first pull brings two prepares; the hub refuses the first accept (as it refuses
    a reply to a query it no longer holds). The second accept must still go now — not when the
    hub sends its prepare again, 10 s later — so the second query completes at once."""
    import grpc

    from oncofed.federation.hub import service as hubservice

    client = world.client()
    world.centres["centre-b"].start(world.fed, world.target)
    world.wait_connected(centres=("centre-b",))
    first, second = (client.submit(world.body("count"), prepare_seconds=30) for _ in range(2))
    service = world.hub.service
    reply = service._reply

    def refusing(centre, request, context):
        if centre == "centre-a" and request.query_hash == first.query_hash:
            hubservice._refuse(context, grpc.StatusCode.NOT_FOUND, "no such query for this centre")
        reply(centre, request, context)

    service._reply = refusing
    time.sleep(0.5)
    t0 = time.monotonic()
    world.centres["centre-a"].start(world.fed, world.target)
    assert _until(lambda: world.hub.store.query(second.query_hash).state == "complete", 20), \
        _progress(world, second.query_hash)
    assert time.monotonic() - t0 < 8, time.monotonic() - t0
    assert _progress(world, first.query_hash)["centre-a"] != "accepted"    # refused: never recorded


def test_the_hubs_refusal_of_a_reply_is_marked_as_the_hubs(world) -> None:
    """A reply for a query the hub does not hold is refused with NOT_FOUND and the hub's mark,
    which is what tells the centre it was the hub's answer to that reply and not a failure of
    the call (gRPC answers RESOURCE_EXHAUSTED itself, a proxy may answer anything)."""
    import grpc
    from test_hub_polls import _stub

    from oncofed.secagg.wire import REFUSAL_METADATA

    channel, stub = _stub(world, "centre-a")
    try:
        with pytest.raises(grpc.RpcError) as caught:
            stub.Push(fpb.PushRequest(query_hash=bytes(32), accept=b"x"), timeout=10)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert REFUSAL_METADATA in [tuple(m) for m in caught.value.trailing_metadata()]
    finally:
        channel.close()



def test_a_refused_last_reply_of_a_batch_keeps_the_connection(world, monkeypatch) -> None:
    """The last reply of a batch goes as a push that waits (`Connector._long`, a gRPC future);
    the hub's marked refusal of it must reach the connector there too: logged, and the connector
    polls on over the same connection (a reconnect fetches the trust documents again) and answers
    the next query at once."""
    import grpc

    from oncofed.federation.hub import service as hubservice
    from oncofed.node.connector import Connector

    client = world.client()
    for c in world.centres.values():
        c.start(world.fed, world.target)
    world.wait_connected()
    service = world.hub.service
    reply, refresh = service._reply, Connector._refresh_trust
    refused: list[bytes] = []
    reconnects: list[str] = []

    def refusing(centre, request, context):
        if centre == "centre-a" and request.WhichOneof("reply") == "accept" and not refused:
            refused.append(bytes(request.query_hash))
            hubservice._refuse(context, grpc.StatusCode.NOT_FOUND, "no such query for this centre")
        reply(centre, request, context)

    def counting(self, stub):
        reconnects.append(self.me)
        return refresh(self, stub)

    service._reply = refusing
    monkeypatch.setattr(Connector, "_refresh_trust", counting)
    first = client.submit(world.body("count"), prepare_seconds=30)
    assert _until(lambda: bool(refused), 10)
    time.sleep(0.5)
    second = client.submit(world.body("count"), prepare_seconds=30)
    assert _until(lambda: world.hub.store.query(second.query_hash).state == "complete", 8), \
        _progress(world, second.query_hash)
    assert refused == [first.query_hash] and reconnects == []
