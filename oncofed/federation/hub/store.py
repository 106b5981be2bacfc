"""The hub's durable state: queries, per-centre tasks and replies, centres' last contact.

Everything is opaque bytes plus routing metadata (who asked, when, which centres, sizes,
timings): the hub stores and relays sealed queries and sealed answers it cannot read. SQLite in
WAL mode with synchronous=NORMAL: a queued task or a pushed answer survives a hub crash or
restart (DESIGN §7); a power loss may lose the last transactions, which costs a query, never a
release — each centre keeps its accepts and sealed answers with synchronous=FULL and resends them
byte for byte, and the researcher resubmits (decision D14: about 2 ms per commit saved, a dozen
commits per query). This module is the hub's one home of SQL (decision D14); every value is a bound
parameter.

A retry (decision D26) is a query with `retry_of`, the failed query it retries. Its abstain tasks
are filed under the *failed* query's hash, one per member of the failed set it leaves out, and
are delivered whatever that query's state (it is final); the signed abstentions are kept in the
failed query's progress rows, so every later retry of it can use them.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS queries (
        query_hash BLOB PRIMARY KEY, researcher TEXT NOT NULL, permit_hash BLOB NOT NULL,
        targets TEXT NOT NULL, min_participants INTEGER NOT NULL, created_ms INTEGER NOT NULL,
        expires_at INTEGER NOT NULL, prepare_until_ms INTEGER NOT NULL, state TEXT NOT NULL,
        error TEXT NOT NULL DEFAULT '', version INTEGER NOT NULL DEFAULT 1,
        participants TEXT NOT NULL DEFAULT '[]', sealed_bytes INTEGER NOT NULL DEFAULT 0,
        finished_ms INTEGER, answer_until_ms INTEGER, retry_of BLOB,
        failed_centres TEXT NOT NULL DEFAULT '[]', abstentions TEXT NOT NULL DEFAULT '[]')""",
    """CREATE TABLE IF NOT EXISTS tasks (
        query_hash BLOB NOT NULL, centre TEXT NOT NULL, kind INTEGER NOT NULL, payload BLOB NOT NULL,
        state TEXT NOT NULL, created_ms INTEGER NOT NULL, delivered_ms INTEGER,
        PRIMARY KEY (query_hash, centre, kind))""",
    "CREATE INDEX IF NOT EXISTS tasks_by_centre ON tasks (centre, state)",
    # A fixed participant set (every signed accept, ~0.5 kB each) and a retry's abstentions, apart
    # from the query's row: that row is rewritten on every reply (its version), and at 100
    # centres it carried 50 kB of accepts into each of a query's hundreds of rewrites and reads.
    """CREATE TABLE IF NOT EXISTS query_sets (
        query_hash BLOB PRIMARY KEY, participants TEXT NOT NULL DEFAULT '[]',
        abstentions TEXT NOT NULL DEFAULT '[]')""",
    """CREATE TABLE IF NOT EXISTS progress (
        query_hash BLOB NOT NULL, centre TEXT NOT NULL, state TEXT NOT NULL, coarse TEXT NOT NULL DEFAULT '',
        at_ms INTEGER NOT NULL, accept BLOB, decline BLOB, answer BLOB, failure BLOB, abstention BLOB,
        PRIMARY KEY (query_hash, centre))""",
    """CREATE TABLE IF NOT EXISTS centres (
        centre TEXT PRIMARY KEY, last_seen_ms INTEGER NOT NULL, audit_head BLOB, audit_seq INTEGER)""",
    # Two heads a centre signed for one entry of its log with different hashes: the head the hub
    # kept and the one that contradicted it, both kept for good (evidence; each rewrite once).
    """CREATE TABLE IF NOT EXISTS audit_conflicts (
        centre TEXT NOT NULL, seq INTEGER NOT NULL, second_hash BLOB NOT NULL, first_head BLOB NOT NULL,
        second_head BLOB NOT NULL, at_ms INTEGER NOT NULL, PRIMARY KEY (centre, seq, second_hash))""",
)
#: Columns added since the first release, added in place to an existing hub database.
ADDED_COLUMNS = (
    ("queries", "retry_of", "BLOB"),
    ("queries", "failed_centres", "TEXT NOT NULL DEFAULT '[]'"),
    ("queries", "abstentions", "TEXT NOT NULL DEFAULT '[]'"),
    ("progress", "abstention", "BLOB"),
)
PREPARE, ANSWER, ABSTAIN = 1, 2, 3
#: Payload bytes a batch of tasks may carry: below gRPC's 4 MiB message limit with room for the
#: envelope (one sealed query may be 2 MiB, service.MAX_SEALED_BYTES).
BATCH_BYTES = 3 * 1024 * 1024
#: A delivered task not replied to is delivered again after this long (at-least-once).
REDELIVER_MS = 10_000
#: preparing → [abstaining, a retry waiting for abstentions] → answering → complete | failed | expired
OPEN_STATES = ("preparing", "abstaining", "answering")
_OPEN = ", ".join("?" * len(OPEN_STATES))
_QUERY_COLUMNS = ("query_hash", "researcher", "permit_hash", "targets", "min_participants", "created_ms",
                  "expires_at", "prepare_until_ms", "state", "error", "version", "sealed_bytes", "finished_ms",
                  "answer_until_ms", "retry_of", "failed_centres")
