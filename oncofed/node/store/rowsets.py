"""Row sets as the release ledger keeps them: exact ids at query time, a small sketch at rest.

The ledger (oncofed.node.store.ledger) must tell, against thousands of earlier releases and in a
few milliseconds, whether a cohort's rows differ from an earlier release's in fewer than k rows —
and if so, exactly which rows, so the answer can be computed over the earlier row set. It keeps
per release a keyed digest of the exact set (oncofed.keys.ledger) and an **invertible Bloom lookup
table** (Goodrich & Mitzenmacher 2011; Eppstein et al. 2011, "What's the difference?"): H = 4
sub-tables of S = 64 cells, each row added to one cell per sub-table as (count, Σ id, Σ check)
mod 2^32. Sketches subtract cell by cell, so sketch(B) − sketch(A) is the sketch of the signed
difference B ∖ A (+1) and A ∖ B (−1), whatever the sets' sizes; it is *peeled* (a cell holding a
single row gives that row away; remove it everywhere and repeat) into the exact difference when
that is small (≤ ~60 rows here; two rows sharing all four cells — probability ≈ C(d, 2)/S⁴, 10⁻⁵
at d = 19 — stop it, and an unpeelable difference is then treated as near, the cautious side). A
peeled difference is only believed when applying it to the cohort's ids reproduces the earlier
set's digest. Sizes: 3 KiB per sketch; 64 bytes of it (sub-table 0's counts mod 256) serve as a
sound lower bound on |A Δ B| for a vectorised first pass (|wrapped| never exceeds |true|).

Row ids are the store's rowids: a tumour keeps its rowid when ingest updates it, and rows are never
deleted (a future deletion path must keep rowids unique, e.g. AUTOINCREMENT); the engine refuses a
store beyond its policy's max_rows, and this module refuses ids ≥ 2^32 (they would not peel).

What "the rows of an answer" are: the rows the analysis' reads return — for survival after the
outcome's own filters (first primary, DCO, times), so padding a cohort with rows an analysis never
reads cannot make two answers look far apart. `planned_reads` learns the reads by running the
analysis' local step over a reader that holds no rows (an analysis' reads depend on its spec, never
on the data), and `read_rowids` asks the store for the ids of exactly those rows.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from oncofed.analyses.base import Analysis, DesignQuestion, DesignRows, SurvivalQuestion, SurvivalRow
from oncofed.analyses.cells import Cell
from oncofed.dictionary import Dictionary
from oncofed.keys.ledger import LedgerKeys
from oncofed.node.store.cohort_reads import survival_statement
from oncofed.node.store.design_reads import MemoryCache, data_version, database_of, read_design
from oncofed.node.store.schema import TUMOURS

H, S = 4, 64
CELLS = H * S
MAX_ROW_ID = (1 << 32) - 1
_MASK32 = (1 << 32) - 1
_SKETCH_BYTES = CELLS * 12
Ids = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Sketch:
    """An IBLT of a row set: per cell the count (int32), Σ id and Σ check value (uint32, mod 2^32)."""

    counts: npt.NDArray[np.int32]
    idsum: npt.NDArray[np.uint32]
    checks: npt.NDArray[np.uint32]

    @property
    def prefilter(self) -> npt.NDArray[np.int8]:
        """Sub-table 0's counts mod 256: 64 bytes that bound |A Δ B| from below."""
        return self.counts[:S].astype(np.int8)

    def to_bytes(self) -> bytes:
        return b"".join(a.astype("<u4").tobytes() for a in (self.counts, self.idsum, self.checks))

    @classmethod
    def from_bytes(cls, data: bytes) -> Sketch:
        if len(data) != _SKETCH_BYTES:
            raise ValueError("not a ledger sketch")
        words = np.frombuffer(data, dtype="<u4").reshape(3, CELLS)
        return cls(words[0].astype(np.int32), words[1].astype(np.uint32), words[2].astype(np.uint32))


@dataclass(frozen=True)
class RowSet:
    """An exact row set at query time: sorted distinct ids, their keyed digest and sketch."""

    ids: Ids
    digest: bytes
    sketch: Sketch

    @property
    def n(self) -> int:
        return len(self.ids)

    @classmethod
    def of(cls, ids: Ids, keys: LedgerKeys) -> RowSet:
        ids = sorted_distinct(np.asarray(ids, dtype=np.int64))
        return cls(ids, keys.rowset_digest(ids), build_sketch(ids, keys))


def sorted_distinct(ids: Ids) -> Ids:
    """Sorted, each id once (np.unique hashes in numpy 2.x: ~100× slower on a sorted million)."""
    out = ids if len(ids) < 2 or bool((ids[1:] > ids[:-1]).all()) else np.sort(ids)
    if len(out) > 1 and not (out[1:] != out[:-1]).all():
        out = out[np.concatenate(([True], out[1:] != out[:-1]))]
    return out


