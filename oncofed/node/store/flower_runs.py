"""What a node keeps of its Flower runs (oncofed.node.federated, D25), so that a fresh ClientApp
process — one per message on Flower's deployment engine — or a restart loses nothing accepted,
masks no round twice and resends an answer byte for byte.

- `flower_runs`: a run this node accepted — the verified envelope, its signed accept, the run's
  mask secret, the highest round it may answer, and once round 1 is answered the participant set
  it is fixed to and the last round masked (the `RunMaskKey` is restored from these);
- `flower_answers`: every signed round answer sent, keyed by (query hash, round), with H(S),
  written with synchronous=FULL *before* the answer leaves, in the same transaction that moves
  `masked_through` up;
- `flower_declines`: the signed decline of a run, resent as it was.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass


def migration_1(conn: sqlite3.Connection) -> None:
    conn.execute("""CREATE TABLE flower_runs (
        query_hash BLOB PRIMARY KEY, envelope BLOB NOT NULL, accept BLOB NOT NULL, mask_secret BLOB,
        max_round INTEGER NOT NULL, participants_digest BLOB, masked_through INTEGER NOT NULL DEFAULT 0,
        expires_at INTEGER NOT NULL, accepted_at INTEGER NOT NULL)""")
    conn.execute("""CREATE TABLE flower_answers (
        query_hash BLOB NOT NULL, round INTEGER NOT NULL, participants_digest BLOB NOT NULL,
        answer BLOB NOT NULL, answered_at INTEGER NOT NULL,
        PRIMARY KEY (query_hash, round))""")
    conn.execute("""CREATE TABLE flower_declines (
        query_hash BLOB PRIMARY KEY, decline BLOB NOT NULL, declined_at INTEGER NOT NULL)""")


@dataclass(frozen=True)
class RunRecord:
    """One accepted run as stored."""

    envelope: bytes
    accept: bytes
    mask_secret: bytes | None
    max_round: int
    participants_digest: bytes | None
    masked_through: int
    expires_at: int


def migration_2(conn: sqlite3.Connection) -> None:
    """A run's rounds are releases of its query hash: no round answer after this centre abstained
    from it (D28; federation.migration_3 holds the other direction). The trigger names the
    federation component's table only in its body, so the components stay independent."""
    conn.execute("""CREATE TRIGGER flower_no_answer_after_abstention BEFORE INSERT ON flower_answers
        WHEN EXISTS (SELECT 1 FROM fed_abstentions WHERE query_hash = NEW.query_hash)
        BEGIN SELECT RAISE(ABORT, 'oncofed: this centre abstained from the run'); END""")


def run_of(conn: sqlite3.Connection, query_hash: bytes) -> RunRecord | None:
    row = conn.execute("SELECT envelope, accept, mask_secret, max_round, participants_digest, masked_through, "
                       "expires_at FROM flower_runs WHERE query_hash = ?", (query_hash,)).fetchone()
    if row is None:
        return None
    return RunRecord(bytes(row[0]), bytes(row[1]), None if row[2] is None else bytes(row[2]), int(row[3]),
                     None if row[4] is None else bytes(row[4]), int(row[5]), int(row[6]))


def add_run(conn: sqlite3.Connection, query_hash: bytes, envelope: bytes, accept: bytes, mask_secret: bytes,
            max_round: int, expires_at: int, at: int) -> None:
    conn.execute("INSERT INTO flower_runs (query_hash, envelope, accept, mask_secret, max_round, expires_at, "
                 "accepted_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                 (query_hash, envelope, accept, mask_secret, max_round, expires_at, at))


def answer_of(conn: sqlite3.Connection, query_hash: bytes, round_: int) -> tuple[bytes, bytes] | None:
    """(H(S), signed answer) of a round already answered, or None."""
    row = conn.execute("SELECT participants_digest, answer FROM flower_answers WHERE query_hash = ? AND round = ?",
                       (query_hash, round_)).fetchone()
    return None if row is None else (bytes(row[0]), bytes(row[1]))


def record_answer(conn: sqlite3.Connection, query_hash: bytes, round_: int, digest: bytes, answer: bytes,
                  at: int) -> None:
    """Keep the signed answer and move the run's last masked round up to it, fixing its S, in one
    transaction (the caller's, synchronous=FULL)."""
    conn.execute("INSERT INTO flower_answers (query_hash, round, participants_digest, answer, answered_at) "
                 "VALUES (?, ?, ?, ?, ?)", (query_hash, round_, digest, answer, at))
    conn.execute("UPDATE flower_runs SET masked_through = ?, participants_digest = ? WHERE query_hash = ?",
                 (round_, digest, query_hash))


def decline_of(conn: sqlite3.Connection, query_hash: bytes) -> bytes | None:
    row = conn.execute("SELECT decline FROM flower_declines WHERE query_hash = ?", (query_hash,)).fetchone()
    return None if row is None else bytes(row[0])


def record_decline(conn: sqlite3.Connection, query_hash: bytes, decline: bytes, at: int) -> None:
    conn.execute("INSERT OR IGNORE INTO flower_declines (query_hash, decline, declined_at) VALUES (?, ?, ?)",
                 (query_hash, decline, at))


def prune(conn: sqlite3.Connection, before: int) -> int:
    """Forget the mask secrets of runs that expired before `before` (the envelope can no longer
    verify, so no round of them can be answered); their answers stay, for the record."""
    return conn.execute("UPDATE flower_runs SET mask_secret = NULL WHERE expires_at < ? AND mask_secret IS NOT NULL",
                        (before,)).rowcount
