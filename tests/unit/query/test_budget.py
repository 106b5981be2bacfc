"""The privacy ledger and rate limits live in the node's SQLite store: the ledger never goes
negative or past its budget under concurrent charges (threads and processes on one file), a
refused charge changes nothing, a budget can only shrink, and rate limits count per researcher."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

import pytest

from oncofed.node.node import init_node, open_node
from oncofed.node.store import db as dbmod
from oncofed.node.store.budgets import PrivacyLedger, RateLimiter, to_nano
from oncofed.query import QueryError


@pytest.fixture
def store(tmp_path) -> Path:
    return init_node(tmp_path / "node", "centre-budget").store


def _charge_many(store: str, permit: str, n: int, eps: float, budget: float) -> tuple[int, int]:
    """Worker (thread or process): its own connection, n charge attempts; (granted, refused)."""
    db = dbmod.connect(Path(store))
    ledger = PrivacyLedger(db.conn)
    ok = no = 0
    for i in range(n):
        try:
            ledger.charge(permit, budget, eps, f"q-{threading.get_ident()}-{i}")
            ok += 1
        except QueryError as exc:
            if exc.code != "RESOURCE_EXHAUSTED":
                raise
            no += 1
    db.close()
    return ok, no


def _check(store: Path, permit: str, granted: int, eps: float, budget: float) -> None:
    with open_node(store.parent) as node:
        ledger = PrivacyLedger(node.conn)
        assert ledger.check_consistent()
        assert granted == to_nano(budget, round_up=False) // to_nano(eps, round_up=True)
        assert ledger.spent(permit) == pytest.approx(granted * eps)
        assert ledger.spent(permit) <= budget


def test_ledger_never_overspends_under_concurrent_threads(store):
    results: list[tuple[int, int]] = []
    threads = [threading.Thread(target=lambda: results.append(_charge_many(str(store), "p1", 15, 0.1, 5.0)))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    granted = sum(r[0] for r in results)
    assert granted == 50 and sum(r[1] for r in results) == 8 * 15 - 50
    _check(store, "p1", granted, 0.1, 5.0)


def test_ledger_never_overspends_under_concurrent_processes(store):
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(3) as pool:
        results = pool.starmap(_charge_many, [(str(store), "p2", 12, 0.25, 7.3)] * 3)
    granted = sum(r[0] for r in results)
    assert granted == 29          # ⌊7.3 / 0.25⌋
    _check(store, "p2", granted, 0.25, 7.3)


def test_refused_charge_changes_nothing_and_budgets_only_shrink(store):
    with open_node(store.parent) as node:
        ledger = PrivacyLedger(node.conn)
        c = ledger.charge("p3", 1.0, 0.4, "a")
        assert (c.spent, c.remaining) == pytest.approx((0.4, 0.6))
        with pytest.raises(QueryError, match="budget"):
            ledger.charge("p3", 1.0, 0.7, "b")
        assert ledger.spent("p3") == pytest.approx(0.4)
        with pytest.raises(QueryError):
            ledger.charge("p3", 5.0, 0.7, "c")         # a larger budget later does not widen the stored one
        with pytest.raises(QueryError):
            ledger.charge("p3", 0.3, 0.01, "d")        # a smaller one shrinks it, never below what was spent
        n = node.conn.execute("SELECT count(*) FROM query_privacy_charges WHERE permit_id = 'p3'").fetchone()[0]
        assert n == 1 and ledger.check_consistent()


def test_rate_limits_per_minute_and_per_day_per_researcher(store):
    with open_node(store.parent) as node:
        rl = RateLimiter(node.conn, per_minute=3, per_day=5)
        for t in (0, 1, 2):
            rl.admit("alice", now=1_000_000 + t)
        with pytest.raises(QueryError, match="per minute") as exc:
            rl.admit("alice", now=1_000_010)
        assert exc.value.code == "RESOURCE_EXHAUSTED"
        rl.admit("bob", now=1_000_010)                 # counted per researcher
        rl.admit("alice", now=1_000_070)
        rl.admit("alice", now=1_000_140)
        with pytest.raises(QueryError, match="per day"):
            rl.admit("alice", now=1_000_300)
        rl.admit("alice", now=1_000_000 + 86_401)      # a day later the window has moved on
