"""Writing one ingest's prepared rows into `tumours`, inside the ingest's one transaction.

How a load writes depends on what the table holds when it starts (decision D22):
- **empty** (a first load): plain inserts with the tumour-id unique index dropped, then built once
  by a sort at the end (SQLite's own work per 10^6 rows: 9.4 s instead of 15.2 s with the index
  live). A tumour id the file repeats shows up when the index is built; the writer keeps each
  row's file line (4 bytes a row), so every repeat is named with the line it repeats.
- **not empty** (a re-delivery or an addition): an upsert on the live unique index that updates
  only rows stored before this ingest and only when they differ, so its change count separates
  new, updated and unchanged rows; a repeat inside the file is caught against this ingest's rowid
  range and, for stored tumours, against a temporary table of those the file touches.
Either way the secondary indexes are dropped and rebuilt once when the file is large next to the
table. Everything happens in the caller's transaction: a rejection or a crash undoes it all,
dropped indexes included.
"""

from __future__ import annotations

import json
import sqlite3
from array import array
from collections.abc import Callable, Sequence
from typing import Any

from oncofed.dictionary import Dictionary, Field
from oncofed.node.store.encoding import MISSING
from oncofed.node.store.schema import (
    RECORD_KEY,
    TUMOUR_ID_INDEX,
    TUMOURS,
    create_indexes,
    create_tumour_id_index,
    has_tumour_id_index,
    index_definitions,
    quote,
)

AddFault = Callable[[int, str, str], None]  # (line, column, reason)


