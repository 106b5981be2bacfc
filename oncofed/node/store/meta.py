"""The store's own bookkeeping: node identity, dictionary identity and the ingest log."""

from __future__ import annotations

import sqlite3
from typing import Any


def migration_1(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE node_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute(
        """CREATE TABLE ingests (
            ingest_id INTEGER PRIMARY KEY,
            file_name TEXT NOT NULL,
            file_sha256 TEXT NOT NULL,
            rows INTEGER NOT NULL,
            inserted INTEGER NOT NULL,
            updated INTEGER NOT NULL,
            unchanged INTEGER NOT NULL,
            started_at TEXT NOT NULL,
            finished_at TEXT NOT NULL,
            seconds REAL NOT NULL
        )"""
    )


INGEST_COLUMNS = (
    "ingest_id", "file_name", "file_sha256", "rows", "inserted", "updated", "unchanged",
    "started_at", "finished_at", "seconds",
)


def set_meta(conn: sqlite3.Connection, values: dict[str, str]) -> None:
    conn.executemany(
        "INSERT INTO node_meta (key, value) VALUES (?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        sorted(values.items()),
    )


def get_meta(conn: sqlite3.Connection) -> dict[str, str]:
    return dict(conn.execute("SELECT key, value FROM node_meta").fetchall())


def record_ingest(conn: sqlite3.Connection, summary: dict[str, Any]) -> int:
    cols = [c for c in INGEST_COLUMNS if c != "ingest_id"]
    cur = conn.execute(
        f"INSERT INTO ingests ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
        [summary[c] for c in cols],
    )
    return int(cur.lastrowid or 0)


def last_ingest(conn: sqlite3.Connection) -> dict[str, Any] | None:
    row = conn.execute(
        f"SELECT {', '.join(INGEST_COLUMNS)} FROM ingests ORDER BY ingest_id DESC LIMIT 1"
    ).fetchone()
    return dict(zip(INGEST_COLUMNS, row, strict=True)) if row else None


def counts(conn: sqlite3.Connection) -> tuple[int, int]:
    """(tumours, distinct patients) in the store."""
    tumours = conn.execute("SELECT count(*) FROM tumours").fetchone()[0]
    patients = conn.execute("SELECT count(DISTINCT patient_pid) FROM tumours").fetchone()[0]
    return int(tumours), int(patients)