# the set is fixed once its row in query_sets names participants (bound: the query hash)
_FIXED = "EXISTS (SELECT 1 FROM query_sets s WHERE s.query_hash = ? AND s.participants <> '[]')"


_COLS = ", ".join(f"q.{c}" for c in _QUERY_COLUMNS)
# a query's row with its sets from query_sets, or with empty ones (fixed column names only)
_WITH_SETS = (f"SELECT {_COLS}, COALESCE(s.participants, '[]') AS participants, "  # noqa: S608 - fixed names
              "COALESCE(s.abstentions, '[]') AS abstentions FROM queries q "
              "LEFT JOIN query_sets s ON s.query_hash = q.query_hash")
_NO_SETS = f"SELECT {_COLS}, '[]' AS participants, '[]' AS abstentions FROM queries q"  # noqa: S608 - fixed names


def _select(sets: bool) -> str:
    return _WITH_SETS if sets else _NO_SETS


@dataclass(frozen=True)
class QueryRow:
    """One query as the hub holds it (metadata and state; no content)."""

    query_hash: bytes
    researcher: str
    permit_hash: bytes
    targets: tuple[str, ...]
    min_participants: int
    created_ms: int
    expires_at: int
    prepare_until_ms: int
    state: str
    error: str
    version: int
    participants: tuple[bytes, ...]
    sealed_bytes: int
    finished_ms: int | None
    answer_until_ms: int | None
    retry_of: bytes | None = None
    failed_centres: tuple[str, ...] = ()
    abstentions: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class Progress:
    """One centre's progress on one query, with the signed or sealed bytes it pushed."""

    centre: str
    state: str
    coarse: str
    at_ms: int
    accept: bytes | None
    decline: bytes | None
    answer: bytes | None
    failure: bytes | None
    abstention: bytes | None = None


def now_ms() -> int:
    return int(time.time() * 1000)