class TumourWriter:
    """The SQL side of one ingest: `begin`, `write` each prepared batch, `finish`, `count`."""

    def __init__(self, conn: sqlite3.Connection, dictionary: Dictionary, stored: Sequence[Field]) -> None:
        self.conn = conn
        self.d = dictionary
        self.stored = list(stored)
        self.key = next(i for i, f in enumerate(self.stored) if f.name == "tumour_id")
        self.first_load = False
        self._existing = False
        self._first_new = 1
        self._rebuild = False
        self._row_lines = array("I")  # a first load: the file line of each row, in rowid order
        self._sql = self._insert_sql(self._first_new, upsert=True)

    def begin(self, file_bytes: int) -> int:
        """Set up the load in the open transaction; returns the rows stored before it."""
        before = self.count()
        self._existing = before > 0
        if self._existing:  # repeats of stored tumours are tracked in a temporary table
            self.conn.execute("CREATE TEMP TABLE IF NOT EXISTS ingest_existing "
                              "(tid TEXT PRIMARY KEY, line INTEGER NOT NULL) WITHOUT ROWID")
            self.conn.execute("DELETE FROM temp.ingest_existing")
        self._first_new = self._max_rowid() + 1
        self.first_load = not self._existing and has_tumour_id_index(self.conn)
        self._sql = self._insert_sql(self._first_new, upsert=not self.first_load)
        self._row_lines = array("I")
        if self.first_load:
            self.conn.execute(f"DROP INDEX {TUMOUR_ID_INDEX}")
        # Rebuilding secondary indexes once (a sort) beats updating them row by row when the
        # file is at least as large as the table; small corrections keep them live.
        self._rebuild = file_bytes // 250 >= max(before, 1000)
        if self._rebuild:
            for name in index_definitions(self.d):
                self.conn.execute(f"DROP INDEX IF EXISTS {name}")
        return before

    def write(self, records: list[tuple[Any, ...]], tids: list[str], lines: list[int], add: AddFault) -> int:
        """Write one prepared batch (`tids` and `lines` in file order); returns rows changed."""
        if self.first_load:
            key, line_by_tid = self.key, dict(zip(tids, lines, strict=True))
            self._row_lines.extend([line_by_tid[r[key]] for r in records])
            self.conn.executemany(self._sql, records)
            return len(records)
        line_of = lines.__getitem__
        if self._existing:
            self._check_stored_repeats(tids, line_of, add)
        before = self._max_rowid()
        cur = self.conn.executemany(self._sql, records)
        changed = max(cur.rowcount, 0)
        if changed < len(records) and before >= self._first_new:
            self._find_repeats(records, before, tids, line_of, add)
        return changed

    def finish(self, faults: int, add: AddFault) -> bool:
        """After the last batch: build the tumour-id index of a first load (naming any repeat)
        and, when `faults` is still 0, the secondary indexes. Returns whether all is well."""
        if self.first_load and not self._build_tumour_id_index(faults, add):
            return False
        if faults:
            return False
        if self._rebuild:
            create_indexes(self.conn, self.d)
        return True

    def count(self) -> int:
        return int(self.conn.execute(f"SELECT count(*) FROM {TUMOURS}").fetchone()[0])

    # ------------------------------------------------------------------ repeats

    def _build_tumour_id_index(self, faults: int, add: AddFault) -> bool:
        if not faults:
            try:
                create_tumour_id_index(self.conn)
                return True
            except sqlite3.IntegrityError:
                pass
        # The file is rejected: name every repeat with the line it repeats (one sort, rare path).
        for (rowids,) in self.conn.execute(
                f"SELECT group_concat(rowid) FROM {TUMOURS} GROUP BY tumour_id HAVING count(*) > 1"):
            lines = sorted(self._row_lines[int(r) - self._first_new] for r in rowids.split(","))
            for line in lines[1:]:
                add(line, "tumour_id", f"duplicate tumour_id (same as line {lines[0]})")
        return False

    def _check_stored_repeats(self, tids: list[str], line_of: Callable[[int], int], add: AddFault) -> None:
        """A tumour stored before this ingest that the file lists twice (in different batches)
        would be updated twice, the last copy silently winning: record each stored tumour the
        file touches, and report the second time it appears."""
        stored = [r[0] for r in self.conn.execute(
            f"SELECT tumour_id FROM {TUMOURS} WHERE rowid < ? AND tumour_id IN (SELECT value FROM json_each(?))",
            (self._first_new, json.dumps(tids)))]
        if not stored:
            return
        line_by_tid: dict[str, int] = {}
        for i, t in enumerate(tids):
            line_by_tid.setdefault(t, line_of(i))
        rows = [(t, line_by_tid[t]) for t in stored]
        cur = self.conn.executemany(
            "INSERT INTO temp.ingest_existing (tid, line) VALUES (?, ?) ON CONFLICT DO NOTHING", rows)
        if cur.rowcount == len(rows):
            return
        for tid, line in rows:
            first = self.conn.execute("SELECT line FROM temp.ingest_existing WHERE tid = ?", (tid,)).fetchone()[0]
            if first != line:
                add(line, "tumour_id", f"duplicate tumour_id (same as line {first})")

    def _find_repeats(self, records: list[tuple[Any, ...]], last_before: int, tids: list[str],
                      line_of: Callable[[int], int], add: AddFault) -> None:
        """Rows skipped by the upsert either equal a stored row (unchanged) or repeat a tumour
        loaded earlier in this same file (rowid in this ingest's range): report the latter."""
        key = self.key
        position = {t: i for i, t in enumerate(tids)}
        for r in records:
            hit = self.conn.execute(
                f"SELECT rowid FROM {TUMOURS} WHERE tumour_id = ? AND rowid BETWEEN ? AND ?",
                (r[key], self._first_new, last_before),
            ).fetchone()
            if hit:
                add(line_of(position[r[key]]), "tumour_id", "duplicate tumour_id (repeats an earlier line)")

    # ------------------------------------------------------------------ SQL

    def _insert_sql(self, first_new: int, *, upsert: bool) -> str:
        """The upsert updates only rows stored before this ingest and only when they differ: its
        change count then separates new, updated and unchanged rows, and a conflict with a row
        of this ingest (rowid ≥ first_new) is left for _find_repeats to report. Without
        `upsert`, a plain insert (a first load, whose tumour-id index is built afterwards)."""
        names = [quote(f.name) for f in self.stored]
        params = []
        for f in self.stored:
            params.append("?" if f.type in ("id", "icd10") else f"NULLIF(?, {MISSING})")
        updates = ", ".join(f"{c} = excluded.{c}" for c in names if c != '"tumour_id"')
        changed = " OR ".join(f"{TUMOURS}.{c} IS NOT excluded.{c}" for c in names if c != '"tumour_id"')
        # The record key depends only on the pseudonym, so an update never needs to touch it.
        names.append(quote(RECORD_KEY))
        params.append("?")
        insert = f"INSERT INTO {TUMOURS} ({', '.join(names)}) VALUES ({', '.join(params)})"
        if not upsert:
            return insert
        return (f"{insert} ON CONFLICT(tumour_id) DO UPDATE SET {updates} "
                f"WHERE {TUMOURS}.rowid < {int(first_new)} AND ({changed})")

    def _max_rowid(self) -> int:
        return int(self.conn.execute(f"SELECT coalesce(max(rowid), 0) FROM {TUMOURS}").fetchone()[0])
