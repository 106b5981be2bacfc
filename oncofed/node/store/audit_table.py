"""The tables behind the audit log (oncofed.node.audit chains, signs and checks; this only
stores and reads rows).

Triggers make both tables append-only for every ordinary writer; they stop mistakes, not an
attacker who can drop them — the hash chain and the signed checkpoints are for that. Writes take
the caller's connection inside its IMMEDIATE transaction, so reading the last entry and
appending the next cannot interleave with another writer.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping
from typing import Any

#: The columns of an entry row, in table order.
ENTRY_COLUMNS = ("seq", "at_ms", "event", "who", "permit_hash", "query_hash", "analysis", "fields",
                 "decision", "reason", "cells_suppressed", "cells_perturbed", "epsilon_spent",
                 "detail", "prev_hash", "entry_hash")


def migration_1(conn: sqlite3.Connection) -> None:
    conn.execute("""CREATE TABLE audit_log (
        seq INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, event TEXT NOT NULL, who TEXT NOT NULL,
        permit_hash TEXT NOT NULL, query_hash TEXT NOT NULL, analysis TEXT NOT NULL,
        fields TEXT NOT NULL, decision TEXT NOT NULL, reason TEXT NOT NULL,
        cells_suppressed INTEGER NOT NULL, cells_perturbed INTEGER NOT NULL,
        epsilon_spent REAL NOT NULL, detail TEXT NOT NULL,
        prev_hash TEXT NOT NULL, entry_hash TEXT NOT NULL)""")
    conn.execute("CREATE INDEX audit_log_by_query ON audit_log (query_hash)")
    conn.execute("""CREATE TABLE audit_checkpoints (
        id INTEGER PRIMARY KEY, seq INTEGER NOT NULL, entry_hash TEXT NOT NULL,
        at_ms INTEGER NOT NULL, signer_key_id TEXT NOT NULL, envelope BLOB NOT NULL)""")
    for table in ("audit_log", "audit_checkpoints"):
        for op in ("UPDATE", "DELETE"):
            conn.execute(f"CREATE TRIGGER {table}_no_{op.lower()} BEFORE {op} ON {table} "
                         "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END")


def _rows(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...] = ()) -> Iterator[dict[str, Any]]:
    cur = conn.execute(sql, params)
    names = [d[0] for d in cur.description]
    for values in cur:
        yield dict(zip(names, values, strict=True))


# --- entries ----------------------------------------------------------------------------------
def last_entry(conn: sqlite3.Connection) -> tuple[int, str, str] | None:
    """(seq, entry_hash, event) of the newest entry, or None for an empty log."""
    row = conn.execute("SELECT seq, entry_hash, event FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
    return (row[0], row[1], row[2]) if row else None


def append_entry(conn: sqlite3.Connection, row: Mapping[str, Any]) -> None:
    """Insert one complete entry (every `ENTRY_COLUMNS` key, hashes already computed)."""
    conn.execute(f"INSERT INTO audit_log ({', '.join(ENTRY_COLUMNS)}) "
                 f"VALUES ({', '.join('?' * len(ENTRY_COLUMNS))})", [row[c] for c in ENTRY_COLUMNS])


def entry_rows(conn: sqlite3.Connection) -> Iterator[dict[str, Any]]:
    """Every entry as stored, in sequence order; the query runs when iteration starts."""
    return _rows(conn, "SELECT * FROM audit_log ORDER BY seq")


def newest_entry_rows(conn: sqlite3.Connection, *, limit: int | None = None,
                      query_hash: str | None = None) -> list[dict[str, Any]]:
    """The newest `limit` entries (all when None), of one query when `query_hash`, oldest first."""
    where, params = ("WHERE query_hash = ?", (query_hash,)) if query_hash else ("", ())
    sql = f"SELECT * FROM audit_log {where} ORDER BY seq DESC"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return list(_rows(conn, sql, params))[::-1]


# --- checkpoints ------------------------------------------------------------------------------
def last_checkpointed_seq(conn: sqlite3.Connection) -> int:
    """The newest entry a checkpoint covers (0 when none does)."""
    return int(conn.execute("SELECT max(seq) FROM audit_checkpoints").fetchone()[0] or 0)


def next_checkpoint_id(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT max(id) FROM audit_checkpoints").fetchone()[0] or 0) + 1


def append_checkpoint(conn: sqlite3.Connection, *, checkpoint_id: int, seq: int, entry_hash: str,
                      at_ms: int, signer_key_id: str, envelope: bytes) -> None:
    conn.execute("INSERT INTO audit_checkpoints (id, seq, entry_hash, at_ms, signer_key_id, envelope) "
                 "VALUES (?, ?, ?, ?, ?, ?)", (checkpoint_id, seq, entry_hash, at_ms, signer_key_id, envelope))


def checkpoint_rows(conn: sqlite3.Connection) -> Iterator[dict[str, Any]]:
    """Every checkpoint as stored, by id; the query runs when iteration starts."""
    return _rows(conn, "SELECT * FROM audit_checkpoints ORDER BY id")


def counts(conn: sqlite3.Connection) -> tuple[int, int]:
    """(entries, checkpoints) as stored, whatever their contents."""
    entries = conn.execute("SELECT count(*) FROM audit_log").fetchone()[0]
    checkpoints = conn.execute("SELECT count(*) FROM audit_checkpoints").fetchone()[0]
    return int(entries), int(checkpoints)