@dataclass(frozen=True)
class Diff:
    """How to turn one row set into another: the ids to add and the ids to remove."""

    add: tuple[int, ...] = ()
    remove: tuple[int, ...] = ()

    @property
    def size(self) -> int:
        return len(self.add) + len(self.remove)

    def then(self, other: Diff) -> Diff:
        """This difference followed by `other` (A → B → C gives A → C)."""
        net: dict[int, int] = {}
        for sign, ids in ((1, self.add), (-1, self.remove), (1, other.add), (-1, other.remove)):
            for i in ids:
                net[i] = net.get(i, 0) + sign
        return Diff(tuple(sorted(i for i, v in net.items() if v > 0)),
                    tuple(sorted(i for i, v in net.items() if v < 0)))

    def apply(self, ids: Ids) -> Ids:
        """The sorted ids with this difference applied, in one copy (ids sorted and distinct; a
        removed id must be present and an added one absent, else the result is not the set)."""
        out = ids
        if self.remove:
            out = np.delete(out, np.searchsorted(out, np.asarray(self.remove, dtype=np.int64)))
        if self.add:
            add = np.asarray(self.add, dtype=np.int64)
            out = np.insert(out, np.searchsorted(out, add), add)
        return out

    def to_bytes(self) -> bytes:
        return json.dumps([list(self.add), list(self.remove)], separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Diff:
        add, remove = json.loads(data)
        return cls(tuple(int(i) for i in add), tuple(int(i) for i in remove))


NO_CHANGE = Diff()


def _cells(keys: LedgerKeys, ids: Ids) -> tuple[list[npt.NDArray[np.int64]], npt.NDArray[np.uint32]]:
    """Each id's cell in every sub-table (6 bits of the mix per sub-table) and its check value."""
    m = keys.mix(ids)
    low = (m & np.uint64(0xFFFFFF)).astype(np.int64)
    positions = [((low >> (6 * j)) & (S - 1)) + j * S for j in range(H)]
    return positions, (m >> np.uint64(32)).astype(np.uint32)


def build_sketch(ids: Ids, keys: LedgerKeys) -> Sketch:
    """The sketch of a row set (ids sorted or not, distinct)."""
    if len(ids) and (int(ids.min()) < 0 or int(ids.max()) > MAX_ROW_ID):
        raise ValueError("row ids beyond 2^32 cannot be kept in the ledger")
    positions, checks = _cells(keys, ids)
    counts = np.zeros(CELLS, dtype=np.int64)
    idsum = np.zeros(CELLS, dtype=np.uint32)
    chk = np.zeros(CELLS, dtype=np.uint32)
    x = ids.astype(np.uint32)
    for p in positions:
        counts += np.bincount(p, minlength=CELLS)
        np.add.at(idsum, p, x)        # uint32 arithmetic wraps: sums mod 2^32, exactly
        np.add.at(chk, p, checks)
    return Sketch(counts.astype(np.int32), idsum, chk)


def lower_bound(a: Sketch, b: Sketch) -> int:
    """A sound lower bound on |A Δ B| from the full counts (the best sub-table's Σ|Δcount|)."""
    d = np.abs(b.counts.astype(np.int64) - a.counts.astype(np.int64)).reshape(H, S)
    return int(d.sum(axis=1).max())


def decode(a: Sketch, b: Sketch, keys: LedgerKeys, limit: int = CELLS) -> Diff | None:
    """The exact difference turning A into B, peeled from sketch(B) − sketch(A); None when it does
    not peel (too large, or an unlucky collision). The caller checks it against B's digest."""
    counts = b.counts.astype(np.int64) - a.counts.astype(np.int64)
    idsum = [(int(x) - int(y)) & _MASK32 for x, y in zip(b.idsum, a.idsum, strict=True)]
    checks = [(int(x) - int(y)) & _MASK32 for x, y in zip(b.checks, a.checks, strict=True)]
    cnt = [int(c) for c in counts]
    add: list[int] = []
    remove: list[int] = []
    pending = [i for i in range(CELLS) if cnt[i] in (1, -1)]
    while pending:
        i = pending.pop()
        sign = cnt[i]
        if sign not in (1, -1):
            continue
        row = idsum[i] if sign == 1 else (-idsum[i]) & _MASK32
        positions, check = _cells(keys, np.array([row], dtype=np.int64))
        cells = [int(p[0]) for p in positions]
        if (int(check[0]) * sign) & _MASK32 != checks[i] or i not in cells:
            continue                        # not a pure cell: several rows whose counts cancel
        (add if sign == 1 else remove).append(row)
        if len(add) + len(remove) > limit:
            return None
        for j in cells:
            cnt[j] -= sign
            idsum[j] = (idsum[j] - sign * row) & _MASK32
            checks[j] = (checks[j] - sign * int(check[0])) & _MASK32
            if cnt[j] in (1, -1):
                pending.append(j)
    if any(cnt) or any(idsum) or any(checks):
        return None
    return Diff(tuple(sorted(add)), tuple(sorted(remove)))


class PlannedReads:
    """A `Reader` that holds no rows: running an analysis' local step over it records the reads
    the step makes (which depend on its spec alone), so their rows can be fetched as ids."""

    def __init__(self) -> None:
        self.groups_asked = False
        self.survival_asked: list[SurvivalQuestion] = []
        self.design_asked: list[DesignQuestion] = []

    def groups(self, fields: Sequence[str]) -> list[tuple[tuple[Any, ...], Cell]]:
        self.groups_asked = True          # every grouping reads every cohort row
        return []

    def survival(self, question: SurvivalQuestion) -> list[SurvivalRow]:
        self.survival_asked.append(question)
        return []

    def design(self, question: DesignQuestion) -> DesignRows:
        self.design_asked.append(question)
        empty = np.zeros(0)
        survival = question.survival is not None
        return DesignRows(np.zeros((0, len(question.fields))), time=empty if survival else None,
                          event=empty if survival else None, entry=empty if survival else None)


def planned_reads(analysis: Analysis[Any, Any], spec: Any) -> PlannedReads:
    reads = PlannedReads()
    analysis.local(spec, reads, clamp=False)
    return reads


def read_rowids(conn: sqlite3.Connection, d: Dictionary, reads: PlannedReads, where: str,
                params: Sequence[Any], cohort_fields: frozenset[str]) -> Ids:
    """The ids of the rows the planned reads return over the cohort (their union, sorted)."""
    statements: list[tuple[str, list[Any]]] = []
    if reads.groups_asked:
        statements.append((f"SELECT group_concat(rowid) FROM {TUMOURS} WHERE ({where})", list(params)))
    for q in reads.survival_asked:
        sql, ps = survival_statement(q, d, where, params, cohort_fields, rowids=True)
        statements.append((sql, ps))
    parts = [_ids(conn.execute(sql, ps).fetchone()[0]) for sql, ps in statements]
    for dq in reads.design_asked:         # a model's rows: read once for all its rounds (and ids with them)
        rows, _ = read_design(conn, d, dq, where, params, cohort_fields)
        assert rows.rowids is not None
        parts.append(rows.rowids)
    if not parts:
        return np.zeros(0, dtype=np.int64)
    return sorted_distinct(np.concatenate(parts))


#: Recent cohorts' row sets, so that asking the same cohort again (another analysis of it, the same
#: query repeated) does not re-read and re-sketch every row id: at 10^6 rows the read, the keyed
#: digest and the sketch cost ≈ 1–2 s per answer, far more than a count. Keyed (`cohort_rowset`) by
#: the store file, its data version (any ingest reads afresh), the ledger key, the permit's scope (no
#: researcher's timing depends on another's questions), the planned reads and the cohort's exact
#: statement and parameters — so an entry is the very set a fresh read would give (D31).
ROWSETS: MemoryCache[RowSet] = MemoryCache(lambda r: r.n, size=16, budget=4_000_000)


def cohort_rowset(conn: sqlite3.Connection, d: Dictionary, reads: PlannedReads, where: str,
                  params: Sequence[Any], cohort_fields: frozenset[str], keys: LedgerKeys, scope: str) -> RowSet:
    """The row set of the planned reads over the cohort (`read_rowids` + `RowSet.of`), from
    `ROWSETS` when the same cohort was read since the last ingest (see ROWSETS)."""
    try:
        key: Any = (database_of(conn), data_version(conn), keys.rowset_digest(np.zeros(0, dtype=np.int64)), scope,
                    reads.groups_asked, tuple(reads.survival_asked), tuple(reads.design_asked), where,
                    tuple(params), frozenset(cohort_fields))
        hash(key)
    except TypeError:                     # an unhashable parameter: read afresh
        key = None
    if key is not None and (cached := ROWSETS.get(key)) is not None:
        return cached
    rows = RowSet.of(read_rowids(conn, d, reads, where, params, cohort_fields), keys)
    rows.ids.flags.writeable = False      # shared by every answer over this cohort
    if key is not None:
        ROWSETS.put(key, rows)
    return rows


def _ids(text: str | None) -> Ids:
    """Parse SQLite's group_concat of integers (one C-level pass; ~5× faster than fetching rows)."""
    if not text:
        return np.zeros(0, dtype=np.int64)
    return np.fromstring(text, dtype=np.int64, sep=",")
