"""The hub moves a query on from two pushes at once without fixing its participant set twice.

Found at 30 and 100 centres (bench/query_federated.py, about one query in twenty): two
centres' last accepts arrive together; both pushes read the query as "preparing" and every
target as replied; one fixes the set, a quick centre answers, and the other — still holding
its view from before — fixed the set again and counted the centre that had answered as not
accepted: "too few participants: 29 accepted, 30 needed", with all thirty accepted.

The test replays that interleaving on a real hub store: the second `advance` runs, and the
member answers, at the moment the first has read the query's states. With the reads inside the
first's transaction the second waits for it instead (the test then gives up waiting after a
moment and lets the first go on), and the query keeps its set.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from oncofed.federation.hub.service import HubService
from oncofed.federation.hub.store import ABSTAIN, ANSWER, PREPARE, HubStore, now_ms

QH = bytes(range(32))
CENTRES = ["centre-a", "centre-b", "centre-c"]


def _no_trust() -> Any:
    raise AssertionError("moving a query on reads no trust documents")


def _submitted(store: HubStore, targets: list[str], min_participants: int, query_hash: bytes = QH,
               **retry: Any) -> None:
    """A query queued at the hub as Submit queues it, an hour to prepare and to live."""
    store.add_query(query_hash=query_hash, researcher="res-1", permit_hash=bytes(32), targets=targets,
                    min_participants=min_participants, expires_at=int(time.time()) + 3600,
                    prepare_until_ms=now_ms() + 3_600_000, sealed={c: b"sealed" for c in targets}, **retry)


def _queued(store: HubStore) -> None:
    _submitted(store, CENTRES, len(CENTRES))
    with store.tx() as c:
        for centre in CENTRES:
            store.record(c, QH, centre, "accepted", column="accept", payload=f"accept of {centre}".encode())


def test_two_pushes_advancing_at_once_fix_the_participant_set_once(tmp_path: Path) -> None:
    store = HubStore(tmp_path / "hub.db")
    service = HubService(store, _no_trust)
    try:
        _queued(store)
        real_states = store.states
        real_unreplied = store.unreplied
        other_done = threading.Event()

        def other_push() -> None:
            service.advance(QH)                                   # fixes the set
            with store.tx() as c:                                 # and a quick member answers
                store.record(c, QH, "centre-a", "answered", column="answer", payload=b"sealed answer")
            other_done.set()

        def unreplied_then_interleave(qh: bytes) -> int:
            seen = real_unreplied(qh)
            if threading.current_thread().name == "first-push":
                other = threading.Thread(target=other_push, name="second-push")
                other.start()
                other.join(timeout=1.0)        # blocked on the store's lock when the reads are inside
                interleave["other_finished_inside"] = other_done.is_set()
                interleave["thread"] = other
            return seen

        interleave: dict[str, Any] = {}
        store.unreplied = unreplied_then_interleave  # type: ignore[method-assign]
        first = threading.Thread(target=service.advance, args=(QH,), name="first-push")
        first.start()
        first.join(timeout=10)
        interleave["thread"].join(timeout=10)
        assert other_done.is_set()

        row = store.query(QH)
        assert row is not None
        assert row.state == "answering", row.error
        assert len(row.participants) == len(CENTRES)
        assert store.members(QH) == CENTRES
        assert dict(real_states(QH))["centre-a"] == "answered"
        assert interleave["other_finished_inside"] is False
    finally:
        service.close()
        store.close()


def test_an_accept_or_decline_after_the_set_is_fixed_no_longer_counts(tmp_path: Path) -> None:
    """Push asks `wanted` inside the transaction that would record the reply: an accept taken
    after the set is fixed would make its centre look like a member that never gets an answer
    task (the query would then fail waiting for it)."""
    store = HubStore(tmp_path / "hub.db")
    service = HubService(store, _no_trust)
    targets = [*CENTRES, "centre-d"]
    try:
        _submitted(store, targets, 3)
        with store.tx() as c:
            for centre in CENTRES:
                store.record(c, QH, centre, "accepted", column="accept", payload=b"accept")
        assert all(service.wanted(QH, k) for k in ("accept", "decline", "failure"))
        with store.tx() as c:                                     # the prepare time is up: fix with three
            c.execute("UPDATE queries SET prepare_until_ms = 0 WHERE query_hash = ?", (QH,))
        service.advance(QH)
        row = store.query(QH)
        assert row is not None
        assert row.state == "answering", row.error
        assert store.members(QH) == CENTRES
        assert not service.wanted(QH, "accept") and not service.wanted(QH, "decline")
        assert not store.has_task(QH, "centre-d", PREPARE), "the silent target's prepare is redelivered"
        assert store.has_task(QH, "centre-a", ANSWER)
        assert service.wanted(QH, "sealed_answer") and service.wanted(QH, "failure")
        with store.tx() as c:
            store.set_state(c, QH, "failed", "ended")
        assert not any(service.wanted(QH, k) for k in ("accept", "sealed_answer", "failure"))
        assert not service.wanted(bytes(32), "sealed_answer")                    # no such query
    finally:
        service.close()
        store.close()


# ---------------------------------------------------------------------- a late failure and a retry
class _Aborted(Exception):
    pass


class _Context:
    """What Push uses of a gRPC context: abort raises (as grpc's does), with the trailing metadata
    set before it."""

    trailing: tuple[Any, ...] = ()

    def set_trailing_metadata(self, metadata: Any) -> None:
        self.trailing = tuple(metadata)

    def abort(self, code: Any, details: str) -> None:
        raise _Aborted(f"{code}: {details}")


class _Registry:
    def __init__(self, identities: dict[str, Any]) -> None:
        self.identities = identities

    def keyring(self, role: str) -> dict[bytes, Any]:
        assert role == "centre"
        return {i.public.signing_key_id: i.public for i in self.identities.values()}


def _push(service: HubService, centre: str, request: Any) -> None:
    from oncofed.transport.interceptor import _CURRENT_PEER, Peer
    token = _CURRENT_PEER.set(Peer(role="centre", member_id=centre, fingerprint="", serial=0))
    try:
        service.Push(request, _Context())
    finally:
        _CURRENT_PEER.reset(token)


def test_a_late_failure_of_the_failed_query_is_not_taken_for_a_refusal_to_abstain(tmp_path: Path) -> None:
    """A member that was slow on the failed query F (its answer deadline passed: F failed naming
    it) may still be computing F's answer task when the researcher's retry R — leaving it out —
    queues an abstain task for it. When that computation ends in a failure notice (BUSY, INVALID,
    POLICY …: nothing released), the notice reaches the hub while the abstain task is there. It
    is F's own late reply, not the abstain task's (which says ANSWERED): taken for "I released
    it", R failed and every later retry of F had to include the centre — which never released."""
    from oncofed.federation.hub import retries
    from oncofed.keys.identity import Identity
    from oncofed.secagg.wire import sign_abstention, sign_failure
    from oncofed.v1 import federation_pb2 as fpb

    ids = {c: Identity.generate("centre", c) for c in CENTRES}
    store = HubStore(tmp_path / "hub.db")
    service = HubService(store, lambda: (_Registry(ids), b"", b""))   # type: ignore[arg-type,return-value]
    a, b, c = CENTRES
    try:
        _queued(store)                                            # F: a, b, c accepted
        service.advance(QH)                                       # the set is fixed: answering
        with store.tx() as tx:                                    # a and c answer, b is slow
            for centre in (a, c):
                store.record(tx, QH, centre, "answered", column="answer", payload=b"sealed answer")
            tx.execute("UPDATE queries SET answer_until_ms = 0 WHERE query_hash = ?", (QH,))
        service.advance(QH)
        failed = store.query(QH)
        assert failed is not None and failed.state == "failed" and failed.failed_centres == (b,)

        retry = bytes(range(1, 33))                               # R over a and c: b must abstain
        progress = {p.centre: p for p in store.progress(QH)}
        assert retries.submit_problem(failed, "res-1", [a, c], progress) == ""
        _submitted(store, [a, c], 2, retry, retry_of=QH, abstain=retries.to_ask(failed, progress, [a, c]))
        assert store.has_task(QH, b, ABSTAIN)

        # b's answer task of F ends now, in a failure: nothing was released
        _push(service, b, fpb.PushRequest(query_hash=QH, failure=sign_failure(ids[b], QH, "BUSY")))
        with store.tx() as tx:                                    # R's set: a and c
            for centre in (a, c):
                store.record(tx, retry, centre, "accepted", column="accept", payload=f"accept of {centre}".encode())
        service.advance(retry)
        row = store.query(retry)
        assert row is not None
        assert row.state == "abstaining", row.error               # waiting for b's abstention, not failed
        assert store.has_task(QH, b, ABSTAIN), "the abstain task is still to be answered"

        # b then answers the abstain task: its abstention; R goes on
        _push(service, b, fpb.PushRequest(query_hash=QH, abstention=sign_abstention(ids[b], QH)))
        row = store.query(retry)
        assert row is not None
        assert row.state == "answering", row.error
        assert len(row.abstentions) == 1

    finally:
        service.close()
        store.close()


def test_a_centre_that_accepted_then_declined_is_no_member(tmp_path: Path) -> None:
    """The participant set is the signed accepts of the centres whose state is "accepted" when it
    is fixed; a centre that accepted and then declined (or failed) before that is left out of it —
    and must be left out of `members` too, which the hub counts answers against and lets push a
    sealed answer. Counted there, it got no answer task and its 'silence' failed the query; and
    it could push an answer the signed set does not name."""
    store = HubStore(tmp_path / "hub.db")
    service = HubService(store, _no_trust)
    a, b, c = CENTRES
    try:
        _submitted(store, CENTRES, 2)
        with store.tx() as tx:
            for centre in CENTRES:
                store.record(tx, QH, centre, "accepted", column="accept", payload=f"accept of {centre}".encode())
            store.record(tx, QH, c, "declined", column="decline", payload=b"decline of c")
        service.advance(QH)                                       # every target replied: fixed with a, b
        row = store.query(QH)
        assert row is not None
        assert row.state == "answering", row.error
        assert sorted(row.participants) == [b"accept of centre-a", b"accept of centre-b"]
        assert store.members(QH) == [a, b]
        assert not service.wanted(QH, "accept")
        with store.tx() as tx:
            for centre in (a, b):
                store.record(tx, QH, centre, "answered", column="answer", payload=b"sealed answer")
        service.advance(QH)
        row = store.query(QH)
        assert row is not None
        assert row.state == "complete", row.error
    finally:
        service.close()
        store.close()


def test_a_decline_or_failure_signed_by_another_centre_is_refused(tmp_path: Path) -> None:
    """A centre may push only its own signed statements: a decline or failure of a's that b got
    hold of and pushed would otherwise be recorded as b's reply (found by the hub review)."""
    from oncofed.keys.identity import Identity
    from oncofed.secagg.wire import sign_decline, sign_failure
    from oncofed.v1 import federation_pb2 as fpb

    ids = {c: Identity.generate("centre", c) for c in CENTRES}
    store = HubStore(tmp_path / "hub.db")
    service = HubService(store, lambda: (_Registry(ids), b"", b""))   # type: ignore[arg-type,return-value]
    a, b, _ = CENTRES
    try:
        _submitted(store, CENTRES, 2)
        for request in (fpb.PushRequest(query_hash=QH, decline=sign_decline(ids[a], QH, "POLICY")),
                        fpb.PushRequest(query_hash=QH, failure=sign_failure(ids[a], QH, "BUSY"))):
            with pytest.raises(_Aborted, match="not validly signed"):
                _push(service, b, request)
        assert dict(store.states(QH))[b] == "queued"
        _push(service, b, fpb.PushRequest(query_hash=QH, decline=sign_decline(ids[b], QH, "POLICY")))
        assert dict(store.states(QH))[b] == "declined"
    finally:
        service.close()
        store.close()


def test_a_task_due_again_wakes_the_long_poll(tmp_path: Path) -> None:
    """A node restarted mid-task polls again; its delivered task is due for redelivery after
    REDELIVER_MS, and the poll must see it then rather than wait out its 20 s."""
    from oncofed.federation.hub.store import REDELIVER_MS

    store = HubStore(tmp_path / "hub.db")
    try:
        _submitted(store, CENTRES, 2)
        assert [k for _, k, _ in store.take_tasks("centre-a")] == [PREPARE]
        assert not store.has_tasks("centre-a")                    # delivered just now: not due
        with store.tx() as c:
            c.execute("UPDATE tasks SET delivered_ms = ? WHERE centre = 'centre-a'", (now_ms() - REDELIVER_MS - 1,))
        assert store.has_tasks("centre-a")
        assert [k for _, k, _ in store.take_tasks("centre-a")] == [PREPARE]
        assert not store.has_tasks("centre-a")
    finally:
        store.close()


def test_a_hub_started_after_replies_it_never_acted_on_moves_the_query_on_at_once(tmp_path: Path) -> None:
    """Push records a reply and then moves the query on, in two transactions: a hub stopped in
    between leaves every accept recorded and the query still preparing. The restarted hub's
    first sweep fixes the set then, not at the prepare deadline (an hour away here)."""
    store = HubStore(tmp_path / "hub.db")
    _queued(store)                                    # the replies, as a stopped hub left them
    service = HubService(store, _no_trust)
    try:
        deadline = time.monotonic() + 5
        while (row := store.query(QH)) is not None and row.state == "preparing" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert row is not None
        assert row.state == "answering", f"still {row.state} after 5 s: the set waits for its deadline"
        assert store.members(QH) == CENTRES
        assert all(store.has_task(QH, centre, ANSWER) for centre in CENTRES)
    finally:
        service.close()
        store.close()


def test_a_batch_of_tasks_stays_below_the_message_limit_and_the_rest_wait_their_turn(tmp_path: Path) -> None:
    """Three prepares of 1.5 MiB each (a sealed query may be 2 MiB) in one reply would pass
    gRPC's 4 MiB message limit and fail the centre's call on the same oldest tasks at every
    redelivery. A batch carries at most BATCH_BYTES of payload, always its first task."""
    from oncofed.federation.hub.store import BATCH_BYTES

    store = HubStore(tmp_path / "hub.sqlite")
    try:
        big = 3 * 1024 * 1024 // 2
        hashes = [bytes([i]) * 32 for i in range(1, 4)]
        for qh in hashes:
            store.add_query(query_hash=qh, researcher="res-1", permit_hash=bytes(32), targets=["centre-a"],
                            min_participants=1, expires_at=int(time.time()) + 3600,
                            prepare_until_ms=now_ms() + 3_600_000, sealed={"centre-a": bytes(big)})
            time.sleep(0.002)                       # created in this order
        first = store.take_tasks("centre-a")
        assert [q for q, _, _ in first] == hashes[:2]
        assert sum(len(p) for _, _, p in first) <= BATCH_BYTES
        assert [q for q, _, _ in store.take_tasks("centre-a")] == hashes[2:]      # the next call's
        assert store.take_tasks("centre-a", max_bytes=10) == []                    # all delivered
    finally:
        store.close()


# ---------------------------------------------------------------------- a set apart from its row
def _fixed(store: HubStore, centres: list[str]) -> dict[str, bytes]:
    """Every centre accepted (a 0.5 kB accept each, as signed ones are) and the set is fixed."""
    import os

    _submitted(store, centres, len(centres))
    accepts = {c: os.urandom(500) for c in centres}
    with store.tx() as c:
        for centre, accept in accepts.items():
            store.record(c, QH, centre, "accepted", column="accept", payload=accept)
    service = HubService(store, _no_trust)
    try:
        service.advance(QH)
    finally:
        service.close()
    return accepts


def test_a_fixed_set_is_kept_apart_from_the_row_every_reply_rewrites(tmp_path: Path) -> None:
    """At 100 centres a fixed set is 50 kB of signed accepts. Kept in the query's row, it was
    rewritten by every reply's version bump and read by every reply's checks, so the hub's work
    on a query grew with the square of its centres. The row now holds none of it; the set reads
    back whole, and the paths that need only state and deadlines read the row without it."""
    store = HubStore(tmp_path / "hub.db")
    try:
        centres = [f"centre-{i:03d}" for i in range(100)]
        accepts = _fixed(store, centres)
        row = store.query(QH)
        assert row is not None and row.state == "answering", row
        assert sorted(row.participants) == sorted(accepts.values())
        assert store.members(QH) == centres and store.is_member(QH, "centre-042")
        assert store.tally(QH) == (0, 100)
        light = store.query(QH, sets=False)
        assert light is not None and light.participants == () and light.version == row.version
        (in_row,) = store.conn.execute("SELECT length(participants) + length(abstentions) FROM queries "
                                       "WHERE query_hash = ?", (QH,)).fetchone()
        assert in_row == 4                              # '[]' twice
    finally:
        store.close()


def test_a_hub_store_that_kept_sets_in_the_query_row_is_moved_on_open(tmp_path: Path) -> None:
    """A store written before the sets had their own table opens with every set intact."""
    path = tmp_path / "hub.db"
    store = HubStore(path)
    accepts = _fixed(store, CENTRES)
    with store.tx() as c:
        store.set_state(c, QH, "answering", abstentions=[b"abstention of centre-z"])   # as a retry's
    with store.tx() as c:                 # as the earlier layout kept them
        c.execute("UPDATE queries SET participants = (SELECT participants FROM query_sets WHERE query_hash = ?), "
                  "abstentions = (SELECT abstentions FROM query_sets WHERE query_hash = ?) "
                  "WHERE query_hash = ?", (QH, QH, QH))
        c.execute("DELETE FROM query_sets")
    assert store.members(QH) == []        # the set is not seen where it is not looked for
    store.close()
    store = HubStore(path)
    try:
        row = store.query(QH)
        assert row is not None and sorted(row.participants) == sorted(accepts.values())
        assert row.abstentions == (b"abstention of centre-z",)
        assert store.members(QH) == CENTRES
        assert store.conn.execute("SELECT participants, abstentions FROM queries").fetchone() == ("[]", "[]")
    finally:
        store.close()


def test_a_reply_is_kept_when_moving_its_query_on_fails_and_the_sweeper_moves_it_on(tmp_path: Path) -> None:
    """A reply and its query's move on share one transaction. Should moving on fail, the reply
    must still be recorded: rolled back with it, the centre's answer task stayed queued, came
    back every 10 s, failed each time and held up the centre's later tasks until the query
    expired. The sweeper then moves the query on."""
    from oncofed.keys.identity import Identity
    from oncofed.v1 import federation_pb2 as fpb

    ids = {c: Identity.generate("centre", c) for c in CENTRES}
    store = HubStore(tmp_path / "hub.db")
    service = HubService(store, lambda: (_Registry(ids), b"", b""))   # type: ignore[arg-type,return-value]
    a, b, c = CENTRES
    try:
        _queued(store)
        service.advance(QH)                                       # the set is fixed: answering
        with store.tx() as tx:
            for centre in (a, b):
                store.record(tx, QH, centre, "answered", column="answer", payload=b"sealed answer")
        real, failures = store.tally, []

        def failing_once(qh: bytes) -> tuple[int, int]:
            if not failures:
                failures.append(qh)
                raise sqlite3.OperationalError("disk I/O error")
            return real(qh)

        store.tally = failing_once  # type: ignore[method-assign]
        _push(service, c, fpb.PushRequest(query_hash=QH, sealed_answer=b"c's sealed answer"))
        assert failures == [QH]
        assert {p.centre: p.state for p in store.progress(QH)}[c] == "answered"
        assert not store.has_task(QH, c, ANSWER)
        deadline = time.monotonic() + 5
        while store.query(QH).state != "complete" and time.monotonic() < deadline:   # type: ignore[union-attr]
            time.sleep(0.05)
        assert store.query(QH).state == "complete"                                    # type: ignore[union-attr]
    finally:
        service.close()
        store.close()



class _WatchContext:
    """What Watch and a pull use of a gRPC context: a live call with a minute left."""

    def is_active(self) -> bool:
        return True

    def time_remaining(self) -> float:
        return 60.0

    def abort(self, code: Any, details: str) -> None:
        raise _Aborted(f"{code}: {details}")


@pytest.fixture
def quiet_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A hub whose watches return only when woken: the periodic look is pushed out of a test's
    reach, and the sweeper (which moves every open query on at start, and so wakes its watches)
    is off — the tests move queries on themselves. Yields (service, store, the reads of QH by the
    thread named "watch", the watch threads to join before the store closes)."""
    from oncofed.federation.hub import waiting

    monkeypatch.setattr(waiting, "RECHECK_SECONDS", 60.0)
    monkeypatch.setattr(HubService, "_sweep", lambda self: None)
    store = HubStore(tmp_path / "hub.db")
    service = HubService(store, lambda: (_Registry({}), b"", b""))
    reads = {"watched": 0}
    real_query = store.query

    def counting(qh: bytes, **kw: Any) -> Any:
        if qh == QH and threading.current_thread().name == "watch":
            reads["watched"] += 1
        return real_query(qh, **kw)

    store.query = counting  # type: ignore[method-assign]
    waiters: list[threading.Thread] = []
    try:
        yield service, store, reads, waiters
    finally:
        service.close()                       # wakes every watch, which then ends
        for w in waiters:
            w.join(timeout=10)
        store.close()


def _watch(service: HubService, waiters: list[threading.Thread], **request: Any) -> dict[str, Any]:
    """Start the researcher's Watch of QH in the thread "watch"; its reply lands in the dict."""
    from oncofed.transport.interceptor import _CURRENT_PEER, Peer
    from oncofed.v1 import federation_pb2 as fpb

    out: dict[str, Any] = {}

    def watch() -> None:
        token = _CURRENT_PEER.set(Peer(role="researcher", member_id="res-1", fingerprint="", serial=0))
        try:
            out["state"] = service.Watch(fpb.WatchRequest(query_hash=QH, wait_ms=30_000, **request), _WatchContext())
        finally:
            _CURRENT_PEER.reset(token)

    waiter = threading.Thread(target=watch, name="watch")
    waiters.append(waiter)
    waiter.start()
    return out


def _until(predicate: Any, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.01)
    return bool(predicate())


def test_a_watch_is_woken_by_its_own_query_and_by_no_other(quiet_hub: Any) -> None:
    """Waking every watch on every change cost each watch a store read per reply to any query:
    with many researchers' queries in flight, a reply's cost grew with the queries open."""
    service, store, reads, waiters = quiet_hub
    other = bytes(range(1, 33))
    _submitted(store, CENTRES, len(CENTRES))
    _submitted(store, CENTRES, len(CENTRES), query_hash=other)
    out = _watch(service, waiters, until_final=True)
    assert _until(lambda: reads["watched"] >= 2)      # the ownership check, the first look
    for _ in range(20):                                # the other query moves on, and notifies
        service.advance(other)
        time.sleep(0.01)
    assert reads["watched"] == 2, "the watch was woken by another query's changes"
    assert waiters[0].is_alive()
    with store.tx() as c:
        store.set_state(c, QH, "failed", "a test ends it")
    service.advance(QH)                                # the watched query's own change wakes it
    waiters[0].join(timeout=10)
    assert not waiters[0].is_alive(), "the watch was not woken by its own query"
    assert out["state"].state == "failed"


def test_the_last_members_answer_wakes_the_watch(quiet_hub: Any) -> None:
    """A centre's push is what completes a query: the push itself must wake the query's watch,
    not the next periodic look (the researcher would wait out the interval on every query)."""
    from oncofed.v1 import federation_pb2 as fpb

    service, store, reads, waiters = quiet_hub
    a, b, c = CENTRES
    _submitted(store, CENTRES, 2)
    with store.tx() as tx:
        for centre in (a, b):
            store.record(tx, QH, centre, "accepted", column="accept", payload=f"accept of {centre}".encode())
        store.record(tx, QH, c, "declined", column="decline", payload=b"decline of c")
    service.advance(QH)
    assert store.query(QH).state == "answering"
    out = _watch(service, waiters, until_final=True)
    assert _until(lambda: reads["watched"] >= 2)
    _push(service, a, fpb.PushRequest(query_hash=QH, sealed_answer=b"sealed answer of a"))
    assert waiters[0].is_alive()                       # one member answered: not final yet
    _push(service, b, fpb.PushRequest(query_hash=QH, sealed_answer=b"sealed answer of b"))
    waiters[0].join(timeout=10)
    assert not waiters[0].is_alive(), "the last answer's push did not wake the watch"
    assert out["state"].state == "complete"


def test_a_task_delivered_wakes_a_watch_of_the_progress(quiet_hub: Any) -> None:
    """A watch of the progress (`after_version`, the CLI's live display) is told when a centre
    takes its task ("delivered"), when it happens."""
    service, store, reads, waiters = quiet_hub
    _submitted(store, CENTRES, len(CENTRES))
    version = store.query(QH).version
    out = _watch(service, waiters, after_version=version)
    assert _until(lambda: reads["watched"] >= 2)
    tasks = service._deliver(CENTRES[0], service.waiters.number(CENTRES[0]), 0, _WatchContext())
    assert [t.query_hash for t in tasks] == [QH]
    waiters[0].join(timeout=10)
    assert not waiters[0].is_alive(), "a delivered task did not wake the watch of its query"
    assert out["state"].version > version
    assert {p.centre: p.state for p in out["state"].centres}[CENTRES[0]] == "delivered"


def test_a_hub_closing_while_a_watch_looks_ends_the_watch_at_once(quiet_hub: Any) -> None:
    """The wake-up of a hub that stops between a watch's look at "stopping?" and its wait must
    not be erased by the wait's own reset (found by review: the watch slept its whole interval)."""
    from oncofed.transport.interceptor import _CURRENT_PEER, Peer
    from oncofed.v1 import federation_pb2 as fpb

    service, store, _reads, waiters = quiet_hub
    _submitted(store, CENTRES, len(CENTRES))

    class ClosingContext(_WatchContext):
        calls = 0

        def is_active(self) -> bool:
            ClosingContext.calls += 1
            if ClosingContext.calls == 1:
                service.close()               # the hub stops at this very moment
            return True

    def watch() -> None:
        token = _CURRENT_PEER.set(Peer(role="researcher", member_id="res-1", fingerprint="", serial=0))
        try:
            service.Watch(fpb.WatchRequest(query_hash=QH, wait_ms=30_000, until_final=True), ClosingContext())
        finally:
            _CURRENT_PEER.reset(token)

    waiter = threading.Thread(target=watch, name="watch")
    waiters.append(waiter)
    waiter.start()
    waiter.join(timeout=10)
    assert ClosingContext.calls >= 1
    assert not waiter.is_alive(), "a closing hub's wake-up was lost"
