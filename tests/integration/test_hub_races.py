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

import threading
import time
from pathlib import Path
from typing import Any

from oncofed.federation.hub.service import HubService
from oncofed.federation.hub.store import HubStore, now_ms

QH = bytes(range(32))
CENTRES = ["centre-a", "centre-b", "centre-c"]


def _no_trust() -> Any:
    raise AssertionError("moving a query on reads no trust documents")


def _queued(store: HubStore) -> None:
    store.add_query(query_hash=QH, researcher="res-1", permit_hash=bytes(32), targets=CENTRES,
                    min_participants=len(CENTRES), expires_at=int(time.time()) + 3600,
                    prepare_until_ms=now_ms() + 3_600_000, sealed={c: b"sealed" for c in CENTRES})
    with store.tx() as c:
        for centre in CENTRES:
            store.record(c, QH, centre, "accepted", column="accept", payload=f"accept of {centre}".encode())


def test_two_pushes_advancing_at_once_fix_the_participant_set_once(tmp_path: Path) -> None:
    store = HubStore(tmp_path / "hub.db")
    service = HubService(store, _no_trust)
    try:
        _queued(store)
        real_states = store.states
        other_done = threading.Event()

        def other_push() -> None:
            service.advance(QH)                                   # fixes the set
            with store.tx() as c:                                 # and a quick member answers
                store.record(c, QH, "centre-a", "answered", column="answer", payload=b"sealed answer")
            other_done.set()

        def states_then_interleave(qh: bytes) -> dict[str, str]:
            seen = real_states(qh)
            if threading.current_thread().name == "first-push":
                other = threading.Thread(target=other_push, name="second-push")
                other.start()
                other.join(timeout=1.0)        # blocked on the store's lock when the reads are inside
                interleave["other_finished_inside"] = other_done.is_set()
                interleave["thread"] = other
            return seen

        interleave: dict[str, Any] = {}
        store.states = states_then_interleave  # type: ignore[method-assign,assignment]
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
        store.add_query(query_hash=QH, researcher="res-1", permit_hash=bytes(32), targets=targets,
                        min_participants=3, expires_at=int(time.time()) + 3600,
                        prepare_until_ms=now_ms() + 3_600_000, sealed={c: b"sealed" for c in targets})
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
        assert service.wanted(QH, "sealed_answer") and service.wanted(QH, "failure")
        with store.tx() as c:
            store.set_state(c, QH, "failed", "ended")
        assert not any(service.wanted(QH, k) for k in ("accept", "sealed_answer", "failure"))
        assert not service.wanted(bytes(32), "sealed_answer")                    # no such query
    finally:
        service.close()
        store.close()
