"""A model's rows: the complete cases of a cohort, one row per tumour, read once per fit.

The models (oncofed.analyses.logistic, .cox) evaluate a likelihood at the coefficients of every
round, which needs each row, not grouped cells: `read_design` returns the cohort's rows whose
fields are all present (stored values), for a survival outcome each row's time, event and entry
as `outcomes.py` derives them for Kaplan–Meier (the first primary unless the cohort names
tumour_seq, the outcome's population, times ≥ 0, entry < time, rows without a follow-up end left
out), and each row's rowid (what a release ledger compares). Identifiers come from the dictionary
via `quote()`; every value is a bound parameter. The rows stay in the node's process.

A fit asks the same rows at every round (DESIGN §10: the identical row set stays answerable), so
`DESIGNS` (a `MemoryCache`) keeps them, keyed by the store file, its data version (the last ingest id: any
ingest reads afresh) and the exact statement with its parameters.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from itertools import chain
from typing import Any, Generic, TypeVar

import numpy as np
import numpy.typing as npt

from oncofed.analyses.base import DesignQuestion, DesignRows
from oncofed.dictionary import Dictionary
from oncofed.node.store.encoding import day_number
from oncofed.node.store.outcomes import outcome_sql
from oncofed.node.store.schema import TUMOURS, quote
from oncofed.node.store.substitution import RowChange, substitution

V = TypeVar("V")
Restrict = tuple[str, tuple[Any, ...]] | None
Statement = tuple[str, list[Any]]


class MemoryCache(Generic[V]):
    """Recent reads kept in the node's memory: at most `size` entries and `budget` rows (as
    `weight` counts them) in all, each for `seconds`. The design rows of model fits use it, and
    the release ledger's row sets (rowsets.ROWSETS)."""

    def __init__(self, weight: Callable[[V], int], size: int, budget: int, seconds: float = 600.0) -> None:
        self.weight, self.size, self.budget, self.seconds = weight, size, budget, seconds
        self._items: OrderedDict[Any, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> V | None:
        with self._lock:
            item = self._items.get(key)
            if item is None or item[0] < time.monotonic():
                self._items.pop(key, None)
                return None
            self._items.move_to_end(key)
            return item[1]

    def put(self, key: Any, value: V) -> None:
        with self._lock:
            self._items[key] = (time.monotonic() + self.seconds, value)
            self._items.move_to_end(key)
            while len(self._items) > 1 and (len(self._items) > self.size or
                                            sum(self.weight(v) for _, v in self._items.values()) > self.budget):
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


DESIGNS: MemoryCache[DesignRows] = MemoryCache(lambda r: r.n, size=16, budget=1_500_000)


def data_version(conn: sqlite3.Connection) -> int:
    """Changes with every ingest (updates included): the last ingest's id."""
    return int(conn.execute("SELECT coalesce(max(ingest_id), 0) FROM ingests").fetchone()[0])


def database_of(conn: sqlite3.Connection) -> str:
    """The file a connection's main database is (a cache key: one store, one set of rows)."""
    return str(conn.execute("PRAGMA database_list").fetchone()[2])


def read_design(conn: sqlite3.Connection, d: Dictionary, question: DesignQuestion, where: str,
                params: Sequence[Any], cohort_fields: frozenset[str],
                restrict: Restrict = None, *, change: RowChange | None = None) -> tuple[DesignRows, Statement]:
    """A model's complete cases with their rowids, in rowid order, read once per fit (DESIGNS).
    With a release ledger's `change`, the rows of (C ∖ removed) ∪ added: C's rows as read for the
    ledger's row ids (one read for both), less the removed ids, plus the added ids' rows
    (substitution.py's third part; run on every ledgered read, an empty difference included)."""
    sql, ps = design_statement(question, d, where, params, cohort_fields, restrict)
    key = (database_of(conn), data_version(conn), sql, tuple(ps))
    rows = DESIGNS.get(key)
    if rows is None:
        rows = _fetch(conn, d, question, sql, ps)
        DESIGNS.put(key, rows)
    if change is None:
        return rows, (sql, ps)
    parts = substitution(where, params, change)
    added_sql, added_ps = design_statement(question, d, parts[2][1], parts[2][2], cohort_fields, restrict)
    changed_key = (*key, tuple(change.remove), tuple(change.add))
    if (changed := DESIGNS.get(changed_key)) is not None:
        return changed, (sql, ps)
    added = _fetch(conn, d, question, added_sql, added_ps)
    assert rows.rowids is not None and added.rowids is not None
    kept = ~np.isin(rows.rowids, np.asarray(change.remove, dtype=np.int64))
    if kept.all() and not added.n:
        return rows, (sql, ps)                 # the same rows: the same object (and what it prepared)
    changed = _sorted(_joined(_taken(rows, kept), added))
    DESIGNS.put(changed_key, changed)
    return changed, (sql, ps)


def _fetch(conn: sqlite3.Connection, d: Dictionary, question: DesignQuestion, sql: str,
           params: Sequence[Any]) -> DesignRows:
    k = len(question.fields)
    width = k + (3 if question.survival else 0) + 1           # … and the rowid last
    # One flat stream of values, not a stream of row tuples: numpy then converts scalars only
    # (≈ 15 % less time than fromiter over rows at 10^5 rows; the read is most of a first round).
    flat = np.fromiter(chain.from_iterable(conn.execute(sql, params)), dtype=np.float64)
    data: npt.NDArray[np.float64] = flat.reshape(-1, width)
    for j, name in enumerate(question.fields):      # stored ordinal → level position
        if d.fields[name].type == "code":
            data[:, j] -= 1
    rowids = data[:, -1].astype(np.int64)
    if question.survival is None:
        return _sorted(DesignRows(data[:, :k], rowids=rowids))
    return _sorted(DesignRows(data[:, :k], time=data[:, k], event=data[:, k + 1], entry=data[:, k + 2],
                              rowids=rowids))


def _taken(rows: DesignRows, index: npt.NDArray[Any]) -> DesignRows:
    """The rows at `index` (a mask or positions)."""
    def take(a: npt.NDArray[Any] | None) -> Any:
        return None if a is None else a[index]
    return DesignRows(rows.values[index], time=take(rows.time), event=take(rows.event), entry=take(rows.entry),
                      rowids=take(rows.rowids))


def _joined(a: DesignRows, b: DesignRows) -> DesignRows:
    def join(x: npt.NDArray[Any] | None, y: npt.NDArray[Any] | None) -> Any:
        return None if x is None or y is None else np.concatenate([x, y])
    return DesignRows(np.concatenate([a.values, b.values]), time=join(a.time, b.time), event=join(a.event, b.event),
                      entry=join(a.entry, b.entry), rowids=join(a.rowids, b.rowids))


def _sorted(rows: DesignRows) -> DesignRows:
    """The rows in rowid order, read-only (shared by every round): a model's sums then depend on
    which rows it reads, never on the plan SQLite took to find them or on the ledger's path."""
    assert rows.rowids is not None
    ids = rows.rowids
    if len(ids) > 1 and not bool((ids[1:] > ids[:-1]).all()):
        rows = _taken(rows, np.argsort(ids, kind="stable"))
    for a in (rows.values, rows.time, rows.event, rows.entry, rows.rowids):
        if a is not None:
            a.flags.writeable = False
    return rows


def design_statement(question: DesignQuestion, d: Dictionary, where: str, params: Sequence[Any],
                     cohort_fields: frozenset[str], restrict: Restrict = None, *, rowids: bool = False) -> Statement:
    """SQL for a model's complete cases: its fields (stored values), for a survival outcome t, ev,
    e, and the rowid. With `rowids`, only the same rows' ids as one group_concat."""
    cols = [quote(f) for f in question.fields]
    present = "".join(f" AND {c} IS NOT NULL" for c in cols)
    out: list[Any] = []
    if question.survival is None:
        select = "group_concat(rowid)" if rowids else ", ".join([*cols, "rowid"])
        sql = f"SELECT {select} FROM {TUMOURS} WHERE ({where}){present}"
        out.extend(params)
        if restrict is not None:
            sql += f" AND ({restrict[0]})"
            out.extend(restrict[1])
        return sql, out
    assert question.cutoff is not None, "a survival design needs its cutoff"
    o = outcome_sql(d, question.survival, day_number(question.cutoff))
    inner = "".join(f"{c} AS v{i}, " for i, c in enumerate(cols))
    outer = "group_concat(rid)" if rowids else "".join(f"v{i}, " for i in range(len(cols))) + "t, ev, e, rid"
    sql = (f"SELECT {outer} FROM (SELECT {inner}{o.time[0]} AS t, {o.event[0]} AS ev, {o.entry[0]} AS e, "
           f"rowid AS rid FROM {TUMOURS} WHERE ({where}) AND {o.population[0]}{present}")
    out.extend([*o.time[1], *o.event[1], *o.entry[1], *params, *o.population[1]])
    if "tumour_seq" not in cohort_fields:
        sql += f" AND {quote('tumour_seq')} = 1"
    if restrict is not None:
        sql += f" AND ({restrict[0]})"
        out.extend(restrict[1])
    sql += ") WHERE t IS NOT NULL AND t >= 0 AND (e = 0 OR e < t)"
    if question.horizon_days > 0:                    # unknown status at the horizon: left out
        sql += " AND NOT (ev = 0 AND t < ?)"
        out.append(question.horizon_days)
    return sql, out
