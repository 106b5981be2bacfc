"""The nonces of queries this node has decided on, kept until the query could no longer be
accepted anyway (its expiry plus clock skew), so a copy replayed before then is recognised.

The primary key (signer, nonce) is what makes a replay lose a race: call `record_if_fresh` in the
same transaction as the decision's audit entry, and of two copies only one insert succeeds.
"""

from __future__ import annotations

import sqlite3


def migration_1(conn: sqlite3.Connection) -> None:
    conn.execute("""CREATE TABLE seen_nonces (
        signer TEXT NOT NULL, nonce BLOB NOT NULL, keep_until INTEGER NOT NULL,
        query_hash TEXT NOT NULL, seen_at INTEGER NOT NULL, PRIMARY KEY (signer, nonce))""")
    conn.execute("CREATE INDEX seen_nonces_by_expiry ON seen_nonces (keep_until)")


def record_if_fresh(conn: sqlite3.Connection, *, signer: str, nonce: bytes, keep_until: int,
                    query_hash: str, at: int) -> bool:
    """Remember `signer`'s `nonce`; False (nothing written) when it was seen before."""
    cur = conn.execute(
        "INSERT OR IGNORE INTO seen_nonces (signer, nonce, keep_until, query_hash, seen_at) "
        "VALUES (?, ?, ?, ?, ?)", (signer, nonce, keep_until, query_hash, at))
    return cur.rowcount == 1


def prune(conn: sqlite3.Connection, at: int) -> int:
    """Forget nonces kept until before `at`; return how many."""
    return conn.execute("DELETE FROM seen_nonces WHERE keep_until < ?", (at,)).rowcount


def query_hashes(conn: sqlite3.Connection) -> set[str]:
    """Query hashes of every nonce still kept. Each was recorded in the same transaction as an
    audit entry of that query, so the audit log must hold one for each (a cut log does not)."""
    exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                          "AND name = 'seen_nonces'").fetchone()
    if exists is None:
        return set()
    return {row[0] for row in conn.execute("SELECT query_hash FROM seen_nonces")}
