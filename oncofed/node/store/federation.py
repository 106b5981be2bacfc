"""What a node keeps of its federated queries so a restart loses nothing it accepted and a resent
answer is byte-identical (DESIGN §4 "Persist across restarts", §7).

- `fed_pending`: a query this node accepted and has not answered yet — the verified envelope,
  its accept, and the ephemeral mask secret (deleted with the row once the answer is recorded);
- `fed_answers`: every sealed answer sent, keyed by (query hash, round, H(S)), written with the
  store's synchronous=FULL *before* the answer leaves, so a resend is the stored bytes;
- `fed_declines`: the signed decline of a query, resent as it was.
"""

from __future__ import annotations

import sqlite3


def migration_1(conn: sqlite3.Connection) -> None:
    conn.execute("""CREATE TABLE fed_pending (
        query_hash BLOB PRIMARY KEY, envelope BLOB NOT NULL, accept BLOB NOT NULL, mask_secret BLOB,
        expires_at INTEGER NOT NULL, accepted_at INTEGER NOT NULL)""")
    conn.execute("""CREATE TABLE fed_answers (
        query_hash BLOB NOT NULL, round INTEGER NOT NULL, participants_digest BLOB NOT NULL,
        sealed BLOB NOT NULL, answered_at INTEGER NOT NULL,
        PRIMARY KEY (query_hash, round, participants_digest))""")
    conn.execute("""CREATE TABLE fed_declines (
        query_hash BLOB PRIMARY KEY, decline BLOB NOT NULL, declined_at INTEGER NOT NULL)""")


def pending(conn: sqlite3.Connection, query_hash: bytes) -> tuple[bytes, bytes, bytes | None] | None:
    """(envelope, accept, mask secret) of an accepted, unanswered query, or None."""
    row = conn.execute("SELECT envelope, accept, mask_secret FROM fed_pending WHERE query_hash = ?",
                       (query_hash,)).fetchone()
    return (bytes(row[0]), bytes(row[1]), bytes(row[2]) if row[2] is not None else None) if row else None


def add_pending(conn: sqlite3.Connection, query_hash: bytes, envelope: bytes, accept: bytes, mask_secret: bytes,
                expires_at: int, at: int) -> None:
    conn.execute("INSERT INTO fed_pending (query_hash, envelope, accept, mask_secret, expires_at, accepted_at) "
                 "VALUES (?, ?, ?, ?, ?, ?)", (query_hash, envelope, accept, mask_secret, expires_at, at))


def answers_of(conn: sqlite3.Connection, query_hash: bytes) -> list[tuple[int, bytes, bytes]]:
    """Every answer sent for a query: (round, H(S), sealed bytes)."""
    rows = conn.execute("SELECT round, participants_digest, sealed FROM fed_answers WHERE query_hash = ?",
                        (query_hash,)).fetchall()
    return [(int(r), bytes(d), bytes(s)) for r, d, s in rows]


def record_answer(conn: sqlite3.Connection, query_hash: bytes, round_: int, digest: bytes, sealed: bytes,
                  at: int) -> None:
    """Keep the sealed answer and forget the mask secret, in one transaction (the caller's)."""
    conn.execute("INSERT INTO fed_answers (query_hash, round, participants_digest, sealed, answered_at) "
                 "VALUES (?, ?, ?, ?, ?)", (query_hash, round_, digest, sealed, at))
    conn.execute("UPDATE fed_pending SET mask_secret = NULL WHERE query_hash = ?", (query_hash,))


def decline_of(conn: sqlite3.Connection, query_hash: bytes) -> bytes | None:
    row = conn.execute("SELECT decline FROM fed_declines WHERE query_hash = ?", (query_hash,)).fetchone()
    return bytes(row[0]) if row else None


def record_decline(conn: sqlite3.Connection, query_hash: bytes, decline: bytes, at: int) -> None:
    conn.execute("INSERT OR IGNORE INTO fed_declines (query_hash, decline, declined_at) VALUES (?, ?, ?)",
                 (query_hash, decline, at))


def prune(conn: sqlite3.Connection, before: int) -> int:
    """Forget pending queries (and their secrets) that expired before `before`."""
    return conn.execute("DELETE FROM fed_pending WHERE expires_at < ?", (before,)).rowcount
