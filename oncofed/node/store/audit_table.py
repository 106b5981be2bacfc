"""The tables behind the audit log (oncofed.node.audit chains, signs and checks; this only
stores and reads rows).

`audit_log` holds the entries, `audit_checkpoints` the signed checkpoints, and `audit_head` one
row: the newest entry the node wrote (seq, hash), moved forward in the same transaction as every
append, and whether the node keeps a head journal file. It is the log's length recorded a second
time, so deleting the tail (or every row) of `audit_log` no longer leaves a log that looks whole.

Triggers make the log tables append-only and the head forward-only for every ordinary writer;
they stop mistakes, not an attacker who can drop them — the hash chain, the signed checkpoints
and heads kept outside the store are for that. Writes take the caller's connection inside its
IMMEDIATE transaction, so reading the last entry and appending the next cannot interleave with
another writer.
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


def migration_2(conn: sqlite3.Connection) -> None:
    """The recorded head, starting from the newest entry a store made before it already holds."""
    conn.execute("""CREATE TABLE audit_head (
        id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL, entry_hash TEXT NOT NULL,
        journaled INTEGER NOT NULL DEFAULT 0)""")
    last = last_entry(conn)
    conn.execute("INSERT INTO audit_head (id, seq, entry_hash) VALUES (1, ?, ?)",
                 (last[0], last[1]) if last else (0, "0" * 64))
    conn.execute("CREATE TRIGGER audit_head_no_delete BEFORE DELETE ON audit_head "
                 "BEGIN SELECT RAISE(ABORT, 'the audit head only moves forward'); END")
    conn.execute("CREATE TRIGGER audit_head_forward BEFORE UPDATE ON audit_head WHEN "
                 "NEW.seq < OLD.seq OR (NEW.seq = OLD.seq AND NEW.entry_hash != OLD.entry_hash) "
                 "OR NEW.journaled < OLD.journaled "
                 "BEGIN SELECT RAISE(ABORT, 'the audit head only moves forward'); END")


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


# --- the recorded head ------------------------------------------------------------------------
def advance_head(conn: sqlite3.Connection, seq: int, entry_hash: str) -> None:
    """Record entry `seq` as the newest (inside the transaction that appended it)."""
    conn.execute("UPDATE audit_head SET seq = ?, entry_hash = ? WHERE id = 1", (seq, entry_hash))


def mark_journaled(conn: sqlite3.Connection) -> None:
    """Record that this node keeps a head journal, so a journal that disappears is noticed."""
    conn.execute("UPDATE audit_head SET journaled = 1 WHERE id = 1 AND journaled = 0")


def recorded_head(conn: sqlite3.Connection) -> tuple[int, str, bool] | None:
    """(seq, entry_hash, journaled) as recorded, or None when the row or its table is gone."""
    exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                          "AND name = 'audit_head'").fetchone()
    if exists is None:
        return None
    row = conn.execute("SELECT seq, entry_hash, journaled FROM audit_head WHERE id = 1").fetchone()
    return (int(row[0]), str(row[1]), bool(row[2])) if row else None


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
