"""The release ledger (oncofed.node.store.ledger) on real SQLite files: which release a row set is
answered as, the stored answers, the participant-set API, persistence, and two processes racing."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from oncofed.keys.ledger import LedgerKeys
from oncofed.node.store import db as dbmod
from oncofed.node.store import ledger as ledgermod
from oncofed.node.store.ledger import Participation, ReleaseLedger
from oncofed.node.store.rowsets import RowSet

KEY = bytes(range(1, 33))
K = 10
BASE = set(range(1, 2_001))


def open_ledger(path: Path) -> ReleaseLedger:
    store = dbmod.connect(path, create=True)
    dbmod.migrate(store, ["federation", "ledger"])
    return ReleaseLedger(store.conn, LedgerKeys(KEY))


def rows(s: set[int]) -> RowSet:
    return RowSet.of(np.array(sorted(s), dtype=np.int64), LedgerKeys(KEY))


@pytest.fixture
def ledger(tmp_path: Path) -> ReleaseLedger:
    led = open_ledger(tmp_path / "store.sqlite")
    yield led
    led.conn.close()


def test_new_same_rows_and_near_duplicates(ledger: ReleaseLedger) -> None:
    first = ledger.resolve("permit:p", rows(BASE), K)
    assert (first.decision, first.release_id) == ("new", first.entry_id)
    again = ledger.resolve("permit:p", rows(BASE), K)
    assert (again.decision, again.entry_id, again.diff.size) == ("same_rows", first.entry_id, 0)
    for removed in range(1, K):                          # 0 < Δ < k: always the earlier release
        cohort = BASE - set(range(100, 100 + removed))
        res = ledger.resolve("permit:p", rows(cohort), K)
        assert (res.decision, res.release_id) == ("near_duplicate", first.entry_id)
        assert res.delta is not None and 0 < res.delta <= removed    # to the nearest entry (maybe an alias)
        assert set(res.diff.apply(rows(cohort).ids).tolist()) == BASE
    far = ledger.resolve("permit:p", rows(BASE - set(range(500, 500 + 2 * K))), K)
    assert far.decision == "new"                          # Δ ≥ 2k: its own release
    other_scope = ledger.resolve("permit:q", rows(BASE - {7}), K)
    assert other_scope.decision == "new"                  # scopes never see each other


def test_between_k_and_2k_the_keyed_radius_decides_once_per_pair(ledger: ReleaseLedger) -> None:
    base = ledger.resolve("permit:p", rows(BASE), K)
    decisions = []
    for i in range(40):      # Δ = k + 4 from BASE, and 2(k + 4) ≥ 2k from each other: only BASE is near
        cohort = rows(BASE - set(range(1_000 + 20 * i, 1_000 + 20 * i + K + 4)))
        first = ledger.resolve("permit:p", cohort, K)
        decisions.append(first.decision)
        assert first.release_id == (base.entry_id if first.decision == "near_duplicate" else first.entry_id)
        assert ledger.resolve("permit:p", cohort, K).release_id == first.release_id   # asked again: the same
    near = decisions.count("near_duplicate")        # near iff radius > k + 4: probability 1/2 per pair
    assert 8 <= near <= 32, decisions


def test_a_near_duplicate_of_a_near_duplicate_is_answered_as_the_release(ledger: ReleaseLedger) -> None:
    release = ledger.resolve("permit:p", rows(BASE), K)
    alias = BASE - {10, 11, 12}
    assert ledger.resolve("permit:p", rows(alias), K).release_id == release.entry_id
    cohort = (alias - {13, 14, 15, 16, 17}) | {5_000, 5_001}
    res = ledger.resolve("permit:p", rows(cohort), K)
    assert res.release_id == release.entry_id and res.decision == "near_duplicate"
    assert set(res.diff.apply(rows(cohort).ids).tolist()) == BASE   # through the alias: still exact
    assert res.release_digest == rows(BASE).digest


def test_answers_are_kept_byte_for_byte_per_release_spec_and_participants(ledger: ReleaseLedger) -> None:
    release = ledger.resolve("permit:p", rows(BASE), K)
    first = ledger.keep(release, b"spec-a", [5, 1, 0], "q1")
    assert (first.vector, first.reused, first.other_participants) == ([5, 1, 0], False, False)
    near = ledger.resolve("permit:p", rows(BASE - {3}), K)
    again = ledger.keep(near, b"spec-a", [4, 1, 0], "q2")     # computed over the release's rows, yet
    assert (again.vector, again.reused) == ([5, 1, 0], True)  # the stored bytes go out
    assert ledger.stored(near, b"spec-a") == [5, 1, 0]
    assert ledger.keep(near, b"spec-b", [7, 1, 0], "q3").vector == [7, 1, 0]   # another analysis: fresh
    big = [(1 << 128) - 1, 2**127, 0]
    assert ledger.keep(release, b"spec-c", big, "q4").vector == big            # values mod 2^128 survive
    under_s1 = ledger.keep(release, b"spec-d", [1, 1, 0], "q5", participants=Participation.of(["a", "b", "c"]))
    assert not under_s1.other_participants
    under_s2 = ledger.keep(release, b"spec-d", [1, 1, 0], "q6", participants=Participation.of(["a", "b"]))
    assert under_s2.other_participants and not under_s2.reused
    rows_logged = ledger.conn.execute("SELECT query_hash, decision FROM ledger_queries ORDER BY id").fetchall()
    assert [q for q, _ in rows_logged] == ["q1", "q2", "q3", "q4", "q5", "q6"]


def test_a_release_under_a_smaller_set_needs_the_leavers_abstentions(ledger: ReleaseLedger) -> None:
    """D26: released over {a, b, c} in q1, the same answer goes out over {a, b} only once c's
    abstention from q1 is kept; a refused release is recorded nowhere; a set with a new centre,
    or one the store did not record, stays refused."""
    from oncofed.node.store import federation as fedstore

    q1, q2, q3 = ("1" * 64), ("2" * 64), ("3" * 64)
    release = ledger.resolve("permit:p", rows(BASE), K)
    abc, ab = Participation.of(["centre-c", "centre-a", "centre-b"]), Participation.of(["centre-a", "centre-b"])
    assert not ledger.keep(release, b"spec", [3, 1, 0], q1, participants=abc).other_participants
    refused = ledger.keep(release, b"spec", [3, 1, 0], q2, participants=ab)
    assert refused.other_participants and "centre-c" in refused.blocker
    assert ledger.stored(release, b"spec", ab) is None                       # nothing recorded as released
    fedstore.add_evidence(ledger.conn, bytes.fromhex(q2), "centre-c", b"wrong query", 1)
    assert ledger.keep(release, b"spec", [3, 1, 0], q2, participants=ab).other_participants
    fedstore.add_evidence(ledger.conn, bytes.fromhex(q1), "centre-c", b"abstention", 1)
    allowed = ledger.keep(release, b"spec", [3, 1, 0], q2, participants=ab)
    assert not allowed.other_participants and allowed.vector == [3, 1, 0]
    abd = Participation.of(["centre-a", "centre-b", "centre-d"])            # d was in neither set
    assert ledger.keep(release, b"spec", [3, 1, 0], q3, participants=abd).other_participants
    ledger.conn.execute("UPDATE ledger_sets SET centres = NULL WHERE query_hash = ?", (q1,))   # as backfilled
    assert ledger.keep(release, b"spec", [3, 1, 0], q3, participants=ab).other_participants


def test_the_ledger_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    led = open_ledger(path)
    release = led.resolve("permit:p", rows(BASE), K)
    led.keep(release, b"spec", [9, 1, 0], "q1")
    led.conn.close()
    ledgermod._caches.clear()                              # a new process: nothing in memory
    led = open_ledger(path)
    res = led.resolve("permit:p", rows(BASE - {1, 2}), K)
    assert (res.decision, res.release_id) == ("near_duplicate", release.entry_id)
    assert led.stored(res, b"spec") == [9, 1, 0]
    led.conn.close()


def test_a_replaced_store_does_not_inherit_the_cache(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    led = open_ledger(path)
    led.resolve("permit:p", rows(BASE), K)
    led.resolve("permit:p", rows(set(range(50_000, 52_000))), K)
    led.conn.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    led = open_ledger(path)                                # same path, empty ledger: the cache must not
    assert led.resolve("permit:p", rows(BASE - {4}), K).decision == "new"   # match a vanished entry
    led.conn.close()


def _race(path: str, cohort: list[int], barrier: Any, out: Any) -> None:
    led = ReleaseLedger(dbmod.connect(Path(path)).conn, LedgerKeys(KEY))
    barrier.wait()
    out.put(led.resolve("permit:p", RowSet.of(np.array(cohort, dtype=np.int64), LedgerKeys(KEY)), K).decision)
    led.conn.close()


def test_two_processes_racing_with_near_duplicates_make_one_release(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    open_ledger(path).conn.close()
    ctx = multiprocessing.get_context("fork")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    a, b = sorted(BASE), sorted(BASE - {99})
    procs = [ctx.Process(target=_race, args=(str(path), c, barrier, out)) for c in (a, b)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    assert sorted(out.get(timeout=5) for _ in procs) == ["near_duplicate", "new"]
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM ledger_entries WHERE release_id IS NULL").fetchone()[0] == 1
    conn.close()


def test_a_difference_the_ledger_cannot_follow_counts_as_near(ledger: ReleaseLedger,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Past its decoding budget (or when a difference does not peel) the ledger takes a candidate
    as near without knowing the difference: the cautious side, and `diff` says it is unknown."""
    release = ledger.resolve("permit:p", rows(BASE), K)
    monkeypatch.setattr(ledgermod, "MAX_DECODES", 0)
    res = ledger.resolve("permit:p", rows(BASE - {5}), K)
    assert (res.decision, res.release_id, res.diff) == ("near_duplicate", release.entry_id, None)
    again = ledger.resolve("permit:p", rows(BASE - {5}), K)          # remembered as such
    assert (again.release_id, again.diff) == (release.entry_id, None)
