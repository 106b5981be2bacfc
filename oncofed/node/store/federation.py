"""What a node keeps of its federated queries so a restart loses nothing it accepted and a resent
answer is byte-identical (DESIGN §4 "Persist across restarts", §7).

- `fed_pending`: a query this node accepted and has not answered yet — the verified envelope,
  its accept, and the ephemeral mask secret (deleted with the row once the answer is recorded);
- `fed_answers`: every sealed answer sent, keyed by (query hash, round, H(S)), written with the
  store's synchronous=FULL *before* the answer leaves, so a resend is the stored bytes;
- `fed_declines`: the signed decline of a query, resent as it was;
- `fed_abstentions`: this centre's signed abstentions from failed queries (decision D26). An
  invariant of the store, held by triggers: a query has an abstention or released answers — on
  the query plane (`fed_answers`) or as a Flower run's rounds (`flower_answers`, D28) — never
  both. `abstain` checks and records in one IMMEDIATE transaction committed with
  synchronous=FULL before the abstention leaves; from then on `record_answer` for that query
  aborts, whatever path the connector took to it;
- `fed_evidence`: other centres' abstentions this node verified against the registry when a
  retry presented them; the release ledger reads them (and keeps using them for later retries).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Collection

from oncofed.errors import OncofedError
from oncofed.node.store.db import immediate


class AlreadyReleased(OncofedError):
    """This centre released an answer to the query: it cannot abstain from it."""


class Abstained(OncofedError):
    """This centre abstained from the query: it never releases an answer to it."""



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


def migration_2(conn: sqlite3.Connection) -> None:
    conn.execute("""CREATE TABLE fed_abstentions (
        query_hash BLOB PRIMARY KEY, abstention BLOB NOT NULL, abstained_at INTEGER NOT NULL)""")
    conn.execute("""CREATE TRIGGER fed_no_answer_after_abstention BEFORE INSERT ON fed_answers
        WHEN EXISTS (SELECT 1 FROM fed_abstentions WHERE query_hash = NEW.query_hash)
        BEGIN SELECT RAISE(ABORT, 'oncofed: this centre abstained from the query'); END""")
    conn.execute("""CREATE TRIGGER fed_no_abstention_after_answer BEFORE INSERT ON fed_abstentions
        WHEN EXISTS (SELECT 1 FROM fed_answers WHERE query_hash = NEW.query_hash)
        BEGIN SELECT RAISE(ABORT, 'oncofed: this centre answered the query'); END""")
    conn.execute("""CREATE TABLE fed_evidence (
        query_hash BLOB NOT NULL, centre TEXT NOT NULL, abstention BLOB NOT NULL, received_at INTEGER NOT NULL,
        PRIMARY KEY (query_hash, centre))""")


def migration_3(conn: sqlite3.Connection) -> None:
    """No abstention from a Flower run once a round of it was answered (D28; flower_runs
    .migration_2 holds the other direction). `flower_answers` is named only in the body."""
    conn.execute("""CREATE TRIGGER fed_no_abstention_after_round BEFORE INSERT ON fed_abstentions
        WHEN EXISTS (SELECT 1 FROM flower_answers WHERE query_hash = NEW.query_hash)
        BEGIN SELECT RAISE(ABORT, 'oncofed: this centre answered a round of the run'); END""")


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
    """Keep the sealed answer and forget the mask secret, in one transaction (the caller's).
    Abstained when this centre abstained from the query (the store's trigger refuses the row)."""
    if abstention_of(conn, query_hash) is not None:
        raise Abstained("this centre abstained from the query")
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


def abstention_of(conn: sqlite3.Connection, query_hash: bytes) -> bytes | None:
    """This centre's signed abstention from the query, if it gave one."""
    row = conn.execute("SELECT abstention FROM fed_abstentions WHERE query_hash = ?", (query_hash,)).fetchone()
    return bytes(row[0]) if row else None


def abstain(conn: sqlite3.Connection, query_hash: bytes, sign: Callable[[], bytes], at: int) -> bytes:
    """This centre's abstention from `query_hash`, signed by `sign` only when no answer to it was
    released (on the query plane or, for a Flower run, in any round), and recorded durably
    (IMMEDIATE, synchronous=FULL) before it is returned: from then on no answer to it is
    recorded, so none can leave. The mask secret of the query is forgotten
    too, so the failed set's sum cannot be completed even from this store. Asked again, the same
    signed bytes. AlreadyReleased when an answer was recorded (under any participant set)."""
    with immediate(conn):
        earlier = abstention_of(conn, query_hash)
        if earlier is not None:
            return earlier
        # A Flower run's rounds are releases of its query hash too (D28): a centre that answered
        # one never abstains from the run, whatever plane a retry of it comes on.
        if conn.execute("SELECT EXISTS (SELECT 1 FROM fed_answers WHERE query_hash = ?) OR "
                        "EXISTS (SELECT 1 FROM flower_answers WHERE query_hash = ?)",
                        (query_hash, query_hash)).fetchone()[0]:
            raise AlreadyReleased("this centre released an answer to the query")
        signed = sign()
        conn.execute("INSERT INTO fed_abstentions (query_hash, abstention, abstained_at) VALUES (?, ?, ?)",
                     (query_hash, signed, at))
        conn.execute("UPDATE fed_pending SET mask_secret = NULL WHERE query_hash = ?", (query_hash,))
    return signed


def add_evidence(conn: sqlite3.Connection, query_hash: bytes, centre: str, abstention: bytes, at: int) -> None:
    """Keep another centre's abstention, verified by the caller against the registry."""
    conn.execute("INSERT OR IGNORE INTO fed_evidence (query_hash, centre, abstention, received_at) "
                 "VALUES (?, ?, ?, ?)", (query_hash, centre, abstention, at))


def abstained(conn: sqlite3.Connection, query_hashes: Collection[str]) -> set[tuple[str, str]]:
    """(query hash hex, centre) of every verified abstention kept from the given queries."""
    out: set[tuple[str, str]] = set()
    for qh in sorted(set(query_hashes)):
        try:
            raw = bytes.fromhex(qh)
        except ValueError:                           # not a query hash: nobody abstained from it
            continue
        for (centre,) in conn.execute("SELECT centre FROM fed_evidence WHERE query_hash = ?", (raw,)):
            out.add((qh, str(centre)))
    return out
