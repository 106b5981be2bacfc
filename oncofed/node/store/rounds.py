"""The rounds a centre answered of each iterative fit, so it can cap them (DESIGN §5).

A regression round at new coefficients tells the researcher more about the centre's rows; the
centre answers at most `max_rounds` (default 25) *distinct* coefficient vectors per fit and
permit. The same β asked again costs nothing (the same rows give the same answer), so re-running
a deterministic fit from the start is free. A fit is its model without coefficients and round,
together with its cohort, so two fits of the same model on different cohorts count separately.
Checked and recorded in one `BEGIN IMMEDIATE` transaction, like the rate limits.
"""

from __future__ import annotations

import sqlite3
import time

from oncofed.node.store import db as dbmod
from oncofed.query.errors import QueryError


def migration_1(conn: sqlite3.Connection) -> None:
    conn.execute("""CREATE TABLE model_rounds (
        scope TEXT NOT NULL,
        fit BLOB NOT NULL,
        beta BLOB NOT NULL,
        round INTEGER NOT NULL,
        answered_at INTEGER NOT NULL,
        PRIMARY KEY (scope, fit, beta))""")


def _refusal(cap: int) -> QueryError:
    return QueryError("RESOURCE_EXHAUSTED", f"this centre answers at most {cap} rounds (distinct coefficients) "
                      "of one model fit", "analysis", reason="round_cap")


class RoundLedger:
    """Distinct coefficient vectors answered per (scope, fit)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def _state(self, conn: sqlite3.Connection, scope: str, fit: bytes, beta: bytes) -> tuple[bool, int]:
        seen = conn.execute("SELECT 1 FROM model_rounds WHERE scope = ? AND fit = ? AND beta = ?",
                            (scope, fit, beta)).fetchone() is not None
        used = conn.execute("SELECT count(*) FROM model_rounds WHERE scope = ? AND fit = ?", (scope, fit)).fetchone()[0]
        return seen, int(used)

    def check(self, scope: str, fit: bytes, beta: bytes, cap: int) -> None:
        """Refuse (round_cap) when this β would be one more than the cap; records nothing."""
        seen, used = self._state(self.conn, scope, fit, beta)
        if not seen and used >= cap:
            raise _refusal(cap)

    def admit(self, scope: str, fit: bytes, beta: bytes, round_no: int, cap: int, now: int | None = None) -> int:
        """Record this β for the fit (once), or refuse; returns the distinct rounds answered."""
        with dbmod.immediate(self.conn) as conn:
            seen, used = self._state(conn, scope, fit, beta)
            if seen:
                return used
            if used >= cap:
                raise _refusal(cap)
            conn.execute("INSERT INTO model_rounds (scope, fit, beta, round, answered_at) VALUES (?, ?, ?, ?, ?)",
                         (scope, fit, beta, round_no, int(now if now is not None else time.time())))
        return used + 1
