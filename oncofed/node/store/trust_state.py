"""The tables behind a node's trust state (oncofed.node.trust decides; this only stores).

Documents and permits are kept as the exact signed bytes, so the trust layer re-verifies them on
every read instead of believing the columns copied out of them; those columns exist to find and
order rows. Writes take the caller's connection, which is inside the caller's IMMEDIATE
transaction when a check and its write must not race.
"""

from __future__ import annotations

import sqlite3
from typing import NamedTuple


def migration_1(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE trust_root (id INTEGER PRIMARY KEY CHECK (id = 1), "
                 "fingerprint TEXT NOT NULL, cert_pem BLOB NOT NULL, pinned_at INTEGER NOT NULL)")
    conn.execute("""CREATE TABLE trust_documents (
        kind TEXT NOT NULL CHECK (kind IN ('registry', 'revocations')),
        version INTEGER NOT NULL, sha256 TEXT NOT NULL, data BLOB NOT NULL,
        issued_at INTEGER NOT NULL, next_update INTEGER NOT NULL, accepted_at INTEGER NOT NULL,
        PRIMARY KEY (kind, version))""")
    conn.execute("""CREATE TABLE trust_permits (
        sha256 TEXT PRIMARY KEY, permit_id TEXT NOT NULL, data BLOB NOT NULL,
        researcher_id TEXT NOT NULL, project_title TEXT NOT NULL,
        not_before INTEGER NOT NULL, not_after INTEGER NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'refused', 'revoked')),
        added_at INTEGER NOT NULL, decided_at INTEGER, decided_by TEXT, reason TEXT)""")
    conn.execute("CREATE INDEX trust_permits_by_id ON trust_permits (permit_id)")


def migration_2(conn: sqlite3.Connection) -> None:
    """A counter that every change to the trust tables bumps — by triggers, so a write by any
    process or tool counts (an admin's `permits revoke` in another process, a restore by hand) —
    which the node's in-memory view of its verified trust state is keyed by (NodeTrust)."""
    conn.execute("CREATE TABLE trust_version (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)")
    conn.execute("INSERT INTO trust_version (id, version) VALUES (1, 0)")
    for table in _TRUST_TABLES:
        for op in ("INSERT", "UPDATE", "DELETE"):
            conn.execute(f"CREATE TRIGGER {table}_{op.lower()}_counted AFTER {op} ON {table} "
                         "BEGIN UPDATE trust_version SET version = version + 1; END")


_TRUST_TABLES = ("trust_root", "trust_documents", "trust_permits")


def trust_version(conn: sqlite3.Connection) -> int:
    """The trust tables' change counter (migration_2); −1 when its row is missing."""
    row = conn.execute("SELECT version FROM trust_version WHERE id = 1").fetchone()
    return int(row[0]) if row else -1


# --- the root ---------------------------------------------------------------------------------
def pin_root(conn: sqlite3.Connection, fingerprint: str, cert_pem: bytes, at: int) -> None:
    conn.execute("INSERT INTO trust_root (id, fingerprint, cert_pem, pinned_at) VALUES (1, ?, ?, ?)",
                 (fingerprint, cert_pem, at))


def root_fingerprint(conn: sqlite3.Connection) -> str | None:
    row = conn.execute("SELECT fingerprint FROM trust_root").fetchone()
    return row[0] if row else None


def root(conn: sqlite3.Connection) -> tuple[bytes, str] | None:
    """(certificate PEM, fingerprint) of the pinned root, or None before pinning."""
    row = conn.execute("SELECT cert_pem, fingerprint FROM trust_root").fetchone()
    return (bytes(row[0]), row[1]) if row else None


# --- registry and revocation list -------------------------------------------------------------
def document(conn: sqlite3.Connection, kind: str, offset: int = 0) -> bytes | None:
    """The signed bytes of the newest accepted document of `kind` (offset=1: the one before)."""
    row = conn.execute("SELECT data FROM trust_documents WHERE kind = ? "
                       "ORDER BY version DESC LIMIT 1 OFFSET ?", (kind, offset)).fetchone()
    return bytes(row[0]) if row else None


def newest_version(conn: sqlite3.Connection, kind: str) -> tuple[int, str] | None:
    """(version, sha256) of the newest accepted document of `kind`."""
    row = conn.execute("SELECT version, sha256 FROM trust_documents WHERE kind = ? "
                       "ORDER BY version DESC LIMIT 1", (kind,)).fetchone()
    return (row[0], row[1]) if row else None


def add_document(conn: sqlite3.Connection, kind: str, *, version: int, sha256: str, data: bytes,
                 issued_at: int, next_update: int, at: int) -> None:
    conn.execute("INSERT INTO trust_documents (kind, version, sha256, data, issued_at, "
                 "next_update, accepted_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                 (kind, version, sha256, data, issued_at, next_update, at))


# --- permits ----------------------------------------------------------------------------------
class PermitRow(NamedTuple):
    """A permit as stored: its signed bytes and this centre's decision about it."""

    data: bytes
    status: str
    added_at: int
    decided_at: int | None
    decided_by: str | None
    reason: str | None


def permit_row(conn: sqlite3.Connection, sha256: str) -> PermitRow | None:
    row = conn.execute("SELECT data, status, added_at, decided_at, decided_by, reason "
                       "FROM trust_permits WHERE sha256 = ?", (sha256,)).fetchone()
    return PermitRow(bytes(row[0]), *row[1:]) if row else None


def permit_hashes(conn: sqlite3.Connection) -> list[str]:
    """Every known permit's hash, in the order they were added."""
    rows = conn.execute("SELECT sha256 FROM trust_permits ORDER BY added_at, permit_id")
    return [sha for (sha,) in rows.fetchall()]


def find_permits(conn: sqlite3.Connection, ref: str) -> list[str]:
    """Hashes of the permits `ref` names: a permit id, a full hash, or a prefix of ≥ 8 digits."""
    rows = conn.execute("SELECT sha256 FROM trust_permits WHERE permit_id = ? OR sha256 = ? "
                        "OR (length(?) >= 8 AND substr(sha256, 1, length(?)) = ?)",
                        (ref, ref, ref, ref, ref))
    return [sha for (sha,) in rows.fetchall()]


def add_pending_permit(conn: sqlite3.Connection, *, sha256: str, permit_id: str, data: bytes,
                       researcher_id: str, project_title: str, not_before: int, not_after: int,
                       at: int) -> None:
    """Record a permit as pending; a permit already known keeps its row and decision."""
    conn.execute("INSERT OR IGNORE INTO trust_permits (sha256, permit_id, data, researcher_id, "
                 "project_title, not_before, not_after, status, added_at) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?)",
                 (sha256, permit_id, data, researcher_id, project_title, not_before, not_after, at))


def decide_permit(conn: sqlite3.Connection, sha256: str, *, status: str, by: str,
                  reason: str | None, at: int) -> None:
    conn.execute("UPDATE trust_permits SET status = ?, decided_at = ?, decided_by = ?, reason = ? "
                 "WHERE sha256 = ?", (status, at, by, reason, sha256))


def revoke_permit(conn: sqlite3.Connection, *, sha256: str, permit_id: str, reason: str,
                  at: int) -> list[str]:
    """Mark revoked by the authority every permit with this hash or id not revoked already;
    return the hashes of the permits this changed (for their audit entries)."""
    where = "(sha256 = ? OR permit_id = ?) AND status != 'revoked'"
    changed = [sha for (sha,) in conn.execute(
        f"SELECT sha256 FROM trust_permits WHERE {where} ORDER BY sha256", (sha256, permit_id))]
    conn.execute(f"UPDATE trust_permits SET status = 'revoked', decided_at = ?, "
                 f"decided_by = 'authority', reason = ? WHERE {where}", (at, reason, sha256, permit_id))
    return changed