class HubStore:
    """The hub's SQLite file. Thread-safe: one connection, one lock (the hub is small)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30.0)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")   # survives a hub crash or restart; see below
        self.lock = threading.RLock()
        with self.tx() as c:
            for stmt in SCHEMA:
                c.execute(stmt)
            for table, column, decl in ADDED_COLUMNS:
                # table, column and declaration are the fixed names of ADDED_COLUMNS
                have = {r[1] for r in c.execute(f"PRAGMA table_info({table})")}
                if column not in have:
                    c.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
            # a store written before query_sets kept the sets in the query's row: move them (once)
            c.execute("INSERT OR IGNORE INTO query_sets (query_hash, participants, abstentions) "
                      "SELECT query_hash, participants, abstentions FROM queries "
                      "WHERE participants <> '[]' OR abstentions <> '[]'")
            c.execute("UPDATE queries SET participants = '[]', abstentions = '[]' "
                      "WHERE participants <> '[]' OR abstentions <> '[]'")

    def close(self) -> None:
        with self.lock:
            self.conn.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise

    @contextmanager
    def savepoint(self, c: sqlite3.Connection) -> Iterator[None]:
        """Inside a `tx`: what the block writes is undone when it raises (and the error goes on),
        the rest of the transaction kept."""
        c.execute("SAVEPOINT part")
        try:
            yield
        except BaseException:
            c.execute("ROLLBACK TO part")
            c.execute("RELEASE part")
            raise
        c.execute("RELEASE part")

    # ------------------------------------------------------------------ queries
    def add_query(self, *, query_hash: bytes, researcher: str, permit_hash: bytes, targets: list[str],
                  min_participants: int, expires_at: int, prepare_until_ms: int,
                  sealed: dict[str, bytes], retry_of: bytes | None = None, abstain: list[str] | None = None) -> bool:
        """Queue a query and one prepare task per target — and, for a retry, an abstain task on the
        failed query for each centre in `abstain`; False when the hash is known already."""
        at = now_ms()
        with self.tx() as c:
            if c.execute("SELECT 1 FROM queries WHERE query_hash = ?", (query_hash,)).fetchone():
                return False
            c.execute("INSERT INTO queries (query_hash, researcher, permit_hash, targets, min_participants, "
                      "created_ms, expires_at, prepare_until_ms, state, sealed_bytes, retry_of) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'preparing', ?, ?)",
                      (query_hash, researcher, permit_hash, json.dumps(targets), min_participants, at,
                       expires_at, prepare_until_ms, sum(len(v) for v in sealed.values()), retry_of))
            for centre in targets:
                c.execute("INSERT INTO tasks (query_hash, centre, kind, payload, state, created_ms) "
                          "VALUES (?, ?, ?, ?, 'queued', ?)", (query_hash, centre, PREPARE, sealed[centre], at))
                c.execute("INSERT INTO progress (query_hash, centre, state, at_ms) VALUES (?, ?, 'queued', ?)",
                          (query_hash, centre, at))
            if retry_of is not None:
                self.add_abstain_tasks(c, retry_of, abstain or [])
        return True

    def query(self, query_hash: bytes, *, sets: bool = True) -> QueryRow | None:
        """The query's row. `sets=False` leaves its participants and abstentions empty: for the
        paths that read only its state, targets and deadlines on every reply (at 100 centres the
        set alone is 50 kB to read and parse)."""
        with self.lock:
            cur = self.conn.execute(_select(sets) + " WHERE q.query_hash = ?", (query_hash,))
            row = cur.fetchone()
            cols = [d[0] for d in cur.description]
        return _query_row(dict(zip(cols, row, strict=True))) if row else None

    def open_queries(self) -> list[QueryRow]:
        """The open queries, without their sets (`query(sets=False)`): what the sweeper reads."""
        with self.lock:
            cur = self.conn.execute(_select(False) + f" WHERE q.state IN ({_OPEN}) "
                                    "ORDER BY q.created_ms", OPEN_STATES)
            cols = [d[0] for d in cur.description]
            return [_query_row(dict(zip(cols, r, strict=True))) for r in cur.fetchall()]

    def recent_queries(self, limit: int = 20) -> list[QueryRow]:
        with self.lock:
            cur = self.conn.execute(_select(True) + " ORDER BY q.created_ms DESC LIMIT ?", (limit,))
            cols = [d[0] for d in cur.description]
            return [_query_row(dict(zip(cols, r, strict=True))) for r in cur.fetchall()]

    def retries_of(self, query_hash: bytes) -> list[QueryRow]:
        """The open retries of a failed query."""
        with self.lock:
            cur = self.conn.execute(_select(True) + f" WHERE q.retry_of = ? AND q.state IN ({_OPEN})",
                                    (query_hash, *OPEN_STATES))
            cols = [d[0] for d in cur.description]
            return [_query_row(dict(zip(cols, r, strict=True))) for r in cur.fetchall()]

    def set_state(self, c: sqlite3.Connection, query_hash: bytes, state: str, error: str = "",
                  participants: list[bytes] | None = None, answer_until_ms: int | None = None, *,
                  failed_centres: list[str] | None = None, abstentions: list[bytes] | None = None) -> None:
        """Change a query's state (inside a transaction) and bump its version."""
        finished = now_ms() if state not in OPEN_STATES else None
        if participants is not None:
            c.execute("INSERT INTO query_sets (query_hash, participants) VALUES (?, ?) ON CONFLICT(query_hash) "
                      "DO UPDATE SET participants = excluded.participants",
                      (query_hash, json.dumps([p.hex() for p in participants])))
            c.execute("UPDATE queries SET answer_until_ms = ? WHERE query_hash = ?", (answer_until_ms, query_hash))
        if failed_centres is not None:
            c.execute("UPDATE queries SET failed_centres = ? WHERE query_hash = ?",
                      (json.dumps(sorted(failed_centres)), query_hash))
        if abstentions is not None:
            c.execute("INSERT INTO query_sets (query_hash, abstentions) VALUES (?, ?) ON CONFLICT(query_hash) "
                      "DO UPDATE SET abstentions = excluded.abstentions",
                      (query_hash, json.dumps([a.hex() for a in abstentions])))
        c.execute("UPDATE queries SET state = ?, error = ?, version = version + 1, finished_ms = ? "
                  "WHERE query_hash = ?", (state, error, finished, query_hash))
        if state not in OPEN_STATES:
            c.execute("DELETE FROM tasks WHERE query_hash = ? AND state = 'queued' AND kind <> ?",
                      (query_hash, ABSTAIN))

    def bump(self, c: sqlite3.Connection, query_hash: bytes) -> None:
        c.execute("UPDATE queries SET version = version + 1 WHERE query_hash = ?", (query_hash,))

    # ------------------------------------------------------------------ tasks and progress
    def take_tasks(self, centre: str, limit: int = 16, max_bytes: int = BATCH_BYTES) -> list[tuple[bytes, int, bytes]]:
        """The centre's queued tasks (query hash, kind, payload), marked delivered. A delivered task
        is delivered again on the next pull until the centre replies (at-least-once: nodes reply
        idempotently), so a node restart loses no task. Abstain tasks are on final queries.

        A batch holds at most `max_bytes` of payload (always its first task): a reply over gRPC's
        message limit would fail the centre's call on the same oldest tasks at every redelivery,
        until those queries expired — the rest wait for the next call instead."""
        at = now_ms()
        with self.tx() as c:
            rows = c.execute("SELECT t.query_hash, t.kind, t.payload FROM tasks t JOIN queries q "  # noqa: S608
                             f"ON q.query_hash = t.query_hash WHERE t.centre = ? AND (q.state IN ({_OPEN}) "
                             "OR t.kind = ?) AND (t.state = 'queued' OR t.delivered_ms < ?) "
                             "ORDER BY t.created_ms LIMIT ?",
                             (centre, *OPEN_STATES, ABSTAIN, at - REDELIVER_MS, limit)).fetchall()
            size = 0
            for i, (_, _, payload) in enumerate(rows):
                size += len(payload)
                if i and size > max_bytes:
                    rows = rows[:i]
                    break
            for qh, kind, _ in rows:
                c.execute("UPDATE tasks SET state = 'delivered', delivered_ms = ? "
                          "WHERE query_hash = ? AND centre = ? AND kind = ?", (at, qh, centre, kind))
                c.execute("UPDATE progress SET state = 'delivered', at_ms = ? WHERE query_hash = ? AND centre = ? "
                          "AND state = 'queued'", (at, qh, centre))
                self.bump(c, qh)
        return [(bytes(q), int(k), bytes(p)) for q, k, p in rows]

    def undeliver(self, centre: str, tasks: list[tuple[bytes, int]]) -> None:
        """Tasks `take_tasks` handed to a call that ended before it could reply: queued again, for
        the centre's next pull."""
        with self.tx() as c:
            for qh, kind in tasks:
                # a query that ended meanwhile dropped its queued tasks: this one is not queued again
                back = c.execute("UPDATE tasks SET state = 'queued', delivered_ms = NULL WHERE query_hash = ? "  # noqa: S608
                                 "AND centre = ? AND kind = ? AND state = 'delivered' AND (kind = ? OR EXISTS "
                                 f"(SELECT 1 FROM queries q WHERE q.query_hash = ? AND q.state IN ({_OPEN})))",
                                 (qh, centre, kind, ABSTAIN, qh, *OPEN_STATES)).rowcount
                if back:
                    c.execute("UPDATE progress SET state = 'queued' WHERE query_hash = ? AND centre = ? "
                              "AND state = 'delivered'", (qh, centre))

    def has_tasks(self, centre: str) -> bool:
        """Whether `take_tasks` would give the centre anything now — queued tasks, and delivered
        ones due again (a node restarted mid-task gets them on its first poll, not when a 20 s
        long poll ends, which a 10 s prepare window would not survive)."""
        with self.lock:
            return self.conn.execute(
                "SELECT EXISTS (SELECT 1 FROM tasks t JOIN queries q ON q.query_hash = t.query_hash "  # noqa: S608
                f"WHERE t.centre = ? AND (t.state = 'queued' OR t.delivered_ms < ?) "
                f"AND (q.state IN ({_OPEN}) OR t.kind = ?))",
                (centre, now_ms() - REDELIVER_MS, *OPEN_STATES, ABSTAIN)).fetchone()[0] == 1

    def has_task(self, query_hash: bytes, centre: str, kind: int) -> bool:
        with self.lock:
            return self.conn.execute("SELECT EXISTS (SELECT 1 FROM tasks WHERE query_hash = ? AND centre = ? "
                                     "AND kind = ?)", (query_hash, centre, kind)).fetchone()[0] == 1

    def record(self, c: sqlite3.Connection, query_hash: bytes, centre: str, state: str, *,
               column: str, payload: bytes, coarse: str = "", kind: int | None = None) -> None:
        """A centre's reply: its progress and the bytes it sent; its task for that step is done."""
        if column not in ("accept", "decline", "answer", "failure", "abstention"):
            raise ValueError(column)
        if kind is None:
            kind = PREPARE if column in ("accept", "decline") else ABSTAIN if column == "abstention" else ANSWER
        # The column name is one of four fixed names checked above; values are bound parameters.
        c.execute(f"UPDATE progress SET state = ?, coarse = ?, at_ms = ?, {column} = ? "  # noqa: S608
                  "WHERE query_hash = ? AND centre = ?", (state, coarse, now_ms(), payload, query_hash, centre))
        c.execute("DELETE FROM tasks WHERE query_hash = ? AND centre = ? AND kind = ?", (query_hash, centre, kind))
        self.bump(c, query_hash)

    def progress(self, query_hash: bytes) -> list[Progress]:
        with self.lock:
            rows = self.conn.execute("SELECT centre, state, coarse, at_ms, accept, decline, answer, failure, "
                                     "abstention FROM progress WHERE query_hash = ? ORDER BY centre",
                                     (query_hash,)).fetchall()
        return [Progress(r[0], r[1], r[2], r[3], *(bytes(x) if x is not None else None for x in r[4:]))
                for r in rows]

    def states(self, query_hash: bytes) -> dict[str, str]:
        """Each target's progress state alone: what moving a query on reads after every reply
        (`progress` carries every relayed byte; with a hundred centres, reading all of it on
        each of a query's hundreds of replies was most of the hub's time)."""
        with self.lock:
            return dict(self.conn.execute("SELECT centre, state FROM progress WHERE query_hash = ?",
                                          (query_hash,)).fetchall())

    def members(self, query_hash: bytes) -> list[str]:
        """The participant set's centres — those whose accept made it in before it was fixed —
        or none while it is not fixed."""
        with self.lock:
            return [r[0] for r in self.conn.execute(
                f"SELECT centre FROM progress WHERE query_hash = ? AND accept IS NOT NULL AND {_FIXED} "  # noqa: S608
                "ORDER BY centre", (query_hash, query_hash)).fetchall()]

    def is_member(self, query_hash: bytes, centre: str) -> bool:
        """Whether `centre` is in the query's fixed participant set (`members`, for one centre)."""
        with self.lock:
            return self.conn.execute(
                f"SELECT EXISTS (SELECT 1 FROM progress WHERE query_hash = ? AND centre = ? "  # noqa: S608
                f"AND accept IS NOT NULL AND {_FIXED})", (query_hash, centre, query_hash)).fetchone()[0] == 1

    def unreplied(self, query_hash: bytes) -> int:
        """How many targets have not yet accepted, declined or failed (preparing)."""
        with self.lock:
            return int(self.conn.execute(
                "SELECT COUNT(*) FROM progress WHERE query_hash = ? "
                "AND state NOT IN ('accepted', 'declined', 'failed')",
                (query_hash,)).fetchone()[0])

    def tally(self, query_hash: bytes) -> tuple[int, int]:
        """(failed, not yet answered) among the fixed set's members: what moving an answering
        query on reads after each answer — one row of counts, which SQLite sums over the query's
        progress rows, instead of every member's state and the set itself in Python."""
        with self.lock:
            failed, silent = self.conn.execute(
                "SELECT COALESCE(SUM(state = 'failed'), 0), COALESCE(SUM(state <> 'answered'), 0) "  # noqa: S608
                f"FROM progress WHERE query_hash = ? AND accept IS NOT NULL AND {_FIXED}",
                (query_hash, query_hash)).fetchone()
        return int(failed), int(silent)

    def drop_stale_accepts(self, c: sqlite3.Connection, query_hash: bytes) -> None:
        """When the set is fixed: forget the accepts of centres that declined or failed after
        accepting (the set leaves them out), so that `members` is exactly the signed set."""
        c.execute("UPDATE progress SET accept = NULL WHERE query_hash = ? AND accept IS NOT NULL "
                  "AND state <> 'accepted'", (query_hash,))

    def drop_prepare_tasks(self, c: sqlite3.Connection, query_hash: bytes) -> None:
        """When the set is fixed: a target that has not replied can no longer join, so its prepare
        is not delivered again (it was every 10 s until the query ended, each time leaving the
        centre holding a mask secret for nothing)."""
        c.execute("DELETE FROM tasks WHERE query_hash = ? AND kind = ?", (query_hash, PREPARE))

    def add_answer_tasks(self, c: sqlite3.Connection, query_hash: bytes, centres: list[str], payload: bytes) -> None:
        at = now_ms()
        for centre in centres:
            c.execute("INSERT OR REPLACE INTO tasks (query_hash, centre, kind, payload, state, created_ms) "
                      "VALUES (?, ?, ?, ?, 'queued', ?)", (query_hash, centre, ANSWER, payload, at))

    def add_abstain_tasks(self, c: sqlite3.Connection, failed_query: bytes, centres: list[str]) -> None:
        """Ask each centre for its abstention from the failed query (once: a task already queued or
        delivered stays as it is)."""
        at = now_ms()
        for centre in centres:
            c.execute("INSERT OR IGNORE INTO tasks (query_hash, centre, kind, payload, state, created_ms) "
                      "VALUES (?, ?, ?, x'', 'queued', ?)", (failed_query, centre, ABSTAIN, at))

    # ------------------------------------------------------------------ centres
    def seen(self, centre: str, audit_head: bytes | None = None, audit_seq: int | None = None) -> None:
        """The centre called now; keep its signed audit head when it is longer than the one kept
        (a replayed older head never replaces a newer one, and a second head for the same entry —
        a log rewritten there — never replaces the first)."""
        with self.tx() as c:
            c.execute("INSERT INTO centres (centre, last_seen_ms) VALUES (?, ?) "
                      "ON CONFLICT(centre) DO UPDATE SET last_seen_ms = excluded.last_seen_ms", (centre, now_ms()))
            if audit_head and audit_seq is not None:
                c.execute("UPDATE centres SET audit_head = ?, audit_seq = ? WHERE centre = ? "
                          "AND (audit_seq IS NULL OR audit_seq < ?)", (audit_head, audit_seq, centre, audit_seq))

    def conflict(self, centre: str, seq: int, second_hash: bytes, first_head: bytes, second_head: bytes) -> None:
        """Keep a rewrite's evidence: the head the hub kept for entry `seq` and the head, signed by
        the same centre, that names another hash for it (once per rewrite of that entry)."""
        with self.tx() as c:
            c.execute("INSERT OR IGNORE INTO audit_conflicts (centre, seq, second_hash, first_head, second_head, "
                      "at_ms) VALUES (?, ?, ?, ?, ?, ?)", (centre, seq, second_hash, first_head, second_head, now_ms()))

    def conflicts(self) -> dict[str, list[tuple[int, bytes, bytes, int]]]:
        """Each centre's rewrites seen (`conflict`), oldest first: (entry, first head, second head,
        when)."""
        with self.lock:
            rows = self.conn.execute("SELECT centre, seq, first_head, second_head, at_ms FROM audit_conflicts "
                                     "ORDER BY at_ms, seq").fetchall()
        out: dict[str, list[tuple[int, bytes, bytes, int]]] = {}
        for centre, seq, first, second, at in rows:
            out.setdefault(centre, []).append((int(seq), bytes(first), bytes(second), int(at)))
        return out

    def audit_head_of(self, centre: str) -> tuple[bytes, int] | None:
        """The signed audit head kept for `centre` and its entry, if any."""
        with self.lock:
            row = self.conn.execute("SELECT audit_head, audit_seq FROM centres WHERE centre = ?", (centre,)).fetchone()
        return (bytes(row[0]), int(row[1])) if row is not None and row[0] is not None else None

    def centres(self) -> list[tuple[str, int, bytes | None, int | None]]:
        with self.lock:
            rows = self.conn.execute("SELECT centre, last_seen_ms, audit_head, audit_seq FROM centres ORDER BY centre")
            return [(r[0], int(r[1]), bytes(r[2]) if r[2] is not None else None, r[3]) for r in rows.fetchall()]

    def queue_depth(self) -> dict[str, int]:
        with self.lock:
            rows = self.conn.execute("SELECT centre, count(*) FROM tasks WHERE state = 'queued' GROUP BY centre")
            return {r[0]: int(r[1]) for r in rows.fetchall()}

    def dump(self) -> Iterator[bytes]:
        """Every stored value as bytes (for the test that the hub holds no plaintext)."""
        with self.lock:
            for table in ("queries", "query_sets", "tasks", "progress", "centres"):
                for row in self.conn.execute(f"SELECT * FROM {table}"):  # noqa: S608 - fixed table names
                    for v in row:
                        yield v if isinstance(v, bytes) else str(v).encode()


