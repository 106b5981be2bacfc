"""The release ledger: every row set this node answered over, per scope, and what it released.

DESIGN §4 (Flow, step 4) and §10. Two answers whose rows differ in fewer than k rows must not
reveal anything about those rows; the identical row set stays answerable. So, per **scope** (a
permit: one researcher's project; the engine decides the scope), the ledger keeps one *entry* per
row set it has answered over, and every answer is computed over the row set of a *release*:

- a cohort whose rows equal an entry's → that entry's release (its own rows, when the entry is a
  release: a fresh computation, and the stored bytes when the same analysis was answered before);
- a cohort within a near-duplicate radius r (keyed, uniform in [k, 2k): oncofed.keys.ledger) of
  an entry — 0 < |rows Δ entry| < r — → that entry's release: the answer is computed over the
  release's rows (the cohort's rows with the exact difference applied), and for the same analysis
  is the earlier answer byte for byte. The cohort becomes an entry pointing at that release;
- otherwise the cohort's rows become a new release.

So any two answers in a scope are computed over the same release or over releases that were at
least k rows apart from everything answered before them. What is kept: per entry its digest, size,
sketch (3 KiB, oncofed.node.store.rowsets) and its difference to its release (≤ 2 × 2k ids); per
(release, analysis spec, participant set) the vector as released. `participants` is the
federation's participant set (DESIGN §4: the same release under another set is refused — for any
analysis spec over its rows, since related specs difference each other as well as equal ones do —
under the same set resent byte for byte); None for node-local answers. A release under another set is
allowed only as a retry after a failure, when every centre the new set leaves out of an earlier
one abstained from each query released under it (oncofed.secagg.retry, decision D26; the
abstentions come verified from the connector through `fed_evidence`). Refused, nothing is
recorded as released and `Kept` says why; the caller sends a coarse failure instead.

Decisions are made in one IMMEDIATE transaction (two racing queries cannot both become releases
near each other) and every vector is committed (synchronous=FULL) before the engine returns it.
Each of the two transactions writes on every path (a new entry, or a use counted; a query row),
so a commit's cost does not tell a near duplicate from the same rows.
Scans of the scope's entries come from an in-process cache refreshed from the table on every
decision, so the check stays in milliseconds at 10,000 releases (bench/differencing.py).
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
import zlib
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from oncofed.keys.ledger import LedgerKeys, release_key
from oncofed.node.store import db as dbmod
from oncofed.node.store import federation as fedstore
from oncofed.node.store.rowsets import NO_CHANGE, Diff, RowSet, Sketch, decode, lower_bound
from oncofed.secagg.retry import EarlierRelease, release_blocker

MAX_DECODES = 64        # beyond this many far-looking candidates, the next is taken as near (cautious)
_CACHE_SCOPES = 32
_VALUE_BYTES = 16


def migration_1(conn: sqlite3.Connection) -> None:
    conn.execute("""CREATE TABLE ledger_entries (
        entry_id INTEGER PRIMARY KEY,
        scope TEXT NOT NULL,
        digest BLOB NOT NULL,
        n INTEGER NOT NULL CHECK (n >= 0),
        prefilter BLOB NOT NULL,
        sketch BLOB NOT NULL,
        release_id INTEGER REFERENCES ledger_entries (entry_id),
        to_release BLOB,
        uses INTEGER NOT NULL DEFAULT 1,
        created_at INTEGER NOT NULL,
        UNIQUE (scope, digest))""")
    conn.execute("CREATE INDEX ledger_entries_by_scope ON ledger_entries (scope, entry_id)")
    conn.execute("""CREATE TABLE ledger_answers (
        release_id INTEGER NOT NULL REFERENCES ledger_entries (entry_id),
        spec_hash BLOB NOT NULL,
        participants BLOB NOT NULL,
        release_key BLOB NOT NULL,
        vector BLOB NOT NULL,
        first_query TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (release_id, spec_hash, participants))""")
    conn.execute("""CREATE TABLE ledger_queries (
        id INTEGER PRIMARY KEY,
        query_hash TEXT NOT NULL,
        entry_id INTEGER NOT NULL REFERENCES ledger_entries (entry_id),
        release_id INTEGER NOT NULL REFERENCES ledger_entries (entry_id),
        decision TEXT NOT NULL,
        at INTEGER NOT NULL)""")


def migration_2(conn: sqlite3.Connection) -> None:
    """Which centres and queries each release under a participant set went out in, so that a
    retry can be checked against abstentions (D26). Releases made before are backfilled with
    unknown centres: a retry over them is refused, as every other set was before."""
    conn.execute("""CREATE TABLE ledger_sets (
        release_id INTEGER NOT NULL REFERENCES ledger_entries (entry_id),
        spec_hash BLOB NOT NULL,
        participants BLOB NOT NULL,
        query_hash TEXT NOT NULL,
        centres TEXT,
        PRIMARY KEY (release_id, spec_hash, participants, query_hash))""")
    conn.execute("INSERT INTO ledger_sets (release_id, spec_hash, participants, query_hash, centres) "
                 "SELECT release_id, spec_hash, participants, first_query, NULL FROM ledger_answers "
                 "WHERE participants <> x''")


@dataclass(frozen=True)
class Participation:
    """The participant set a federated release is summed over, as the ledger keys it: its centres
    (a new set of the same centres, with fresh mask keys, differences nothing)."""

    centres: tuple[str, ...]

    @classmethod
    def of(cls, centres: tuple[str, ...] | list[str]) -> Participation:
        return cls(tuple(sorted(set(centres))))

    @property
    def key(self) -> bytes:
        return hashlib.sha256("\n".join(self.centres).encode()).digest()


@dataclass(frozen=True)
class Resolution:
    """Which release a cohort is answered as. `diff` turns the cohort's rows into the release's
    (None: not known, when a chain of sketches did not peel — then only a stored answer or a
    withheld one may go out). `decision` and `delta` are for the local audit log only."""

    scope: str
    entry_id: int
    release_id: int
    release_digest: bytes
    diff: Diff | None
    decision: str            # new | same_rows | near_duplicate
    delta: int | None = None


@dataclass(frozen=True)
class Kept:
    """What the ledger holds for (release, spec, participants) after this answer: the vector to
    send (this one, or the one released before), and whether it was released before. When
    `other_participants`, the release went out under another set and this one may not go out:
    `blocker` says why (local audit only), and nothing was recorded as released."""

    vector: list[int]
    reused: bool
    other_participants: bool
    blocker: str = ""


class _ScopeCache:
    """The scope's entries as arrays, for a vectorised first pass over thousands of them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.ids = np.zeros(0, dtype=np.int64)
        self.n = np.zeros(0, dtype=np.int64)
        self.pre = np.zeros((0, 64), dtype=np.uint8)
        self.digests: list[bytes] = []

    def refresh(self, conn: sqlite3.Connection, scope: str) -> None:
        if self.digests:
            last = conn.execute("SELECT digest FROM ledger_entries WHERE entry_id = ? AND scope = ?",
                                (int(self.ids[-1]), scope)).fetchone()
            if last is None or bytes(last[0]) != self.digests[-1]:
                self.reset()                 # the store was replaced or restored: start over
        after = int(self.ids[-1]) if len(self.ids) else 0
        rows = conn.execute("SELECT entry_id, n, digest, prefilter FROM ledger_entries WHERE scope = ? AND "
                            "entry_id > ? ORDER BY entry_id", (scope, after)).fetchall()
        if not rows:
            return
        self.ids = np.concatenate([self.ids, np.array([r[0] for r in rows], dtype=np.int64)])
        self.n = np.concatenate([self.n, np.array([r[1] for r in rows], dtype=np.int64)])
        pre = np.frombuffer(b"".join(bytes(r[3]) for r in rows), dtype=np.uint8).reshape(len(rows), 64)
        self.pre = np.concatenate([self.pre, pre])
        self.digests.extend(bytes(r[2]) for r in rows)

    def candidates(self, rows: RowSet, reach: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Indices of entries that may lie within `reach` of `rows`, with a lower bound on the
        distance of each, nearest bound first: |n − n'| and Σ|Δcount| of sub-table 0 mod 256."""
        size_gap = np.abs(self.n - rows.n)
        if not (size_gap < reach).any():
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        d = self.pre - rows.sketch.prefilter.view(np.uint8)       # mod 256; |d| as min(d, −d): never
        np.minimum(d, -d, out=d)                                  # more than the true |Δcount|
        bound = np.maximum(d.sum(axis=1, dtype=np.int64), size_gap)
        idx = np.flatnonzero(bound < reach)
        order = np.lexsort((self.ids[idx], bound[idx]))
        return idx[order], bound[idx][order]


_caches: OrderedDict[tuple[str, str], _ScopeCache] = OrderedDict()
_caches_lock = threading.Lock()


def _cache(conn: sqlite3.Connection, scope: str) -> _ScopeCache:
    path = str(conn.execute("PRAGMA database_list").fetchone()[2]) or f"memory:{id(conn)}"
    key = (path, scope)
    with _caches_lock:
        cache = _caches.pop(key, None) or _ScopeCache()
        _caches[key] = cache
        while len(_caches) > _CACHE_SCOPES:
            _caches.popitem(last=False)
    return cache


class ReleaseLedger:
    """The node's release ledger over its store connection (see the module docstring)."""

    def __init__(self, conn: sqlite3.Connection, keys: LedgerKeys, *, synced: bool = True) -> None:
        """`synced=False` commits without waiting for the disk, for a caller that commits the
        answer's audit entry with synchronous=FULL on the same file before anything is sent: that
        fsync of the WAL makes these earlier commits durable too, and a power loss before it loses
        only entries of answers that never left (the engine's answering pipeline does this)."""
        self.conn, self.keys = conn, keys
        self._tx = dbmod.immediate if synced else dbmod.immediate_unsynced

    def resolve(self, scope: str, rows: RowSet, k: int, *, now: int | None = None) -> Resolution:
        """Which release `rows` are answered as in `scope`, recording them as an entry."""
        at = int(now if now is not None else time.time())
        with self._tx(self.conn) as conn:
            same = conn.execute("SELECT entry_id, release_id, to_release FROM ledger_entries WHERE scope = ? "
                                "AND digest = ?", (scope, rows.digest)).fetchone()
            if same is not None:
                self._verify(rows, NO_CHANGE, rows.digest)     # the same work on every path, and a write
                entry_id, release_id, to_release = same
                conn.execute("UPDATE ledger_entries SET uses = uses + 1 WHERE entry_id = ?", (entry_id,))
                if release_id is None:
                    return Resolution(scope, entry_id, entry_id, rows.digest, NO_CHANGE, "same_rows")
                return Resolution(scope, entry_id, release_id, self._digest_of(release_id),
                                  None if to_release is None else Diff.from_bytes(to_release), "near_duplicate")
            cache = _cache(conn, scope)
            with cache.lock:
                cache.refresh(conn, scope)
                near = self._nearest(cache, rows, k)
            if near is None:
                entry_id = self._insert(rows, scope, None, NO_CHANGE, at)
                return Resolution(scope, entry_id, entry_id, rows.digest, NO_CHANGE, "new")
            earlier, delta, diff = near
            release_id, to_release = conn.execute("SELECT coalesce(release_id, entry_id), to_release FROM "
                                                  "ledger_entries WHERE entry_id = ?", (earlier,)).fetchone()
            if diff is not None and release_id != earlier:
                diff = None if to_release is None else diff.then(Diff.from_bytes(to_release))
            entry_id = self._insert(rows, scope, release_id, diff, at)
            return Resolution(scope, entry_id, release_id, self._digest_of(release_id), diff, "near_duplicate",
                              delta)

    def _nearest(self, cache: _ScopeCache, rows: RowSet, k: int) -> tuple[int, int | None, Diff | None] | None:
        """The first entry (nearest lower bound, then oldest) within its radius of `rows`, with the
        exact distance and difference (None: unpeelable, taken as near); None when none is."""
        idx, bounds = cache.candidates(rows, 2 * k - 1)
        decodes, verified = 0, False
        for i, bound in zip(idx.tolist(), bounds.tolist(), strict=True):
            digest = cache.digests[i]
            radius = self.keys.radius(k, rows.digest, digest)
            if bound >= radius:
                continue
            entry_id = int(cache.ids[i])
            sketch = Sketch.from_bytes(self.conn.execute("SELECT sketch FROM ledger_entries WHERE entry_id = ?",
                                                         (entry_id,)).fetchone()[0])
            if lower_bound(rows.sketch, sketch) >= radius:
                continue
            decodes += 1
            if decodes > MAX_DECODES:
                return entry_id, None, None
            diff = decode(rows.sketch, sketch, self.keys)
            if diff is None or not self._verify(rows, diff, digest):
                return entry_id, None, None               # cannot tell how near: treat as near
            verified = True
            if 0 < diff.size < radius:
                return entry_id, diff.size, diff
        if not verified:
            self._verify(rows, NO_CHANGE, rows.digest)    # the same work whether or not anything was near
        return None

    def _verify(self, rows: RowSet, diff: Diff, digest: bytes) -> bool:
        return self.keys.rowset_digest(diff.apply(rows.ids)) == digest

    def _digest_of(self, entry_id: int) -> bytes:
        return bytes(self.conn.execute("SELECT digest FROM ledger_entries WHERE entry_id = ?",
                                       (entry_id,)).fetchone()[0])

    def _insert(self, rows: RowSet, scope: str, release_id: int | None, diff: Diff | None, at: int) -> int:
        cur = self.conn.execute(
            "INSERT INTO ledger_entries (scope, digest, n, prefilter, sketch, release_id, to_release, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (scope, rows.digest, rows.n, rows.sketch.prefilter.tobytes(), rows.sketch.to_bytes(), release_id,
             None if diff is None else diff.to_bytes(), at))
        return int(cur.lastrowid or 0)

    def stored(self, res: Resolution, spec_hash: bytes, participants: Participation | None = None) -> list[int] | None:
        """The vector released before for this release and spec (and participant set), if any."""
        part = participants.key if participants is not None else b""
        row = self.conn.execute("SELECT vector FROM ledger_answers WHERE release_id = ? AND spec_hash = ? AND "
                                "participants = ?", (res.release_id, spec_hash, part)).fetchone()
        return None if row is None else decode_vector(row[0])

    def keep(self, res: Resolution, spec_hash: bytes, vector: list[int], query_hash: str, *,
             participants: Participation | None = None, now: int | None = None) -> Kept:
        """Record this answer durably and return what to send: the vector released before for the
        same (release, spec, participants) if there is one — byte for byte — else this one. Under
        a participant set, refused (`Kept.other_participants`, nothing recorded as released) when
        the same release went out under another set without the abstentions that make it safe."""
        at = int(now if now is not None else time.time())
        part = participants.key if participants is not None else b""
        key = release_key(spec_hash, res.release_digest, part or None)
        with self._tx(self.conn) as conn:
            blocker = None if participants is None else self._blocker(res.release_id, participants)
            if blocker is None:
                cur = conn.execute("INSERT OR IGNORE INTO ledger_answers (release_id, spec_hash, participants, "
                                   "release_key, vector, first_query, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                                   (res.release_id, spec_hash, part, key, encode_vector(vector), query_hash, at))
                reused = cur.rowcount == 0
                out = decode_vector(conn.execute("SELECT vector FROM ledger_answers WHERE release_id = ? AND "
                                                 "spec_hash = ? AND participants = ?",
                                                 (res.release_id, spec_hash, part)).fetchone()[0])
                if participants is not None:
                    conn.execute("INSERT OR IGNORE INTO ledger_sets (release_id, spec_hash, participants, "
                                 "query_hash, centres) VALUES (?, ?, ?, ?, ?)",
                                 (res.release_id, spec_hash, part, query_hash, "\n".join(participants.centres)))
            else:
                reused, out = False, vector
            conn.execute("INSERT INTO ledger_queries (query_hash, entry_id, release_id, decision, at) "
                         "VALUES (?, ?, ?, ?, ?)", (query_hash, res.entry_id, res.release_id, res.decision, at))
        return Kept(out, reused, blocker is not None, blocker or "")

    def _blocker(self, release_id: int, participants: Participation) -> str | None:
        """Why this release may not go out under `participants` (None: it may), from every set it
        went out under before — *whatever the analysis spec* — and the abstentions kept (inside
        keep's transaction). Specs are many spellings of related sums over the same rows (a round's
        label, β as none or zeros, a crosstab and the count that is its margin), so a set is fixed
        per release, not per spec: otherwise two related sums over S and S' differenced the
        centres of S ∖ S' (D28)."""
        part = participants.key
        earlier: dict[bytes, tuple[set[str | None], set[str]]] = {}
        for other, centres, qh in self.conn.execute(
                "SELECT participants, centres, query_hash FROM ledger_sets WHERE release_id = ? "
                "AND participants <> ?", (release_id, part)):
            names, queries = earlier.setdefault(bytes(other), (set(), set()))
            names.add(centres)
            queries.add(str(qh))
        for (other,) in self.conn.execute("SELECT participants FROM ledger_answers WHERE release_id = ? "
                                          "AND participants NOT IN (?, x'')", (release_id, part)):
            if bytes(other) not in earlier:          # released before sets were recorded: unknown
                earlier[bytes(other)] = ({None}, set())
        releases = [EarlierRelease(None if None in names or len(names) != 1
                                   else frozenset(str(next(iter(names))).split("\n")), frozenset(queries))
                    for names, queries in earlier.values()]
        abstained = fedstore.abstained(self.conn, {q for r in releases for q in r.queries})
        return release_blocker(participants.centres, releases, abstained)


def encode_vector(vector: list[int]) -> bytes:
    """A released vector (values mod 2^128) as stored: 16 bytes big-endian each, deflated."""
    return zlib.compress(b"".join(v.to_bytes(_VALUE_BYTES, "big") for v in vector), 6)


def decode_vector(blob: bytes) -> list[int]:
    raw = zlib.decompress(blob)
    return [int.from_bytes(raw[i:i + _VALUE_BYTES], "big") for i in range(0, len(raw), _VALUE_BYTES)]
