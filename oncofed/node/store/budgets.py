"""Durable query budgets in the node's store: request rates per researcher and ε per permit.

Both are checked and charged in one `BEGIN IMMEDIATE` transaction (SQLite's write lock), so two
queries racing — threads or processes on the same store file — cannot both pass a check that
only one of them should: the second waits, then sees the first one's charge. The store runs with
synchronous=FULL, so a charge that was committed survives power loss; ε is charged BEFORE the
answer is computed, so a crash after the charge can only waste budget, never release unpaid.

ε is kept in whole nano-ε (10^-9) as integers: sums of floats drift, and a ledger must add up.
Charges round up and budgets round down, and CHECK constraints make the database itself refuse
a ledger that would go negative.
"""

from __future__ import annotations

import math
import sqlite3
import time
from dataclasses import dataclass
from fractions import Fraction

from oncofed.node.store import db as dbmod
from oncofed.query.errors import QueryError

NANO = 10**9
MINUTE, DAY = 60, 86_400


def migration_1(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE query_rate_events (researcher TEXT NOT NULL, at INTEGER NOT NULL)")
    conn.execute("CREATE INDEX query_rate_events_by_researcher ON query_rate_events (researcher, at)")
    conn.execute("""CREATE TABLE query_privacy_budgets (
        permit_id TEXT PRIMARY KEY,
        budget_nano INTEGER NOT NULL CHECK (budget_nano >= 0),
        spent_nano INTEGER NOT NULL DEFAULT 0 CHECK (spent_nano >= 0 AND spent_nano <= budget_nano))""")
    conn.execute("""CREATE TABLE query_privacy_charges (
        charge_id INTEGER PRIMARY KEY,
        permit_id TEXT NOT NULL REFERENCES query_privacy_budgets (permit_id),
        query_id TEXT NOT NULL,
        epsilon_nano INTEGER NOT NULL CHECK (epsilon_nano > 0),
        charged_at INTEGER NOT NULL)""")


def to_nano(epsilon: float, *, round_up: bool) -> int:
    """ε as whole nano-ε from the float's shortest decimal form (0.1 is 10^8 nano-ε, not a hair more);
    charges round up, budgets down."""
    exact = Fraction(repr(float(epsilon))) * NANO
    return math.ceil(exact) if round_up else math.floor(exact)


@dataclass(frozen=True)
class Charge:
    """One ε charge as recorded: what was spent and what is left of the permit's budget."""

    permit_id: str
    epsilon: float
    spent: float
    remaining: float


class PrivacyLedger:
    """The ε spent per permit at this node (a permit's budget is per centre: DESIGN §4)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def charge(self, permit_id: str, budget: float, epsilon: float, query_id: str,
               now: int | None = None) -> Charge:
        """Spend `epsilon` of the permit's `budget`, or refuse (RESOURCE_EXHAUSTED) untouched."""
        cost = to_nano(epsilon, round_up=True)
        if cost <= 0:
            raise QueryError("INVALID_ARGUMENT", "a differentially private query must spend ε > 0", "epsilon")
        cap = to_nano(budget, round_up=False)
        with dbmod.immediate(self.conn) as conn:
            conn.execute("INSERT INTO query_privacy_budgets (permit_id, budget_nano) VALUES (?, ?) "
                         "ON CONFLICT(permit_id) DO UPDATE SET "
                         "budget_nano = MAX(spent_nano, MIN(budget_nano, excluded.budget_nano))", (permit_id, cap))
            budget_nano, spent = conn.execute(
                "SELECT budget_nano, spent_nano FROM query_privacy_budgets WHERE permit_id = ?", (permit_id,)
            ).fetchone()
            if spent + cost > budget_nano:
                raise QueryError("RESOURCE_EXHAUSTED", "the permit's privacy budget at this centre is spent",
                                 reason="budget_exhausted")
            conn.execute("UPDATE query_privacy_budgets SET spent_nano = spent_nano + ? WHERE permit_id = ?",
                         (cost, permit_id))
            at = int(now if now is not None else time.time())
            conn.execute("INSERT INTO query_privacy_charges (permit_id, query_id, epsilon_nano, charged_at) "
                         "VALUES (?, ?, ?, ?)", (permit_id, query_id, cost, at))
        return Charge(permit_id, cost / NANO, (spent + cost) / NANO, (budget_nano - spent - cost) / NANO)

    def spent(self, permit_id: str) -> float:
        row = self.conn.execute("SELECT spent_nano FROM query_privacy_budgets WHERE permit_id = ?",
                                (permit_id,)).fetchone()
        return row[0] / NANO if row else 0.0

    def check_consistent(self) -> bool:
        """Every permit's spent total equals the sum of its charges and stays within budget."""
        rows = self.conn.execute(
            "SELECT b.budget_nano, b.spent_nano, COALESCE((SELECT SUM(epsilon_nano) FROM query_privacy_charges c "
            "WHERE c.permit_id = b.permit_id), 0) FROM query_privacy_budgets b").fetchall()
        return all(0 <= spent == charged <= budget for budget, spent, charged in rows)


class RateLimiter:
    """Queries per researcher per minute and per day, counted in the store (survives restarts)."""

    def __init__(self, conn: sqlite3.Connection, per_minute: int, per_day: int) -> None:
        self.conn = conn
        self.per_minute = per_minute
        self.per_day = per_day

    def admit(self, researcher: str, now: int | None = None) -> None:
        """Record one query by `researcher`, or refuse (RESOURCE_EXHAUSTED) without recording."""
        at = int(now if now is not None else time.time())
        with dbmod.immediate_unsynced(self.conn) as conn:   # a soft limit: see immediate_unsynced
            conn.execute("DELETE FROM query_rate_events WHERE at <= ?", (at - DAY,))
            minute, day = conn.execute(
                "SELECT COALESCE(SUM(at > ?), 0), COUNT(*) FROM query_rate_events WHERE researcher = ? AND at > ?",
                (at - MINUTE, researcher, at - DAY)).fetchone()
            if minute >= self.per_minute:
                raise QueryError("RESOURCE_EXHAUSTED", f"rate limit: at most {self.per_minute} queries per minute",
                                 reason="rate_limited")
            if day >= self.per_day:
                raise QueryError("RESOURCE_EXHAUSTED", f"rate limit: at most {self.per_day} queries per day",
                                 reason="rate_limited")
            conn.execute("INSERT INTO query_rate_events (researcher, at) VALUES (?, ?)", (researcher, at))