def _query_row(r: dict[str, Any]) -> QueryRow:
    return QueryRow(bytes(r["query_hash"]), r["researcher"], bytes(r["permit_hash"]), _names(r["targets"]),
                    int(r["min_participants"]), int(r["created_ms"]), int(r["expires_at"]), int(r["prepare_until_ms"]),
                    r["state"], r["error"], int(r["version"]),
                    _hex_list(r["participants"]), int(r["sealed_bytes"]),
                    r["finished_ms"], r["answer_until_ms"],
                    bytes(r["retry_of"]) if r.get("retry_of") is not None else None,
                    _names(r.get("failed_centres") or "[]"),
                    _hex_list(r.get("abstentions") or "[]"))


# A push reads its query's row three times (the check, `wanted`, `advance`) and each row carries
# its targets and, once fixed, every signed accept as JSON: at 100 centres, 200 pushes a query
# parsed the same hundred accepts 600 times. The same text parses to the same tuple, so the
# parsed values are kept by their text (pure functions; the row itself is read every time).
@functools.lru_cache(maxsize=64)
def _names(text: str) -> tuple[str, ...]:
    return tuple(json.loads(text))


@functools.lru_cache(maxsize=64)
def _hex_list(text: str) -> tuple[bytes, ...]:
    return tuple(bytes.fromhex(item) for item in json.loads(text))
